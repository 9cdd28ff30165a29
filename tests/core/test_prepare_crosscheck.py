"""The compiled core prepares OTLP/protobuf requests byte for byte as the Python reference.

Generated export requests (spans and logs) with every AnyValue kind, int64 edges, NaN,
infinities, -0.0 and subnormal doubles, bytes, nested arrays and kvlists, text beyond
ASCII and beyond the BMP, keys that sort differently by UTF-16 code unit and by code
point, repeated keys, ids of wrong lengths, times past 2^63-1, small limits and sealed
budgets, and redaction rules: :func:`otaudit.ingest.prepare` (the core) and
:func:`otaudit.ingest.prepare_reference` (Python alone) give equal ``Prepared`` values
(sealed bytes, leaf hashes, dedup keys, resource parts and offsets, columns, counts and
messages) or raise the same exception with the same message, and so do garbage bytes and
cut or edited valid bodies.
"""

from __future__ import annotations

import base64
import math
import struct
from typing import Any

import orjson
import pytest
from google.protobuf.json_format import MessageToDict
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from mutation import EDITS, mutate
from otaudit.ingest import IngestSettings, Prepared, prepare, prepare_reference
from otaudit.otlp import native
from otaudit.otlp.body import JSON, PROTOBUF
from otaudit.otlp.convert import Limits
from otaudit.record import derive_columns, parse_sealed
from otaudit.redaction import Redactor, Rule

PIPELINE = "otlp"
RECEIVED_NS = 1_764_288_000_123_456_789
MAX_TIME = 2**63 - 1
EXAMPLES = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Keys that select, fill columns, get redacted, collide, and sort differently by UTF-16
# code unit than by code point (U+1F600 is D83D DE00, before U+FF61 in UTF-16).
KEYS = st.sampled_from(
    [
        "audit.action",
        "audit.acton",
        "audit.result",
        "audit.target",
        "enduser.id",
        "user.id",
        "enduser.role",
        "client.address",
        "audit.producer.id",
        "audit.producer.seq",
        "service.name",
        "secret.token",
        "otaudit.redacted",
        "a",
        "b",
        "é",
        "\uff61",
        "\U0001f600",
        "\U0001f600x",
        "",
    ]
) | st.text(max_size=6)

DOUBLES = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [0.0, -0.0, 5e-324, 2.2250738585072014e-308, 1e16, 1e-5, 1e-4, 123.0, math.inf, -math.inf]
)
INTS = st.integers(-(2**63), 2**63 - 1) | st.sampled_from([0, -1, 2**53 + 1, -(2**63), 2**63 - 1])
TEXT = st.text(max_size=12) | st.sampled_from(['\x00\x1f\x7f"\\\b\f\n\r\t', "é😀\u2028", "0012"])


def _rarely(
    usual: st.SearchStrategy[Any], rare: st.SearchStrategy[Any], one_in: int = 25
) -> st.SearchStrategy[Any]:
    """``rare`` about one time in ``one_in`` (a bad id refuses the whole request)."""
    return st.integers(1, one_in).flatmap(lambda n: rare if n == 1 else usual)


def _scalar() -> st.SearchStrategy[AnyValue]:
    return st.one_of(
        TEXT.map(lambda v: AnyValue(string_value=v)),
        st.booleans().map(lambda v: AnyValue(bool_value=v)),
        INTS.map(lambda v: AnyValue(int_value=v)),
        DOUBLES.map(lambda v: AnyValue(double_value=v)),
        st.binary(max_size=8).map(lambda v: AnyValue(bytes_value=v)),
        st.just(AnyValue()),
        st.integers(0, 5).map(lambda v: AnyValue(string_value_strindex=v)),
    )


def _nest(inner: st.SearchStrategy[AnyValue]) -> st.SearchStrategy[AnyValue]:
    def array(values: list[AnyValue]) -> AnyValue:
        v = AnyValue()
        v.array_value.values.extend(values)
        return v

    def kvlist(items: list[KeyValue]) -> AnyValue:
        v = AnyValue()
        v.kvlist_value.values.extend(items)
        return v

    return st.lists(inner, max_size=3).map(array) | st.lists(
        st.builds(lambda k, v: KeyValue(key=k, value=v), KEYS, inner), max_size=3
    ).map(kvlist)


VALUES = st.recursive(_scalar(), _nest, max_leaves=6)


def _kv(key: str, value: AnyValue | None) -> KeyValue:
    return KeyValue(key=key) if value is None else KeyValue(key=key, value=value)


