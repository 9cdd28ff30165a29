"""The compiled core (``core/``, Rust): pure functions over bytes, and verify's checks.

Each function here has a readable Python reference that tests hold it byte-for-byte
equal to (named in its docstring).
"""

from collections.abc import Callable, Sequence
from typing import Any, TypeAlias, final, overload

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

class SqliteWriter:
    """One writing connection to an existing SQLite ledger (``synchronous=FULL``), on the
    system libsqlite3; statements run without the GIL. Errors are ``sqlite3.IntegrityError``
    (a constraint or trigger refused a row) or ``sqlite3.OperationalError``."""

    def __init__(self, path: str) -> None: ...
    def execute(self, sql: str) -> None:
        """Run statements without parameters (``BEGIN IMMEDIATE``, ``COMMIT``, a pragma)."""
    def rollback(self) -> None:
        """Roll back the open transaction, if any."""
    @property
    def in_transaction(self) -> bool:
        """Whether a transaction is open."""
    def insert(
        self,
        sql: str,
        rows: Sequence[tuple[Any, ...]],
        compress: tuple[int, Codec] | None = None,
    ) -> None:
        """Run ``sql`` once per row (None, int, float, str or bytes values), in order; with
        ``compress``, that column's bytes become zstd frames of ``Codec`` first."""
    def close(self) -> None:
        """Close the connection."""

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

# -- verify (steps 1 and 2 of otaudit.verify) ------------------------------------------

#: Where verify fails and what kind of failure it is: ``(seq, kind)`` for the records
#: (kinds ``missing``, ``no-leaf``, ``extra-leaf``, ``resource``, ``invalid``, ``leaf``,
#: ``cut``, ``column``, ``dedup-key``, ``unsure``), ``(level, "tree")`` for the tree.
_Fault = tuple[int, str]
#: A record signed too late: ``(seq, received_ns, checkpoint_size, later_seq, later_ns)``,
#: the fields of :class:`otaudit.latesigning.LateRecord`.
_Late = tuple[int, int, int, int, int]
#: A record row for :class:`RecordStream`: ``(seq, sealed, dedup_key, columns, kept)``.
_Row = tuple[int, bytes, bytes, Sequence[object], tuple[int, bytes, bytes | None] | None]

def verify_sqlite(
    uri: str,
    begin: int,
    end: int | None,
    checkpoint_sizes: list[int] | None,
    max_delay_s: int,
    tree: bool,
    max_record_bytes: int,
    progress: Callable[[int], object] | None = None,
    inclusion: tuple[int, bytes] | None = None,
    removed: Sequence[tuple[int, int]] = (),
) -> tuple[int, int, _Fault | None, _Fault | None, _Late | None, int | None, int]:
    """Steps 1 and 2 of verify over the SQLite ledger at ``uri`` (a read-only SQLite URI),
    read by the core itself (through the same shared libsqlite3 as :mod:`sqlite3`), checked
    in parallel without the GIL.

    Records ``[begin, end)`` (``end`` None: to the last, and no leaf may be left over),
    their stored bytes decoded as :meth:`otaudit.store.codec.StoredBytes.decode` decodes
    them (a zstd frame decompressed to at most ``max_record_bytes``, with the dictionary
    of the ``dictionaries`` table its header names; one that cannot be read left as it is),
    against their leaves, columns, dedup keys and kept resources; with
    ``checkpoint_sizes``, the first record signed more than ``max_delay_s`` late
    (:class:`otaudit.latesigning.LateSigning`); with ``tree``, every stored node above
    level 0 at the records' count; with ``inclusion`` (a signed tree size and its root)
    and ``end``, once the records are good, each leaf of the range proven into that root
    with an RFC 9162 inclusion proof from stored nodes (as ``verify_range`` proves them).
    ``progress`` is called as the reference calls it (every 10,000 records), and there an
    exception of a signal handler (KeyboardInterrupt) stops the core and is raised.

    A seq without a row inside one of the ``removed`` ranges (``(first, last)``, inclusive,
    sorted, not overlapping: the ``removals`` table) is absent: passed, neither checked nor
    proven nor seen by the late signing, but its leaf must be at tree level 0. A seq
    without a row outside them is missing, as before; a row inside them is checked as any.

    Returns ``(seqs passed (records checked and absent seqs: the tree's size when whole),
    the records' sealed bytes, the records' fault, the tree's fault, the late record, the
    first leaf not proven, absent seqs)``; references: ``_check_stream``, ``_check_tree``
    and ``verify_range`` in :mod:`otaudit.verify`, which word a fault. RuntimeError: not
    readable as a ledger; ValueError: ``removed`` is not such ranges.
    """

@final
class RecordStream:
    """Step 1 of verify over rows a Python store reads (the PostgreSQL store), fed in
    seq order in batches and checked in parallel without the GIL; reference
    ``otaudit.verify._check_stream``."""

    def __new__(
        cls,
        begin: int,
        checkpoint_sizes: list[int] | None,
        max_delay_s: int,
        removed: Sequence[tuple[int, int]] = (),
    ) -> RecordStream:
        """Records from ``begin`` on; with ``checkpoint_sizes``, also look for a record
        signed more than ``max_delay_s`` late; a seq without a row inside a ``removed``
        range is absent (as in :func:`verify_sqlite`). ValueError: ``removed`` is not
        sorted, non-overlapping ``(first, last)`` ranges."""

    def feed(
        self,
        rows: Sequence[
            tuple[int, bytes, bytes, Sequence[object], tuple[int, bytes, bytes | None] | None]
        ],
        leaves: Sequence[tuple[int, bytes]],
    ) -> _Fault | None:
        """Take the next level-0 nodes ``(idx, hash)`` and check the next ``rows``
        ``(seq, sealed, dedup_key, columns, kept)`` (``kept``: None, or ``(at, hash, body
        or None)`` as :class:`otaudit.store.base.StoredResource` holds it); the first
        fault so far, or None. Each row comes with the leaves up to its own, absent seqs'
        included. Without rows, the leaves are of seqs before the next row (or after the
        last, below the range's end) and are taken at once for the absent seqs they are
        (a long run of absent seqs is fed so, in pieces)."""

    def finish(self, end: int | None) -> tuple[int, int, _Fault | None, _Late | None, int]:
        """The end of the stream (``end``: every seq below it was there or is absent;
        None: every leaf left over is of an absent seq): ``(seqs passed, the records'
        sealed bytes, the fault, the late record, absent seqs)``."""

def sqlite_entry() -> int:
    """The address of ``sqlite3_libversion`` in the SQLite library the core links; equal
    to its address in the library :mod:`sqlite3` uses when both are one copy of SQLite
    (two copies in one process do not see each other's POSIX locks: then
    :func:`verify_sqlite` must not open a ledger that :mod:`sqlite3` has open)."""

def scan_sqlite(uri: str, parse: bool, max_record_bytes: int) -> tuple[int, int]:
    """What :func:`verify_sqlite` costs at the least, for the benchmark: every record row
    of the SQLite ledger at ``uri`` read as it reads them (frames decompressed, resources
    spliced back), with ``parse`` their sealed bytes also parsed as JSON, nothing checked.

    Returns ``(records, sealed bytes)``. RuntimeError: not readable as a ledger.
    """
