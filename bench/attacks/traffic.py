"""Hostile but well-formed OTLP/protobuf trace requests, one builder per attack of issue 14.

Every request parses as an ``ExportTraceServiceRequest`` (:func:`self_check`); what
makes it hostile is its shape: a huge resource, a fixed64 time above 2^63-1, half a
million records, a new actor in every span, a role change in every span. All attacker
records carry ``service.name`` = :data:`ATTACKER_SERVICE`, so the ledger can tell them
from the honest client's. Spans are written with the wire helpers of
:mod:`bench.payloads` (protobuf's classes build only ~12,000 spans/s here).
"""

from __future__ import annotations

import os
import struct
import time
from typing import Final

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.payloads import AUDIT_KEY, _attr, _field, _kv

ATTACKER_SERVICE: Final = "bench-attacker"
MAX_TIME_NS: Final = 2**64 - 1  # valid fixed64, above SQLite's INTEGER range
#: The per-value attribute limit's default (``--max-attribute-bytes``) less some headroom.
RESOURCE_VALUE_BYTES: Final = 60_000
_LOGIN_FAILED: Final = _attr(AUDIT_KEY, "user.login") + _attr("audit.result", "failure")


class Spans:
    """Encoded spans with ids never seen before (random prefix + counter), start time now."""

    def __init__(self) -> None:
        """A fresh id prefix, distinct across runs."""
        self.prefix = os.urandom(8)
        self.counter = 0

    def span(
        self, attributes: bytes, *, name: bytes = b"attack", start_ns: int | None = None
    ) -> bytes:
        """One Span message (not yet wrapped as ``ScopeSpans.spans``)."""
        self.counter += 1
        n = self.counter
        start = time.time_ns() if start_ns is None else start_ns
        end = start if start_ns is not None else start + 1_000_000
        return b"".join(
            (
                b"\x0a\x10" + self.prefix + n.to_bytes(8, "big"),  # trace_id
                b"\x12\x08" + (n ^ 0x7E7E << 48).to_bytes(8, "big"),  # span_id
                _field(0x2A, name),
                b"\x30\x02",  # kind = SERVER
                struct.pack("<BQBQ", 0x39, start, 0x41, end),
                attributes,
            )
        )

    def minimal(self) -> bytes:
        """The smallest audit span: a span id and ``audit.action`` (no trace id, no times)."""
        self.counter += 1
        return b"\x12\x08" + (self.counter ^ 0x3C3C << 48).to_bytes(8, "big") + _ACTION_X


_ACTION_X: Final = _attr(AUDIT_KEY, "x")


def resource(extra: dict[str, str] | None = None) -> bytes:
    """A Resource message: the attacker's ``service.name`` and ``extra`` attributes."""
    attrs = {"service.name": ATTACKER_SERVICE, **(extra or {})}
    return b"".join(_field(0x0A, _kv(k, v)) for k, v in attrs.items())


def request(spans: list[bytes], resource_bytes: bytes | None = None) -> bytes:
    """An ExportTraceServiceRequest: one resource, one scope, ``spans``."""
    res = resource() if resource_bytes is None else resource_bytes
    scope = _field(0x0A, _field(0x0A, b"bench.attacks"))
    body = b"".join(_field(0x12, s) for s in spans)
    return _field(0x0A, _field(0x0A, res) + _field(0x12, scope + body))


