"""Records with a chosen receive time, pipeline, service and signal, sealed as ``serve`` seals
them, for the retention tests (a record's age counts from its sealed receive time)."""

from __future__ import annotations

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from otaudit.access import Reader, log_request
from otaudit.conventions import AUDIT_ATTRIBUTE
from otaudit.otlp.convert import select_logs, select_spans
from otaudit.record import Entry, seal

DAY_NS = 86_400 * 1_000_000_000
#: "Now" for the retention tests: 2026-12-01T00:00:00Z.
NOW_NS = 1_796_083_200 * 1_000_000_000
_next = iter(range(1, 1 << 40))


def _kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def log_record(
    action: str,
    received_ns: int,
    *,
    service: str = "app",
    pipeline: str = "otlp",
    actor: str = "alice",
    target: str = "doc-1",
    resource_type: str = "document",
    time_ns: int | None = None,
) -> Entry:
    """A sealed log record of ``service`` with ``action``, received at ``received_ns``."""
    n = next(_next)
    extra: dict[str, str | int] = {"audit.result": "success", "audit.target": target, "n": n}
    when = received_ns if time_ns is None else time_ns
    body = f"{action} {n}"
    request = log_request(
        Reader(actor), action, resource_type, body, extra, time_ns=when, host=False
    )
    request.resource_logs[0].resource.attributes[0].value.string_value = service
    ((obj, content),) = select_logs(request, AUDIT_ATTRIBUTE).records
    return seal(obj, content, pipeline, received_ns)


def span_record(action: str, received_ns: int, *, service: str = "app") -> Entry:
    """A sealed audit span of ``service`` with ``action``, received at ``received_ns``."""
    n = next(_next)
    span = Span(
        trace_id=n.to_bytes(16, "big"),
        span_id=n.to_bytes(8, "big"),
        name=action,
        start_time_unix_nano=received_ns,
        attributes=[_kv(AUDIT_ATTRIBUTE, action), _kv("enduser.id", "alice")],
    )
    resource = Resource(attributes=[_kv("service.name", service)])
    request = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(resource=resource, scope_spans=[ScopeSpans(spans=[span])])]
    )
    ((obj, content),) = select_spans(request, AUDIT_ATTRIBUTE).records
    return seal(obj, content, "otlp", received_ns)
