"""The compiled core (``core/``, Rust): pure functions over bytes.

Each function here has a readable Python reference that tests hold it byte-for-byte
equal to (named in its docstring).
"""

from collections.abc import Sequence
from typing import Any, TypeAlias, overload

from otaudit.record import Columns, Entry, ResourcePart

def leaf_hash(data: bytes) -> bytes:
    """The RFC 9162 leaf hash of ``data``; reference :func:`otaudit.merkle.leaf_hash`."""

def node_hash(left: bytes, right: bytes) -> bytes:
    """The RFC 9162 interior node hash; reference :func:`otaudit.merkle.node_hash`.

    ValueError unless both are 32 bytes.
    """

# ---- prepare: one OTLP/protobuf export request decoded, selected and sealed ----

#: A rejected record: (resource group, scope group, record, kind, data); kind and data:
#: ``attributes`` (what, count, limit), ``value`` (what, key, size, limit), ``size``
#: (what, size, limit) with what ``""`` (the record), ``resource`` or ``scope``;
#: ``budget`` (budget, request bytes); ``duplicate`` (key,); ``time`` (member, value).
Reason: TypeAlias = tuple[int, int, int, str, tuple[str | int, ...]]
#: The 21 values of :class:`otaudit.record.Columns`, in its field order.
ColumnValues: TypeAlias = tuple[
    str, int, str, str, str, str, str, str,
    str | None, str | None, str | None, str | None, str | None, str | None, str | None,
    str | None, str | None, int | None, str | None, str, str,
]  # fmt: skip
#: One sealed record: sealed bytes, leaf hash, dedup key, columns, index of its resource
#: part, offset of the resource body in the sealed bytes.
SealedRecord: TypeAlias = tuple[bytes, bytes, bytes, ColumnValues, int, int]
#: received, dropped, rejected, the first rejection reasons, near misses, near-miss keys,
#: resource parts (SHA-256, canonical body), sealed records.
Outcome: TypeAlias = tuple[
    int, int, int, list[Reason], int, list[str], list[tuple[bytes, bytes]], list[SealedRecord]
]

class Refused(Exception):
    """The whole request is refused; ``args``: ``("bad_id", r, s, i, member, size, got)``
    (an id of the wrong length), ``("too_many", count)``, ``("too_many_on_wire", count)``
    (over ``max_records``), or ``("undecodable",)`` (left to the reference decoder)."""

class PrepareOptions:
    """The audit attribute, limits (:class:`otaudit.otlp.convert.Limits`), conventions
    (:mod:`otaudit.conventions`) and redaction rules (``(action, pattern)``, patterns
    matched as ``fnmatch.fnmatchcase`` matches them) requests are prepared under."""

    def __init__(
        self,
        *,
        audit_attribute: str,
        max_attributes: int,
        max_value_bytes: int,
        max_resource_bytes: int,
        max_records: int,
        max_sealed_ratio: int,
        min_sealed_budget: int,
        max_reasons: int,
        field_sources: list[tuple[str, tuple[str, ...]]],
        status_result: list[tuple[int, str]],
        required_fields: list[str],
        producer_id: str,
        producer_seq: str,
        service: str,
        redact_rules: list[tuple[str, str]],
        redaction_key: bytes | None,
    ) -> None: ...

#: The classes of :mod:`otaudit.record` the records are returned as, when passed.
EntryTypes: TypeAlias = tuple[type[Entry], type[Columns], type[ResourcePart]]
#: :data:`Outcome` with the resource parts as ``ResourcePart`` and the records as ``Entry``.
EntryOutcome: TypeAlias = tuple[
    int, int, int, list[Reason], int, list[str], list[ResourcePart], list[Entry]
]

@overload
def prepare_spans(
    body: bytes,
    options: PrepareOptions,
    pipeline: str,
    received_ns: int,
    types: None = None,
    request_bytes: int | None = None,
) -> Outcome:
    """Decode, select and seal the audit spans of an ``ExportTraceServiceRequest``
    (decompressed protobuf), without the GIL; references
    :func:`otaudit.otlp.convert.select_spans` and :func:`otaudit.record.seal`.
    With ``types`` (``(Entry, Columns, ResourcePart)``) the records come back as those
    objects, ready for ingest; ``request_bytes`` is the size of the request as received
    (it sets the sealed budget; default ``len(body)``; an OTLP/JSON request comes here
    re-encoded as protobuf). :class:`Refused` for a request refused whole."""

@overload
def prepare_spans(
    body: bytes,
    options: PrepareOptions,
    pipeline: str,
    received_ns: int,
    types: EntryTypes,
    request_bytes: int | None = None,
) -> EntryOutcome: ...
@overload
def prepare_logs(
    body: bytes,
    options: PrepareOptions,
    pipeline: str,
    received_ns: int,
    types: None = None,
    request_bytes: int | None = None,
) -> Outcome:
    """:func:`prepare_spans` for an ``ExportLogsServiceRequest``; references
    :func:`otaudit.otlp.convert.select_logs` and :func:`otaudit.record.seal`."""

@overload
def prepare_logs(
    body: bytes,
    options: PrepareOptions,
    pipeline: str,
    received_ns: int,
    types: EntryTypes,
    request_bytes: int | None = None,
) -> EntryOutcome: ...

class Codec:
    """zstd frames for stored record bytes, with at most one dictionary to compress with
    and any number to read with; bytes that are not a frame read back as they are."""

    def __init__(self, level: int = 3) -> None: ...
    def add_dictionary(self, id: int, dictionary: bytes, encode: bool) -> bool:
        """Hold ``dictionary`` (zstd ID ``id``) for reading; with ``encode``, compress with
        it. False when the bytes are not a zstd dictionary with that ID."""
    def has_dictionary(self, id: int) -> bool:
        """Whether the codec holds dictionary ``id``."""
    @property
    def encoding_dictionary(self) -> int:
        """The dictionary new frames are compressed with (0: none)."""
    def compress_many(self, items: list[bytes]) -> list[bytes]:
        """One zstd frame per item (in parallel, without the GIL)."""
    def decode(self, stored: bytes, max_bytes: int) -> bytes:
        """``stored`` itself unless it is a zstd frame, which is decompressed; ValueError
        says why a frame cannot be read (corrupt, over ``max_bytes``, unknown dictionary)."""

def is_frame(stored: bytes) -> bool:
    """Whether ``stored`` starts with the zstd magic number."""

def frame_dictionary(stored: bytes) -> int:
    """The dictionary ID a frame's header names (0: none)."""

def dictionary_id(dictionary: bytes) -> int | None:
    """The zstd ID a dictionary carries (None: not a zstd dictionary)."""

def train_dictionary(samples: list[bytes], max_bytes: int) -> bytes:
    """A zstd dictionary of at most ``max_bytes`` trained on ``samples``; ValueError when
    zstd cannot train on them (too few, too small)."""

def pg_copy_binary(rows: Sequence[tuple[Any, ...]], kinds: str) -> bytes:
    """PostgreSQL's binary COPY stream (signature, rows, trailer) of ``rows``: one value
    per letter of ``kinds`` (``q`` bigint, ``i`` integer, ``b`` bytea, ``t`` text, ``h``
    hstore given as the JSON text of a flat object of strings; None is NULL). TypeError
    for a value of the wrong type, ValueError for an hstore text that is not flat."""
