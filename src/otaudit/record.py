"""The audit record: its canonical bytes and the columns derived from them.

A sealed record is the RFC 8785 canonical JSON of an envelope::

    {"otaudit": 1, "pipeline": "<name>", "received_at": "<UTC ns>", "record": {...}}

``record`` is the OTLP span or log record with its resource and scope, in
the lossless encoding of ``docs/record-format.md``; ``received_at`` and
``pipeline`` are stamped by the server before hashing, so they are sealed
too. The leaf hash of a record is ``merkle.leaf_hash(sealed_bytes)``.

Every column a query can read is derived from the sealed bytes by
:func:`derive_columns`; ``verify`` calls the same function on the stored
bytes and compares, so a tampered column is detected.
"""

from __future__ import annotations

import calendar
import functools
import hashlib
import math
import time
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

import orjson

from otaudit import conventions
from otaudit.canonical import canonical_bytes
from otaudit.merkle import leaf_hash

FORMAT_VERSION: Final = 1
_INT64_MAX: Final = 2**63 - 1
_RECORD_MARKER: Final = b',"record":'
_RESOURCE_KEY: Final = b',"resource":'
_SCOPE_KEY: Final = b',"scope":'


class Columns(NamedTuple):
    """The query columns of one record, all derived from its sealed bytes."""

    signal: str
    time_unix_nano: int
    timestamp: str
    received_at: str
    pipeline: str
    trace_id: str
    span_id: str
    name: str
    service: str | None
    actor: str | None
    actor_role: str | None
    client_address: str | None
    action: str | None
    target: str | None
    resource_type: str | None
    result: str | None
    producer: str | None
    producer_seq: int | None
    missing: str | None
    attributes: str
    resource: str


COLUMN_NAMES: Final = Columns._fields
#: Where ``resource`` is among the columns (a row that keeps its resource once has none).
RESOURCE_COLUMN: Final = COLUMN_NAMES.index("resource")


@dataclass(frozen=True, slots=True)
class ResourcePart:
    """A record's resource as a store keeps it once (``docs/record-format.md``, "How a
    record is stored"): its canonical bytes, exactly as they appear inside the sealed
    bytes, and the SHA-256 of those bytes (the key it is kept under)."""

    hash: bytes
    body: bytes


@dataclass(frozen=True, slots=True)
class Entry:
    """A record ready to append: sealed bytes, leaf hash, dedup key, columns.

    ``resource`` and ``resource_at`` say where the record's resource lies in ``sealed``
    (``sealed[resource_at:resource_at + len(resource.body)]``), so that a store can keep
    it once for many records; None and -1: the store keeps the sealed bytes whole.
    """

    sealed: bytes
    leaf: bytes
    dedup_key: bytes
    columns: Columns
    resource: ResourcePart | None = None
    resource_at: int = -1


