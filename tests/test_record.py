"""The record format: lossless AnyValue encoding, canonical bytes, golden leaf hashes, columns."""

from __future__ import annotations

import hashlib
import json
import math

import orjson
import pytest
import rfc8785
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from otaudit.otlp.convert import any_value, select_logs, select_spans
from otaudit.record import derive_columns, parse_sealed, seal

RECEIVED_NS = 1764288000123456789


def kv(key: str, value: AnyValue) -> KeyValue:
    return KeyValue(key=key, value=value)


def s(text: str) -> AnyValue:
    return AnyValue(string_value=text)


def golden_request() -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.append(kv("service.name", s("accounts-api")))
    ss = rs.scope_spans.add()
    ss.scope.name = "audit-service"
    span = ss.spans.add()
    span.trace_id = bytes(range(16))
    span.span_id = bytes(range(8))
    span.name = "user.role.update"
    span.kind = Span.SPAN_KIND_SERVER
    span.start_time_unix_nano = 1764288000000000000
    span.end_time_unix_nano = 1764288000250000000
    span.attributes.extend(
        [
            kv("enduser.id", s("alice")),
            kv("audit.action", s("role_update")),
            kv("audit.target_user", s("bob")),
            kv("audit.old_value", s("viewer")),
            kv("audit.new_value", s("editor")),
            kv("retries", AnyValue(int_value=2**63 - 1)),
        ]
    )
    span.status.code = Status.STATUS_CODE_OK
    return req


def test_golden_leaf_hash() -> None:
    (obj, content), = select_spans(golden_request(), "audit.action").records  # fmt: skip
    entry = seal(obj, content, "otlp", RECEIVED_NS)
    # Anyone can recompute this with RFC 8785 and SHA-256 (docs/record-format.md).
    assert entry.sealed == rfc8785.dumps(json.loads(entry.sealed))
    assert entry.leaf == hashlib.sha256(b"\x00" + entry.sealed).digest()
    assert entry.sealed.startswith(
        b'{"otaudit":1,"pipeline":"otlp","received_at":"1764288000123456789","record":{'
    )
    assert entry.leaf.hex() == GOLDEN_LEAF


GOLDEN_LEAF = "1e4c55ac19a7f4147d3de41718288580e62f9e22e0d1ec70f501d5e2eb87c72e"


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (s("héllo"), "héllo"),
        (AnyValue(bool_value=True), True),
        (AnyValue(int_value=2**53 + 1), {"int": "9007199254740993"}),
        (AnyValue(int_value=-(2**63)), {"int": "-9223372036854775808"}),
        (AnyValue(double_value=0.1), {"double": "0.1"}),
        (AnyValue(double_value=math.inf), {"double": "Infinity"}),
        (AnyValue(double_value=-math.inf), {"double": "-Infinity"}),
        (AnyValue(double_value=math.nan), {"double": "NaN"}),
        (AnyValue(bytes_value=b"\x00\xff"), {"bytes": "AP8="}),
        (AnyValue(), None),
    ],
    ids=[
        "string",
        "bool",
        "int-beyond-2^53",
        "int-min",
        "double",
        "inf",
        "-inf",
        "nan",
        "bytes",
        "empty",
    ],
)
def test_any_value_encoding_is_lossless(value: AnyValue, encoded: object) -> None:
    assert any_value(value) == encoded
    # The canonical form survives a JSON round trip unchanged.
    assert orjson.loads(orjson.dumps(encoded)) == encoded


def test_nested_arrays_and_kvlists() -> None:
    value = AnyValue()
    value.array_value.values.extend([s("a"), AnyValue(int_value=1)])
    inner = value.array_value.values.add()
    inner.kvlist_value.values.extend([kv("k", AnyValue(bool_value=False))])
    assert any_value(value) == ["a", {"int": "1"}, {"kvlist": {"k": False}}]


