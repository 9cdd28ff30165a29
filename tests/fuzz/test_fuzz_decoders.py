"""Fuzzing the ingest path: any body gets records or a DecodeError, never anything else.

``make test`` runs a bounded number of examples (profile ``default``);
``make fuzz`` runs the same properties with many more (profile ``fuzz``).
Whatever a run finds is fixed and kept below as an ``@example``.
"""

from __future__ import annotations

import gzip
import json
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mutation import EDITS, mutate
from otaudit.errors import DecodeError
from otaudit.ingest import IngestSettings, prepare
from otaudit.otlp.body import JSON, PROTOBUF
from otaudit.record import derive_columns, parse_sealed
from support import audit_request

SETTINGS = IngestSettings(max_body_bytes=256 * 1024)
VALID = audit_request(3, payload_bytes=30)


def _prepare(kind: str, media: str, body: bytes, gzipped: bool = False) -> None:
    """Run the ingest path; check every record it seals re-derives to the same columns."""
    try:
        prepared = prepare(kind, media, body, gzipped, "otlp", 1_764_288_000_000_000_000, SETTINGS)
    except DecodeError:
        return
    assert prepared.received >= prepared.dropped + prepared.rejected + len(prepared.entries) - 0
    for entry in prepared.entries:
        envelope, _ = parse_sealed(entry.sealed)
        assert derive_columns(envelope) == entry.columns


KINDS = st.sampled_from(["traces", "logs", "metrics"])


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(kind=KINDS, body=st.binary(max_size=4096))
def test_random_protobuf_bodies(kind: str, body: bytes) -> None:
    _prepare(kind, PROTOBUF, body)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(edits=EDITS)
@example(edits=[(1, 10, 0)])  # truncated inside a span
def test_mutated_protobuf_requests(edits: list[tuple[int, int, int]]) -> None:
    _prepare("traces", PROTOBUF, mutate(VALID, edits))


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(kind=KINDS, body=st.binary(max_size=2048))
def test_random_gzip_bodies(kind: str, body: bytes) -> None:
    _prepare(kind, PROTOBUF, body, gzipped=True)
    _prepare(kind, PROTOBUF, gzip.compress(body), gzipped=True)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=4),
    max_leaves=20,
)  # fmt: skip
SPAN_FIELDS = st.sampled_from([
    "traceId", "spanId", "parentSpanId", "name", "kind", "startTimeUnixNano", "endTimeUnixNano",
    "attributes", "events", "links", "status", "flags", "traceState", "droppedAttributesCount",
])  # fmt: skip


def _json_request(span: dict[str, Any]) -> bytes:
    audit = {"key": "audit.action", "value": {"stringValue": "login"}}
    attributes = span.get("attributes")
    span["attributes"] = [audit, *attributes] if isinstance(attributes, list) else [audit]
    document = {"resourceSpans": [{"resource": {"attributes": []},
                                   "scopeSpans": [{"scope": {}, "spans": [span]}]}]}  # fmt: skip
    return json.dumps(document).encode()


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(span=st.dictionaries(SPAN_FIELDS, JSON_VALUES, max_size=8))
@example(span={"startTimeUnixNano": "18446744073709551616"})  # beyond uint64
@example(span={"traceId": "zz" * 16})
@example(span={"attributes": [{"key": "k", "value": {"intValue": "1e3"}}]})
def test_otlp_json_spans_with_arbitrary_fields(span: dict[str, Any]) -> None:
    _prepare("traces", JSON, _json_request(span))


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(value=JSON_VALUES)
def test_arbitrary_json_documents(value: Any) -> None:
    _prepare("traces", JSON, json.dumps(value).encode())
    _prepare("logs", JSON, json.dumps({"resourceLogs": value}).encode())
