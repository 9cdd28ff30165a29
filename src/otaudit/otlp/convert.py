"""OTLP protobuf messages -> audit record content (select, then encode).

The selection policy runs first and is cheap (a scan of attribute keys);
only selected records are converted into the lossless record encoding of
``docs/record-format.md``. Ids of the wrong length make the whole request
invalid (HTTP 400, nothing written); a record that cannot be encoded
losslessly (a duplicate attribute key), carries a time otaudit cannot order,
or is over a limit (its own attributes, its resource's or scope's, or the
sealed bytes the request may produce) is rejected on its own and reported
through OTLP ``partial_success``; nothing a record holds can fail the others.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from otaudit import defaults
from otaudit.canonical import canonical_bytes
from otaudit.errors import DecodeError, RecordRejected
from otaudit.record import encode_double
from otaudit.redaction import MARK, Redactor

_MAX_REASONS = 5
#: The latest time a record may carry: SQLite and PostgreSQL order times as signed
#: 64-bit nanoseconds, so later ones (valid in OTLP's fixed64) are rejected on their own.
MAX_TIME_NS: Final = 2**63 - 1


@dataclass
class Selection:
    """The audit records selected from one export request, and what happened to the rest."""

    signal: str
    records: list[tuple[dict[str, Any], bytes]] = field(default_factory=list)
    received: int = 0
    dropped: int = 0
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)
    #: Of ``dropped``, the records with attributes in the audit attribute's namespace (such
    #: as ``audit.acton``) but not the attribute itself, and those names on the first one.
    near_misses: int = 0
    near_miss_keys: list[str] = field(default_factory=list)

    def reject(self, where: str, reason: str) -> None:
        """Count one rejected record and keep the first few reasons."""
        self.rejected += 1
        if len(self.reasons) < _MAX_REASONS:
            self.reasons.append(f"{where}: {reason}")

    @property
    def error_message(self) -> str:
        """The ``partial_success.error_message`` for this request ("" when nothing was rejected)."""
        if not self.rejected:
            return ""
        more = (
            ""
            if self.rejected <= len(self.reasons)
            else f" (and {self.rejected - len(self.reasons)} more)"
        )
        return (
            f"{self.rejected} {self.signal} record(s) rejected: " + "; ".join(self.reasons) + more
        )


def any_value(value: Any) -> Any:
    """Encode an OTLP ``AnyValue`` losslessly (record format, "Values")."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "int_value":
        return {"int": str(value.int_value)}
    if kind == "double_value":
        return {"double": encode_double(value.double_value)}
    if kind == "bytes_value":
        return {"bytes": base64.b64encode(value.bytes_value).decode("ascii")}
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {"kvlist": key_values(value.kvlist_value.values)}
    return None


def key_values(items: Iterable[Any]) -> dict[str, Any]:
    """Encode a repeated ``KeyValue`` as an object; duplicate keys cannot be kept losslessly."""
    out: dict[str, Any] = {}
    count = 0
    for kv in items:  # the hot path of ingest: strings inline, one lookup per field
        value = kv.value
        if value.WhichOneof("value") == "string_value":
            out[kv.key] = value.string_value
        else:
            out[kv.key] = any_value(value)
        count += 1
    if len(out) != count:
        seen: set[str] = set()
        for kv in items:
            if kv.key in seen:
                raise RecordRejected(duplicate_key(kv.key))
            seen.add(kv.key)
    return out


def duplicate_key(key: str) -> str:
    """Why a record with a repeated attribute ``key`` is rejected."""
    return f"duplicate attribute key {key!r}"


def time_too_late(name: str, value: int) -> str:
    """Why a record whose time ``name`` is ``value`` (past :data:`MAX_TIME_NS`) is rejected."""
    return (
        f"{name} {value} is after 2262-04-11T23:47:16.854775807Z (2^63-1 ns since 1970),"
        " the latest time otaudit can store and order"
    )


def bad_id(where: str, name: str, size: int, got: int) -> str:
    """Why a request with an id of ``got`` bytes (not ``size``) is refused whole."""
    return f"{where}.{name}: expected {size} bytes, got {got}"