def big_resource(total_bytes: int) -> bytes:
    """A resource of about ``total_bytes``: attributes of :data:`RESOURCE_VALUE_BYTES` each
    (every value under the per-attribute limit, so only a limit on the whole resource
    can refuse it)."""
    count = max(1, -(-total_bytes // RESOURCE_VALUE_BYTES))
    value = total_bytes // count
    return resource({f"host.blob.{i:03d}": "r" * value for i in range(count)})


def amplification(spans: Spans, resource_bytes: bytes, records: int = 100) -> bytes:
    """Finding 1: one huge resource over ``records`` tiny audit spans."""
    tiny = _attr(AUDIT_KEY, "noop")
    return request([spans.span(tiny) for _ in range(records)], resource_bytes)


def poisoned_batch(spans: Spans, good: int = 9) -> bytes:
    """Finding 2: ``good`` ordinary audit spans and one starting at 2^64-1 ns."""
    attrs = _attr(AUDIT_KEY, "record_view") + _attr("enduser.id", "mallory@example.com")
    out = [spans.span(attrs) for _ in range(good)]
    out.insert(good // 2, spans.span(attrs, start_ns=MAX_TIME_NS))
    return request(out)


def many_records(spans: Spans, records: int = 500_000) -> bytes:
    """Finding 4: one request of ``records`` minimal audit spans (~16 MB for 500,000)."""
    return request([spans.minimal() for _ in range(records)])


def failed_logins(spans: Spans, first_actor: int, count: int) -> bytes:
    """Finding 5: ``count`` failed logins, each for a distinct new actor."""
    out = []
    for i in range(first_actor, first_actor + count):
        who = _attr("enduser.id", f"victim-{i:07d}@example.com")
        addr = _attr("client.address", f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")
        out.append(spans.span(_LOGIN_FAILED + who + addr, name=b"POST /login"))
    return request(out)


def role_changes(spans: Spans, first: int, count: int) -> bytes:
    """Finding 6: ``count`` role changes to ``admin``, each of a distinct target (every one
    matches the built-in ``privilege_escalation`` rule)."""
    actor = _attr("enduser.id", "ops-bot@example.com")
    change = (
        _attr(AUDIT_KEY, "role_update")
        + _attr("audit.old_value", "viewer")
        + _attr("audit.new_value", "admin")
    )
    out = [
        spans.span(
            change + actor + _attr("audit.target_user", f"user-{i:07d}@example.com"),
            name=b"PUT /api/v2/users/{id}/role",
        )
        for i in range(first, first + count)
    ]
    return request(out)


def brute_force(spans: Spans, victim: str, attempts: int = 30) -> bytes:
    """A real attack hidden in the storm: ``attempts`` failed logins for one account, from
    one address (the built-in ``brute_force_user`` rule fires at 20 within 60 minutes)."""
    who = _attr("enduser.id", victim) + _attr("client.address", "203.0.113.66")
    return request([spans.span(_LOGIN_FAILED + who, name=b"POST /login") for _ in range(attempts)])


def self_check() -> None:
    """Raise AssertionError unless every builder's bytes parse back to what was meant."""
    s = Spans()
    req = ExportTraceServiceRequest.FromString(poisoned_batch(s, 3))
    spans = req.resource_spans[0].scope_spans[0].spans
    assert [sp.start_time_unix_nano for sp in spans].count(MAX_TIME_NS) == 1
    assert req.resource_spans[0].resource.attributes[0].value.string_value == ATTACKER_SERVICE
    req = ExportTraceServiceRequest.FromString(many_records(s, 3))
    assert [a.key for a in req.resource_spans[0].scope_spans[0].spans[2].attributes] == [AUDIT_KEY]
    req = ExportTraceServiceRequest.FromString(amplification(s, big_resource(200_000), 2))
    assert req.ByteSize() > 200_000 and len(req.resource_spans[0].resource.attributes) == 5
    req = ExportTraceServiceRequest.FromString(role_changes(s, 0, 2))
    attrs = {
        kv.key: kv.value.string_value
        for kv in req.resource_spans[0].scope_spans[0].spans[1].attributes
    }
    assert attrs["audit.new_value"] == "admin" and attrs["audit.target_user"].endswith(
        "1@example.com"
    )
    req = ExportTraceServiceRequest.FromString(failed_logins(s, 5, 2))
    ids = {sp.span_id for sp in req.resource_spans[0].scope_spans[0].spans}
    assert len(ids) == 2