@functools.lru_cache(maxsize=4096)
def _utc_seconds(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def rfc3339_ns(ns: int) -> str:
    """Format UTC nanoseconds since the epoch as RFC 3339 with 9 fraction digits and ``Z``."""
    seconds, frac = divmod(ns, 1_000_000_000)
    return f"{_utc_seconds(seconds)}.{frac:09d}Z"


def rfc3339_to_ns(text: str) -> int:
    """The UTC nanoseconds of :func:`rfc3339_ns` text (``2026-01-01T00:00:00.000000000Z``);
    ValueError for any other form."""
    if len(text) != 30 or text[19] != "." or text[-1] != "Z" or not text[20:29].isdigit():
        raise ValueError(f"{text[:40]!r} is not YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ")
    seconds = calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S"))
    return seconds * 1_000_000_000 + int(text[20:29])


def encode_double(value: float) -> str:
    """The string form of a double: shortest round-trip decimal, or NaN/Infinity/-Infinity."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(value)


def text_value(value: Any) -> str:
    """The text form of an encoded attribute value, as query columns show it.

    Strings are themselves; booleans ``true``/``false``; ints, doubles and bytes
    their string form; arrays and key-value lists compact JSON of text forms, with the
    keys of key-value lists sorted (by code point), so that the text does not depend on
    the order a client sent them in: a record's columns at sealing (the client's order)
    and at ``verify`` (the canonical order of the sealed bytes) are the same.
    """
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list) or "kvlist" in value:
        return orjson.dumps(_plain(value), option=orjson.OPT_SORT_KEYS).decode()
    return str(next(iter(value.values())))  # {"int": ...}, {"double": ...}, {"bytes": ...}


def _plain(value: Any) -> Any:
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict) and "kvlist" in value:
        return {k: _plain(v) for k, v in value["kvlist"].items()}
    return text_value(value)


def _first(attributes: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        if key in attributes:
            return text_value(attributes[key])
    return None


def _producer_seq(value: Any) -> int | None:
    """``audit.producer.seq`` as an integer: an OTLP int, or a string of 1-19 ASCII digits
    that fits in int64 (SQLite's INTEGER); None for anything else."""
    if value.__class__ is dict and "int" in value:
        return int(value["int"])
    if value.__class__ is str and 0 < len(value) <= 19 and value.isascii() and value.isdigit():
        number = int(value)
        return number if number <= _INT64_MAX else None
    return None


def _flat(attributes: dict[str, Any]) -> str:
    return orjson.dumps(
        {k: v if v.__class__ is str else text_value(v) for k, v in attributes.items()},
        option=orjson.OPT_SORT_KEYS,
    ).decode()


# The records of one OTLP ResourceSpans/ResourceLogs share one resource object; its
# columns are computed once (the tuple holds the object, so its id cannot be reused).
_last_resource: tuple[dict[str, Any], str | None, str] = ({}, None, "{}")


def _resource_columns(res_attrs: dict[str, Any]) -> tuple[str | None, str]:
    global _last_resource
    cached = _last_resource
    if cached[0] is not res_attrs:
        cached = (res_attrs, _first(res_attrs, (conventions.SERVICE_ATTRIBUTE,)), _flat(res_attrs))
        _last_resource = cached
    return cached[1], cached[2]


def derive_columns(envelope: dict[str, Any]) -> Columns:
    """Derive the query columns from a parsed sealed envelope.

    This is the single definition used both when a record is appended and
    when ``verify`` re-derives the columns from the stored bytes.
    """
    rec = envelope["record"]
    attrs: dict[str, Any] = rec["attributes"]
    res_attrs: dict[str, Any] = rec["resource"]["attributes"]
    received_ns = int(envelope["received_at"])
    signal = rec["signal"]
    if signal == "span":
        when = int(rec["start_time_unix_nano"])
        name = rec["name"]
    else:
        when = int(rec["time_unix_nano"]) or int(rec["observed_time_unix_nano"])
        body = rec["body"]
        name = rec["event_name"] or (body if isinstance(body, str) else "")
    when = when or received_ns
    service, resource = _resource_columns(res_attrs)
    fields = {f: _first(attrs, keys) for f, keys in conventions.FIELD_SOURCES.items()}
    if fields["result"] is None and signal == "span":
        fields["result"] = conventions.STATUS_RESULT.get(rec["status"]["code"])
    absent = [f for f in conventions.REQUIRED_FIELDS if fields[f] is None]
    producer = attrs.get(conventions.PRODUCER_ID_ATTRIBUTE)
    number = attrs.get(conventions.PRODUCER_SEQ_ATTRIBUTE)
    return Columns(
        signal=signal,
        time_unix_nano=when,
        timestamp=rfc3339_ns(when),
        received_at=rfc3339_ns(received_ns),
        pipeline=envelope["pipeline"],
        trace_id=rec["trace_id"],
        span_id=rec["span_id"],
        name=name,
        service=service,
        attributes=_flat(attrs),
        resource=resource,
        producer=None if producer is None else text_value(producer),
        producer_seq=None if number is None else _producer_seq(number),
        missing=",".join(absent) if absent else None,
        **fields,
    )


def dedup_key(pipeline: str, content: bytes) -> bytes:
    """The idempotence key of a record: SHA-256 of the canonical envelope without its
    ``received_at``, ``{"otaudit": 1, "pipeline": ..., "record": ...}``, 16 bytes.

    A retried export carries the same content through the same pipeline (but a new
    receive time), so it maps to the same key and is not sealed twice. The pipeline is
    part of the key, so a record of one pipeline is never taken for a copy of another
    pipeline's: nothing a client sends can stand in for one of otaudit's own records
    (pipeline ``otaudit``, DESIGN invariant 9), while two own records with the same
    content (an alert found again) are still kept once.
    """
    return hashlib.sha256(
        b"".join((_envelope_prefix(pipeline), _RECORD_MARKER, content, b"}"))
    ).digest()[:16]


def content_key(content: bytes) -> bytes:
    """The idempotence key before it covered the pipeline: SHA-256 of the canonical
    ``record`` member alone, 16 bytes.

    Records sealed before that change keep this key; ``verify`` accepts either. No record
    sealed now gets it (the bytes hashed for :func:`dedup_key` begin with
    ``{"otaudit":``, which no ``record`` member does), so an old key never matches a new
    record.
    """
    return hashlib.sha256(content).digest()[:16]


def dedup_keys(pipeline: str, content: bytes) -> tuple[bytes, bytes]:
    """The dedup keys a stored record may carry: :func:`dedup_key`, and for records sealed
    before the key covered the pipeline, :func:`content_key`."""
    return dedup_key(pipeline, content), content_key(content)


@functools.lru_cache(maxsize=64)
def _envelope_prefix(pipeline: str) -> bytes:
    return canonical_bytes({"otaudit": FORMAT_VERSION, "pipeline": pipeline})[:-1]


# The records of one OTLP ResourceSpans/ResourceLogs share one resource object: its
# canonical bytes, their hash and the bytes to look for are computed once.
_last_part: tuple[object, ResourcePart, bytes] = (None, ResourcePart(b"", b""), b"")


def _resource_part(resource: object) -> tuple[ResourcePart, bytes]:
    global _last_part
    cached = _last_part
    if cached[0] is not resource:
        body = canonical_bytes(resource)
        part = ResourcePart(hashlib.sha256(body).digest(), body)
        cached = (resource, part, _RESOURCE_KEY + body + _SCOPE_KEY)
        _last_part = cached
    return cached[1], cached[2]


def resource_offset(sealed: bytes, body: bytes) -> int:
    """Where the record's resource ``body`` starts in ``sealed`` (-1: it is not there).

    The record-level member is ``,"resource":`` + body + ``,"scope":`` (canonical
    member order: ``resource`` sorts right before ``scope``, and no record member sorts
    between them), and it is the last such occurrence; nothing else in the sealed bytes
    can look like it. Inside a string every ``"`` is escaped as ``\\"``, so the quoted
    key cannot come from string content; an object key ``"resource"`` elsewhere (an
    attribute, a kvlist entry) has an encoded value as its value: a string, boolean,
    null, array or ``{"int"|"double"|"bytes"|"kvlist": ...}``, never an object that
    begins ``{"attributes":`` as a resource does; and the envelope's members before
    ``record`` are strings and a number.
    """
    at = sealed.rfind(_RESOURCE_KEY + body + _SCOPE_KEY)
    return at + len(_RESOURCE_KEY) if at >= 0 else -1


def seal(content_obj: dict[str, Any], content: bytes, pipeline: str, received_ns: int) -> Entry:
    """Stamp a record's canonical content and build the entry to append.

    The envelope's members sort as ``otaudit < pipeline < received_at < record``,
    so its canonical bytes are assembled around the record's canonical bytes
    without serializing the record again (``tests/test_record.py`` checks that
    the result is RFC 8785).
    """
    received = str(received_ns)
    sealed = b"".join(
        (
            _envelope_prefix(pipeline),
            b',"received_at":"',
            received.encode(),
            b'"',
            _RECORD_MARKER,
            content,
            b"}",
        )
    )
    envelope = {
        "otaudit": FORMAT_VERSION,
        "pipeline": pipeline,
        "received_at": received,
        "record": content_obj,
    }
    key = dedup_key(pipeline, content)
    columns = derive_columns(envelope)
    resource = content_obj.get("resource")
    if resource is None:
        return Entry(sealed, leaf_hash(sealed), key, columns)
    part, needle = _resource_part(resource)
    at = content.rfind(needle)  # the reasoning of resource_offset, within the content
    if at < 0:
        return Entry(sealed, leaf_hash(sealed), key, columns)
    at += len(sealed) - len(content) - 1 + len(_RESOURCE_KEY)
    return Entry(sealed, leaf_hash(sealed), key, columns, part, at)


def parse_sealed(sealed: bytes) -> tuple[dict[str, Any], bytes]:
    """Parse stored sealed bytes into the envelope and the canonical ``record`` member bytes."""
    envelope = orjson.loads(sealed)
    if not isinstance(envelope, dict) or envelope.get("otaudit") != FORMAT_VERSION:
        raise ValueError("not an otaudit v1 sealed record")
    at = sealed.find(_RECORD_MARKER)
    if at < 0 or not sealed.endswith(b"}"):
        raise ValueError("sealed record has no record member")
    return envelope, sealed[at + len(_RECORD_MARKER) : -1]