def too_many_attributes(count: int, limit: int) -> str:
    """Why a record (resource, scope) with ``count`` attributes is rejected."""
    return f"{count} attributes, over the limit of {limit}"


def value_too_large(key: str, size: int, limit: int) -> str:
    """Why a record (resource, scope) whose attribute ``key`` is ``size`` bytes is rejected."""
    return f"attribute {key!r} is {size} bytes, over the limit of {limit}"


def context_problem(what: str, problem: str) -> str:
    """A resource's or scope's problem, said of it (``what``: ``resource``, ``scope``)."""
    return f"{what}: {problem}"


def context_too_large(size: int, limit: int) -> str:
    """Why the records of a resource or scope of ``size`` bytes are rejected."""
    return f"{size} bytes, over the limit of {limit}"


def _resource(res: Any, schema_url: str) -> dict[str, Any]:
    return {
        "attributes": key_values(res.attributes),
        "dropped_attributes_count": res.dropped_attributes_count,
        "entity_refs": [
            {
                "schema_url": ref.schema_url,
                "type": ref.type,
                "id_keys": list(ref.id_keys),
                "description_keys": list(ref.description_keys),
            }
            for ref in getattr(res, "entity_refs", ())
        ],
        "schema_url": schema_url,
    }


def _scope(scope: Any, schema_url: str) -> dict[str, Any]:
    return {
        "name": scope.name,
        "version": scope.version,
        "attributes": key_values(scope.attributes),
        "dropped_attributes_count": scope.dropped_attributes_count,
        "schema_url": schema_url,
    }


def _time(value: int, name: str) -> str:
    if value > MAX_TIME_NS:
        raise RecordRejected(time_too_late(name, value))
    return str(value)


def _check_id(value: bytes, size: int, where: str, name: str) -> str:
    if len(value) not in (0, size):
        raise DecodeError(bad_id(where, name, size, len(value)))
    return value.hex()


def _is_audit(attributes: Iterable[Any], key: str) -> bool:
    return any(kv.key == key for kv in attributes)


def _namespace(audit_attribute: str) -> str | None:
    """``audit.`` for ``audit.action``: the prefix of the attributes that come with it."""
    head, dot, _ = audit_attribute.rpartition(".")
    return head + dot if head else None


def _note_near_miss(sel: Selection, attributes: Iterable[Any], namespace: str) -> None:
    keys = [kv.key for kv in attributes if kv.key.startswith(namespace)]
    if keys:
        sel.near_misses += 1
        if not sel.near_miss_keys:
            sel.near_miss_keys = [k[:64] for k in keys[:5]]


def _span(span: Any, where: str) -> dict[str, Any]:
    return {
        "signal": "span",
        "trace_id": span.trace_id.hex(),
        "span_id": span.span_id.hex(),
        "parent_span_id": span.parent_span_id.hex(),
        "trace_state": span.trace_state,
        "flags": span.flags,
        "name": span.name,
        "kind": span.kind,
        "start_time_unix_nano": _time(span.start_time_unix_nano, "start_time_unix_nano"),
        "end_time_unix_nano": _time(span.end_time_unix_nano, "end_time_unix_nano"),
        "attributes": key_values(span.attributes),
        "dropped_attributes_count": span.dropped_attributes_count,
        "events": [
            {
                "time_unix_nano": str(ev.time_unix_nano),
                "name": ev.name,
                "attributes": key_values(ev.attributes),
                "dropped_attributes_count": ev.dropped_attributes_count,
            }
            for ev in span.events
        ],
        "dropped_events_count": span.dropped_events_count,
        "links": [
            {
                "trace_id": _check_id(ln.trace_id, 16, where, "links.trace_id"),
                "span_id": _check_id(ln.span_id, 8, where, "links.span_id"),
                "trace_state": ln.trace_state,
                "attributes": key_values(ln.attributes),
                "dropped_attributes_count": ln.dropped_attributes_count,
                "flags": ln.flags,
            }
            for ln in span.links
        ],
        "dropped_links_count": span.dropped_links_count,
        "status": {"code": span.status.code, "message": span.status.message},
    }