_KV = st.builds(_kv, KEYS, st.none() | VALUES)
#: Attribute lists, with a repeated key now and then.
KVS = _rarely(st.lists(_KV, max_size=6, unique_by=lambda kv: kv.key), st.lists(_KV, max_size=6))
AUDIT_KVS = st.builds(
    lambda kvs, action: (
        ([_kv("audit.action", AnyValue(string_value=action))] if action else []) + kvs
    ),
    KVS,
    st.sampled_from(["role_update", None, "x"]),
)


IDS16 = _rarely(
    st.sampled_from([b"", bytes(range(16)), bytes(range(1, 17))]),
    st.binary(min_size=15, max_size=17),
    one_in=100,
)
IDS8 = _rarely(
    st.sampled_from([b"", bytes(range(8)), bytes(range(2, 10))]),
    st.binary(min_size=7, max_size=9),
    one_in=100,
)
TIMES = _rarely(
    st.integers(0, MAX_TIME) | st.sampled_from([0, MAX_TIME]),
    st.sampled_from([MAX_TIME + 1, 2**64 - 1]),
)


@st.composite
def _resource(draw: Any, target: Any) -> None:
    target.resource.attributes.extend(draw(KVS))
    target.resource.dropped_attributes_count = draw(st.integers(0, 3))
    for _ in range(draw(st.integers(0, 1))):
        ref = target.resource.entity_refs.add()
        ref.type = draw(TEXT)
        ref.schema_url = draw(TEXT)
        ref.id_keys.extend(draw(st.lists(TEXT, max_size=2)))
        ref.description_keys.extend(draw(st.lists(TEXT, max_size=2)))
    target.schema_url = draw(st.sampled_from(["", "https://opentelemetry.io/schemas/1.26.0"]))


def _scope(draw: Any, target: Any) -> None:
    target.scope.name = draw(TEXT)
    target.scope.version = draw(st.sampled_from(["", "1.0"]))
    target.scope.attributes.extend(draw(KVS))
    target.schema_url = draw(st.sampled_from(["", "s"]))


@st.composite
def trace_requests(draw: Any) -> bytes:
    req = ExportTraceServiceRequest()
    for _ in range(draw(st.integers(1, 2))):
        rs = req.resource_spans.add()
        draw(_resource(rs))
        for _ in range(draw(st.integers(1, 2))):
            ss = rs.scope_spans.add()
            _scope(draw, ss)
            for _ in range(draw(st.integers(1, 3))):
                span = ss.spans.add()
                span.trace_id = draw(IDS16)
                span.span_id = draw(IDS8)
                span.parent_span_id = draw(IDS8)
                span.trace_state = draw(TEXT)
                span.flags = draw(st.integers(0, 2**32 - 1))
                span.name = draw(TEXT)
                span.kind = draw(st.integers(-1, 5))
                span.start_time_unix_nano = draw(TIMES)
                span.end_time_unix_nano = draw(TIMES)
                span.attributes.extend(draw(AUDIT_KVS))
                span.dropped_attributes_count = draw(st.integers(0, 2))
                for _ in range(draw(st.integers(0, 2))):
                    ev = span.events.add()
                    ev.time_unix_nano = draw(TIMES)
                    ev.name = draw(TEXT)
                    ev.attributes.extend(draw(KVS))
                for _ in range(draw(st.integers(0, 2))):
                    ln = span.links.add()
                    ln.trace_id = draw(IDS16)
                    ln.span_id = draw(IDS8)
                    ln.trace_state = draw(TEXT)
                    ln.flags = draw(st.integers(0, 3))
                    ln.attributes.extend(draw(KVS))
                if draw(st.booleans()):
                    span.status.code = draw(st.integers(-1, 3))
                    span.status.message = draw(TEXT)
    return req.SerializeToString()


@st.composite
def log_requests(draw: Any) -> bytes:
    req = ExportLogsServiceRequest()
    for _ in range(draw(st.integers(1, 2))):
        rl = req.resource_logs.add()
        draw(_resource(rl))
        for _ in range(draw(st.integers(1, 2))):
            sl = rl.scope_logs.add()
            _scope(draw, sl)
            for _ in range(draw(st.integers(1, 3))):
                rec = sl.log_records.add()
                rec.time_unix_nano = draw(TIMES)
                rec.observed_time_unix_nano = draw(TIMES)
                rec.severity_number = draw(st.integers(-1, 24))
                rec.severity_text = draw(TEXT)
                if draw(st.booleans()):
                    rec.body.CopyFrom(draw(VALUES))
                rec.attributes.extend(draw(AUDIT_KVS))
                rec.flags = draw(st.integers(0, 2**32 - 1))
                rec.trace_id = draw(IDS16)
                rec.span_id = draw(IDS8)
                rec.event_name = draw(st.sampled_from(["", "login", "é"]))
    return req.SerializeToString()