def test_columns_from_the_article_names_and_current_conventions() -> None:
    req = golden_request()
    span = req.resource_spans[0].scope_spans[0].spans[0]
    span.attributes.extend([kv("enduser.role", s("admin")), kv("enduser.ip", s("10.0.0.1"))])
    current = req.resource_spans[0].scope_spans[0].spans.add()
    current.CopyFrom(span)
    current.span_id = b"\x01" * 8
    del current.attributes[:]
    roles = AnyValue()
    roles.array_value.values.extend([s("admin"), s("ops")])
    current.attributes.extend(
        [kv("audit.action", s("read")), kv("user.id", s("carol")), kv("user.roles", roles),
         kv("client.address", s("192.0.2.9")), kv("audit.target", s("cust-7"))]
    )  # fmt: skip
    current.status.code = Status.STATUS_CODE_ERROR
    records = select_spans(req, "audit.action").records
    cols = [seal(obj, content, "otlp", RECEIVED_NS).columns for obj, content in records]
    assert (cols[0].actor, cols[0].actor_role, cols[0].client_address, cols[0].target) == (
        "alice", "admin", "10.0.0.1", "bob",
    )  # fmt: skip
    assert (cols[1].actor, cols[1].actor_role, cols[1].client_address, cols[1].target) == (
        "carol", '["admin","ops"]', "192.0.2.9", "cust-7",
    )  # fmt: skip
    assert cols[0].result == "success"  # from the OK status, no audit.result
    assert cols[1].result == "failure"  # from the ERROR status
    assert cols[0].service == "accounts-api"
    assert cols[0].timestamp == "2025-11-28T00:00:00.000000000Z"
    assert cols[0].received_at == "2025-11-28T00:00:00.123456789Z"


def test_log_name_and_time_fall_back_sensibly() -> None:
    req = ExportLogsServiceRequest()
    rec = req.resource_logs.add().scope_logs.add().log_records.add()
    rec.observed_time_unix_nano = 1764288000000000001
    rec.body.string_value = "System configuration changed"
    rec.attributes.extend([kv("audit.action", s("config_change")), kv("audit.changed_by", s("al"))])
    (obj, content), = select_logs(req, "audit.action").records  # fmt: skip
    entry = seal(obj, content, "otlp", RECEIVED_NS)
    assert entry.columns.name == "System configuration changed"
    assert entry.columns.time_unix_nano == 1764288000000000001  # time unset: observed time
    assert entry.columns.actor == "al"


def test_parse_sealed_round_trip() -> None:
    (obj, content), = select_spans(golden_request(), "audit.action").records  # fmt: skip
    entry = seal(obj, content, "p1", RECEIVED_NS)
    envelope, member = parse_sealed(entry.sealed)
    assert member == content
    assert derive_columns(envelope) == entry.columns


def test_duplicate_attribute_keys_reject_only_that_record() -> None:
    req = golden_request()
    span = req.resource_spans[0].scope_spans[0].spans[0]
    dup = req.resource_spans[0].scope_spans[0].spans.add()
    dup.CopyFrom(span)
    dup.attributes.append(kv("enduser.id", s("mallory")))
    sel = select_spans(req, "audit.action")
    assert (len(sel.records), sel.rejected) == (1, 1)
    assert "duplicate attribute key 'enduser.id'" in sel.error_message


def test_a_map_attribute_sent_out_of_order_gives_the_columns_verify_derives() -> None:
    req = golden_request()
    span = req.resource_spans[0].scope_spans[0].spans[0]
    role = AnyValue()
    role.kvlist_value.values.extend([kv("z", s("1")), kv("a", s("2"))])
    span.attributes.append(kv("enduser.role", role))
    (obj, content), = select_spans(req, "audit.action").records  # fmt: skip
    entry = seal(obj, content, "otlp", RECEIVED_NS)
    envelope, _ = parse_sealed(entry.sealed)
    assert entry.columns == derive_columns(envelope)
    assert entry.columns.actor_role == '{"a":"2","z":"1"}'


@pytest.mark.parametrize(
    "value",
    [s("login"), AnyValue(int_value=-(2**63)), AnyValue(bool_value=True),
     AnyValue(double_value=0.5), AnyValue(bytes_value=b"\x00\xff"), s("")],
    ids=["string", "int", "bool", "double", "bytes", "empty"],
)  # fmt: skip
def test_the_action_column_is_the_text_the_attributes_column_holds(value: AnyValue) -> None:
    # The SQL dialect reads attributes['audit.action'] from the action column (indexed).
    req = golden_request()
    span = req.resource_spans[0].scope_spans[0].spans[0]
    del span.attributes[:]
    span.attributes.extend([kv("audit.action", value)])
    ((obj, content),) = select_spans(req, "audit.action").records
    columns = seal(obj, content, "otlp", RECEIVED_NS).columns
    assert columns.action == json.loads(columns.attributes)["audit.action"]