def _log(rec: Any) -> dict[str, Any]:
    return {
        "signal": "log",
        "time_unix_nano": _time(rec.time_unix_nano, "time_unix_nano"),
        "observed_time_unix_nano": _time(rec.observed_time_unix_nano, "observed_time_unix_nano"),
        "severity_number": rec.severity_number,
        "severity_text": rec.severity_text,
        "body": any_value(rec.body) if rec.HasField("body") else None,
        "attributes": key_values(rec.attributes),
        "dropped_attributes_count": rec.dropped_attributes_count,
        "flags": rec.flags,
        "trace_id": rec.trace_id.hex(),
        "span_id": rec.span_id.hex(),
        "event_name": getattr(rec, "event_name", ""),
    }


@dataclass(frozen=True)
class Limits:
    """What one record, its resource and scope, and one request may hold.

    Attribute values are measured by their protobuf encoding, so nested arrays and maps
    count whole. A record over a limit, or whose resource or scope is, is rejected and
    reported in ``partial_success``; the rest of the request is kept. Every record carries
    a copy of its resource and scope in its sealed bytes, so those are bounded too, and
    the sealed bytes of one request may reach ``max_sealed_ratio`` times the request's
    own (decompressed) size, or ``min_sealed_budget``, whichever is larger: past that,
    the request's remaining records are rejected rather than multiplied into the ledger.
    ``max_records`` bounds the records (spans or log records, audit or not) of one
    request; a request over it is refused whole (HTTP 413), before any is converted.
    """

    max_attributes: int = defaults.MAX_ATTRIBUTES
    max_value_bytes: int = defaults.MAX_ATTRIBUTE_BYTES
    max_resource_bytes: int = defaults.MAX_RESOURCE_BYTES
    max_records: int = defaults.MAX_RECORDS_PER_REQUEST
    max_sealed_ratio: int = 16
    min_sealed_budget: int = 4 * 1024 * 1024

    def sealed_budget(self, request_bytes: int) -> int:
        """The sealed bytes a request of ``request_bytes`` may produce."""
        return max(self.min_sealed_budget, self.max_sealed_ratio * request_bytes)


def _over_limits(item: Any, limits: Limits) -> str | None:
    if len(item.attributes) > limits.max_attributes:
        return too_many_attributes(len(item.attributes), limits.max_attributes)
    for kv in item.attributes:
        size = kv.value.ByteSize()
        if size > limits.max_value_bytes:
            return value_too_large(kv.key, size, limits.max_value_bytes)
    return None


def _context_over_limits(message: Any, what: str, limits: Limits) -> str | None:
    """What is wrong with a resource or scope under ``limits`` (None if nothing)."""
    if (over := _over_limits(message, limits)) is not None:
        return context_problem(what, over)
    size = message.ByteSize()
    if size > limits.max_resource_bytes:
        return context_problem(what, context_too_large(size, limits.max_resource_bytes))
    return None


@dataclass(frozen=True)
class _Shape:
    """Where one signal keeps its records in an export request, and how to encode one."""

    signal: str
    resources: str  # resource_spans / resource_logs
    scopes: str  # scope_spans / scope_logs
    items: str  # spans / log_records
    ids: tuple[tuple[str, int], ...]  # id fields and their lengths in bytes
    encode: Callable[[Any, str], dict[str, Any]]


def _redacted_resource(group: Any, redactor: Redactor | None) -> dict[str, Any]:
    resource = _resource(group.resource, group.schema_url)
    if redactor is not None:
        resource["attributes"], done = redactor.apply(resource["attributes"])
        if done:
            resource["attributes"][MARK] = ",".join(done)
    return resource