LIMITS = st.one_of(
    st.just(Limits()),
    st.builds(
        Limits,
        max_attributes=st.integers(1, 8),
        max_value_bytes=st.integers(1, 40),
        max_resource_bytes=st.integers(10, 400),
        max_records=st.integers(1, 12),
        max_sealed_ratio=st.integers(0, 3),
        min_sealed_budget=st.integers(0, 3000),
    ),
)
REDACTORS = st.none() | st.builds(
    lambda rules: Redactor(tuple(rules), b"redaction key") if rules else None,
    st.lists(
        st.builds(
            Rule,
            st.sampled_from(["drop", "hmac"]),
            st.sampled_from(["secret.*", "enduser.id", "a", "*", "?", "audit.?cton", "é*", "[ab]"])
            | st.text(alphabet="[]!-ab*?^\\", max_size=6),
        ),
        max_size=3,
    ),
)


def _outcome(fn: Any, *args: Any) -> Prepared | tuple[type[BaseException], str]:
    try:
        result: Prepared = fn(*args)
    except Exception as exc:  # the same type and message on both paths
        return type(exc), str(exc)
    return result


def _crosscheck(
    otlp_signal: str,
    data: bytes,
    limits: Limits,
    redactor: Redactor | None,
    media: str = PROTOBUF,
) -> Prepared | tuple[type[BaseException], str]:
    ingest = IngestSettings(workers=0, limits=limits, redactor=redactor)
    ref = _outcome(prepare_reference, otlp_signal, media, data, PIPELINE, RECEIVED_NS, ingest)
    got = _outcome(prepare, otlp_signal, media, data, False, PIPELINE, RECEIVED_NS, ingest)
    assert got == ref
    if isinstance(got, Prepared):
        for entry in got.entries:  # the columns at verify are those at sealing
            envelope, _ = parse_sealed(entry.sealed)
            assert derive_columns(envelope) == entry.columns
            assert entry.resource is not None
            at = entry.resource_at
            assert entry.sealed[at : at + len(entry.resource.body)] == entry.resource.body
    return ref


def _core_decides(otlp_signal: str, data: bytes, limits: Limits) -> bool:
    """True unless the core leaves the request to the reference."""
    try:
        native.prepare(otlp_signal, data, "audit.action", limits, None, PIPELINE, RECEIVED_NS)
    except native.Undecodable:
        return False
    except Exception:
        pass
    return True


@EXAMPLES
@given(data=trace_requests(), limits=LIMITS, redactor=REDACTORS)
def test_spans_are_prepared_as_the_reference_does(
    data: bytes, limits: Limits, redactor: Redactor | None
) -> None:
    _crosscheck("traces", data, limits, redactor)
    assert _core_decides("traces", data, limits)


@EXAMPLES
@given(data=log_requests(), limits=LIMITS, redactor=REDACTORS)
def test_logs_are_prepared_as_the_reference_does(
    data: bytes, limits: Limits, redactor: Redactor | None
) -> None:
    _crosscheck("logs", data, limits, redactor)
    assert _core_decides("logs", data, limits)


@EXAMPLES
@given(
    kind=st.sampled_from(["traces", "logs"]),
    data=st.binary(max_size=300),
)
def test_garbage_gets_the_same_answer(kind: str, data: bytes) -> None:
    _crosscheck(kind, data, Limits(), None)


@EXAMPLES
@given(data=trace_requests(), cut=st.integers(0, 10_000), edits=EDITS)
def test_cut_and_edited_bodies_get_the_same_answer(
    data: bytes, cut: int, edits: list[tuple[int, int, int]]
) -> None:
    _crosscheck("traces", data[: cut % (len(data) + 1)], Limits(), None)
    _crosscheck("traces", mutate(data, edits), Limits(), None)


def _nested(depth: int) -> bytes:
    """A request with one audit span whose attribute ``deep`` nests ``depth`` arrays
    (written on the wire: upb refuses to build what it could not parse)."""
    value = AnyValue(string_value="x").SerializeToString()
    for _ in range(depth):
        array = b"\x0a" + _varint(len(value)) + value  # ArrayValue.values
        value = b"\x2a" + _varint(len(array)) + array  # AnyValue.array_value
    deep = b"\x0a\x04deep\x12" + _varint(len(value)) + value
    audit = _kv("audit.action", AnyValue(string_value="a")).SerializeToString()
    span = b"\x4a" + _varint(len(audit)) + audit + b"\x4a" + _varint(len(deep)) + deep
    scope = b"\x12" + _varint(len(span)) + span
    group = b"\x12" + _varint(len(scope)) + scope
    return b"\x0a" + _varint(len(group)) + group


