"""OTLP/protobuf export requests prepared by the compiled core (``otaudit._core``).

:func:`prepare` gives what :func:`otaudit.ingest.prepare` gives on the Python path
(``otaudit.otlp.convert`` selecting, ``otaudit.record.seal`` sealing), byte for byte:
the core decodes, selects, checks, redacts, encodes and seals in one call without the
GIL, and this module words its refusals and rejections with the reference's own wording
functions. ``tests/core/test_prepare_crosscheck.py`` holds the two paths equal.

The reference still decides the requests the core leaves to it, which are rare: bytes
prost cannot decode (upb may read them differently, and only upb's words make the
DecodeError message), bytes that are not the canonical encoding of what they hold
(unknown fields: upb counts them in the sizes the limits measure), and values nested
deeper than the core takes.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Final, TypedDict

from otaudit import _core, conventions
from otaudit.errors import DecodeError
from otaudit.otlp import convert
from otaudit.otlp.convert import Limits, Selection
from otaudit.record import Columns, Entry, ResourcePart
from otaudit.redaction import Redactor

if TYPE_CHECKING:
    from otaudit._core import Reason

#: The record signal of each OTLP signal the core prepares.
SIGNALS: Final = {"traces": "span", "logs": "log"}
_PREPARE: Final = {"traces": _core.prepare_spans, "logs": _core.prepare_logs}
_TYPES: Final = (Entry, Columns, ResourcePart)


class Undecodable(Exception):
    """The core leaves this request to the reference (see the module docstring)."""


class TooMany(Exception):
    """The request holds more records than allowed: ``count`` (``None``: more than the
    limit, counted on the wire before decoding)."""

    def __init__(self, count: int | None) -> None:
        super().__init__(count)
        self.count = count


class ConventionsArgs(TypedDict):
    """:mod:`otaudit.conventions` as the core's bindings take it (keyword arguments)."""

    field_sources: list[tuple[str, tuple[str, ...]]]
    status_result: list[tuple[int, str]]
    required_fields: list[str]
    producer_id: str
    producer_seq: str
    service: str


def conventions_args() -> ConventionsArgs:
    """The conventions for the core: which attributes fill which column, the status
    results, the required fields, the producer and service attributes."""
    return ConventionsArgs(
        field_sources=list(conventions.FIELD_SOURCES.items()),
        status_result=list(conventions.STATUS_RESULT.items()),
        required_fields=list(conventions.REQUIRED_FIELDS),
        producer_id=conventions.PRODUCER_ID_ATTRIBUTE,
        producer_seq=conventions.PRODUCER_SEQ_ATTRIBUTE,
        service=conventions.SERVICE_ATTRIBUTE,
    )


@functools.lru_cache(maxsize=16)
def options(
    audit_attribute: str, limits: Limits, redactor: Redactor | None
) -> _core.PrepareOptions:
    """The core's options for these settings (built once, kept)."""
    rules = () if redactor is None else tuple((r.action, r.pattern) for r in redactor.rules)
    return _core.PrepareOptions(
        audit_attribute=audit_attribute,
        max_attributes=limits.max_attributes,
        max_value_bytes=limits.max_value_bytes,
        max_resource_bytes=limits.max_resource_bytes,
        max_records=limits.max_records,
        max_sealed_ratio=limits.max_sealed_ratio,
        min_sealed_budget=limits.min_sealed_budget,
        max_reasons=convert._MAX_REASONS,
        **conventions_args(),
        redact_rules=list(rules),
        redaction_key=None if redactor is None else redactor.key,
    )


def _reason(signal: str, reason: Reason, limits: Limits, request_bytes: int) -> str:
    r, s, i, kind, data = reason
    where = convert.record_where(signal, r, s, i)
    if kind == "budget":
        budget, size = data
        assert isinstance(budget, int) and isinstance(size, int)
        return f"{where}: {convert.over_budget(budget, size, limits)}"
    if kind == "duplicate":
        (key,) = data
        return f"{where}: {convert.duplicate_key(str(key))}"
    if kind == "time":
        name, value = data
        return f"{where}: {convert.time_too_late(str(name), int(value))}"
    what = str(data[0])
    if kind == "attributes":
        text = convert.too_many_attributes(int(data[1]), int(data[2]))
    elif kind == "value":
        text = convert.value_too_large(str(data[1]), int(data[2]), int(data[3]))
    else:  # "size", of a resource or scope
        text = convert.context_too_large(int(data[1]), int(data[2]))
    return f"{where}: {convert.context_problem(what, text) if what else text}"


def prepare(
    otlp_signal: str,
    data: bytes,
    audit_attribute: str,
    limits: Limits,
    redactor: Redactor | None,
    pipeline: str,
    received_ns: int,
) -> tuple[Selection, list[Entry]]:
    """Decode, select and seal one protobuf export request (``traces`` or ``logs``,
    decompressed) with the core: the Selection (its ``records`` left empty: the entries
    hold them) and the sealed entries.

    Raises ``DecodeError`` for an id of the wrong length (the whole request is refused),
    :class:`TooMany` over ``limits.max_records`` and :class:`Undecodable` for a request
    the reference must decide.
    """
    signal = SIGNALS[otlp_signal]
    if data.__class__ is not bytes:  # the core borrows bytes only
        data = bytes(data)
    try:
        out = _PREPARE[otlp_signal](
            data, options(audit_attribute, limits, redactor), pipeline, received_ns, _TYPES
        )
    except _core.Refused as exc:
        kind = exc.args[0]
        if kind == "bad_id":
            _, r, s, i, name, size, got = exc.args
            raise DecodeError(
                convert.bad_id(convert.record_where(signal, r, s, i), name, size, got)
            ) from None
        if kind == "too_many":
            raise TooMany(exc.args[1]) from None
        if kind == "too_many_on_wire":
            raise TooMany(None) from None
        raise Undecodable from None
    received, dropped, rejected, reasons, near_misses, near_miss_keys, _, entries = out
    sel = Selection(
        signal,
        received=received,
        dropped=dropped,
        rejected=rejected,
        reasons=[_reason(signal, r, limits, len(data)) for r in reasons],
        near_misses=near_misses,
        near_miss_keys=near_miss_keys,
    )
    return sel, entries