def _select(
    request: Any,
    audit_attribute: str,
    shape: _Shape,
    limits: Limits,
    redactor: Redactor | None,
    request_bytes: int,
) -> Selection:
    sel = Selection(shape.signal)
    namespace = _namespace(audit_attribute)
    budget = limits.sealed_budget(request_bytes)
    sealed_bytes = 0
    for r, group in enumerate(getattr(request, shape.resources)):
        resource: dict[str, Any] | None = None
        resource_problem = _context_over_limits(group.resource, "resource", limits)
        for s, scoped in enumerate(getattr(group, shape.scopes)):
            scope: dict[str, Any] | None = None
            shared = resource_problem or _context_over_limits(scoped.scope, "scope", limits)
            for i, item in enumerate(getattr(scoped, shape.items)):
                where = record_where(shape.signal, r, s, i)
                sel.received += 1
                for name, size in shape.ids:
                    _check_id(getattr(item, name), size, where, name)
                if not _is_audit(item.attributes, audit_attribute):
                    sel.dropped += 1
                    if namespace is not None:
                        _note_near_miss(sel, item.attributes, namespace)
                    continue
                problem = shared or _over_limits(item, limits)
                if problem is not None:
                    sel.reject(where, problem)
                    continue
                if sealed_bytes > budget:
                    sel.reject(where, over_budget(budget, request_bytes, limits))
                    continue
                try:
                    if resource is None:
                        resource = _redacted_resource(group, redactor)
                    if scope is None:
                        scope = _scope(scoped.scope, scoped.schema_url)
                    content = shape.encode(item, where)
                    if redactor is not None:
                        content["attributes"], done = redactor.apply(content["attributes"])
                        if done:
                            content["attributes"][MARK] = ",".join(done)
                    content["resource"] = resource
                    content["scope"] = scope
                    encoded = canonical_bytes(content)
                except RecordRejected as exc:
                    sel.reject(where, str(exc))
                    continue
                sealed_bytes += len(encoded)
                if sealed_bytes > budget:
                    sel.reject(where, over_budget(budget, request_bytes, limits))
                    continue
                sel.records.append((content, encoded))
    return sel


def over_budget(budget: int, request_bytes: int, limits: Limits) -> str:
    """Why a record past the request's sealed budget is rejected."""
    return (
        f"the request's records would seal more than {budget} bytes (the larger of"
        f" {limits.max_sealed_ratio} times its {request_bytes} bytes and"
        f" {limits.min_sealed_budget}); send fewer records per request or a smaller resource"
    )


_SPANS = _Shape(
    "span", "resource_spans", "scope_spans", "spans",
    (("trace_id", 16), ("span_id", 8), ("parent_span_id", 8)), _span,
)  # fmt: skip
_LOGS = _Shape(
    "log", "resource_logs", "scope_logs", "log_records",
    (("trace_id", 16), ("span_id", 8)), lambda rec, _where: _log(rec),
)  # fmt: skip


_SHAPES: Final = {"span": _SPANS, "log": _LOGS}


def record_where(signal: str, r: int, s: int, i: int) -> str:
    """Where record ``i`` of scope group ``s`` of resource group ``r`` is in a request of
    ``signal`` (span, log) records, as messages name it."""
    shape = _SHAPES[signal]
    return f"{shape.resources}[{r}].{shape.scopes}[{s}].{shape.items}[{i}]"


def select_spans(
    request: Any,
    audit_attribute: str,
    limits: Limits = Limits(),
    redactor: Redactor | None = None,
    request_bytes: int = 0,
) -> Selection:
    """Select, redact and encode the audit spans of an ``ExportTraceServiceRequest``
    (``request_bytes``: its decompressed size, which sets the sealed budget)."""
    return _select(request, audit_attribute, _SPANS, limits, redactor, request_bytes)


def select_logs(
    request: Any,
    audit_attribute: str,
    limits: Limits = Limits(),
    redactor: Redactor | None = None,
    request_bytes: int = 0,
) -> Selection:
    """Select, redact and encode the audit log records of an ``ExportLogsServiceRequest``
    (``request_bytes``: its decompressed size, which sets the sealed budget)."""
    return _select(request, audit_attribute, _LOGS, limits, redactor, request_bytes)


def count_records(request: Any) -> int:
    """Count the spans or log records of an export request (audit or not), unconverted."""
    if hasattr(request, "resource_spans"):
        return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
    return sum(len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs)


def count_data_points(request: Any) -> int:
    """Count the data points of an ``ExportMetricsServiceRequest`` (metrics are not kept)."""
    total = 0
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                kind = metric.WhichOneof("data")
                if kind is not None:
                    total += len(getattr(metric, kind).data_points)
    return total