@pytest.mark.parametrize("depth", [1, 29, 30, 31, 44, 45, 46, 47, 48, 60, 200])
def test_deep_values_get_the_same_answer(depth: int) -> None:
    _crosscheck("traces", _nested(depth), Limits(max_value_bytes=10_000), None)


def test_a_field_sent_with_another_wire_type_is_read_as_upb_reads_it() -> None:
    # Span.name (5) as a varint: upb keeps it as an unknown field, prost refuses it.
    req = ExportTraceServiceRequest()
    span = req.resource_spans.add().scope_spans.add().spans.add()
    span.attributes.append(_kv("audit.action", AnyValue(string_value="a")))
    body = span.SerializeToString() + b"\x28\x01"
    scope = b"\x12" + _varint(len(body)) + body
    group = b"\x12" + _varint(len(scope)) + scope
    data = b"\x0a" + _varint(len(group)) + group
    assert not isinstance(_crosscheck("traces", data, Limits(), None), tuple)


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


@example(value=-0.0)
@example(value=562949953421312.2)  # a tie between two shortest forms: the even digit
@example(value=5e-324)
@EXAMPLES
@given(value=DOUBLES)
def test_doubles_are_written_as_repr(value: float) -> None:
    req = ExportLogsServiceRequest()
    rec = req.resource_logs.add().scope_logs.add().log_records.add()
    rec.attributes.extend(
        [_kv("audit.action", AnyValue(string_value="a")), _kv("d", AnyValue(double_value=value))]
    )
    got = _crosscheck("logs", req.SerializeToString(), Limits(), None)
    assert isinstance(got, Prepared) and len(got.entries) == 1
    assert struct.pack("<d", value)  # any double


def test_unknown_fields_count_in_sizes_as_upb_counts_them() -> None:
    # An attribute value of 3 bytes (string "a") plus an unknown field of 3 bytes: upb
    # measures 6, over a limit of 5; the core leaves such requests to the reference.
    value = AnyValue(string_value="a").SerializeToString() + b"\xf8\x06\x01"  # field 111
    kv = b"\x0a\x01x\x12" + _varint(len(value)) + value
    audit = _kv("audit.action", AnyValue(string_value="a")).SerializeToString()
    span = b"\x4a" + _varint(len(audit)) + audit + b"\x4a" + _varint(len(kv)) + kv
    scope = b"\x12" + _varint(len(span)) + span
    group = b"\x12" + _varint(len(scope)) + scope
    data = b"\x0a" + _varint(len(group)) + group
    got = _crosscheck("traces", data, Limits(max_value_bytes=5), None)
    assert isinstance(got, Prepared) and got.rejected == 1 and "6 bytes" in got.message


@EXAMPLES
@given(
    patterns=st.lists(st.text(alphabet="[]!-abz*?^\\&", max_size=7), min_size=1, max_size=3),
    keys=st.lists(st.text(alphabet="[]!-abz^\\&", max_size=4), max_size=6, unique=True),
)
def test_redaction_patterns_match_as_fnmatchcase(patterns: list[str], keys: list[str]) -> None:
    req = ExportLogsServiceRequest()
    rec = req.resource_logs.add().scope_logs.add().log_records.add()
    rec.attributes.append(_kv("audit.action", AnyValue(string_value="a")))
    rec.attributes.extend(_kv(k, AnyValue(string_value=k)) for k in keys if k != "audit.action")
    redactor = Redactor(tuple(Rule("drop", p) for p in patterns), None)
    _crosscheck("logs", req.SerializeToString(), Limits(), redactor)


_IDS = ("traceId", "spanId", "parentSpanId")


def _hex_ids(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: base64.b64decode(v).hex() if k in _IDS else _hex_ids(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_hex_ids(v) for v in node]
    return node


def _otlp_json(otlp_signal: str, data: bytes) -> bytes:
    """The OTLP/JSON form of a protobuf export request (ids in hex)."""
    cls = ExportTraceServiceRequest if otlp_signal == "traces" else ExportLogsServiceRequest
    message = MessageToDict(cls.FromString(data), use_integers_for_enums=True)
    return orjson.dumps(_hex_ids(message))


@EXAMPLES
@given(
    kind=st.sampled_from(["traces", "logs"]),
    data=st.data(),
    limits=LIMITS,
    redactor=REDACTORS,
)
def test_otlp_json_is_prepared_as_the_reference_does(
    kind: str, data: st.DataObject, limits: Limits, redactor: Redactor | None
) -> None:
    body = data.draw(trace_requests() if kind == "traces" else log_requests())
    _crosscheck(kind, _otlp_json(kind, body), limits, redactor, JSON)
