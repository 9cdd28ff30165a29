"""The storage interface every ledger backend implements.

A store keeps five things, all append-only: the sealed records with their
derived query columns; each distinct resource once (``resources``: a record row
keeps its sealed bytes with the resource's bytes cut out and where they were
cut, and every read splices them back: :mod:`otaudit.store.resources`); the
Merkle tree's perfect aligned subtree hashes (``tree_nodes``: level 0 holds
the leaf hashes; node (level, idx) is the hash of leaves ``[idx * 2**level,
(idx + 1) * 2**level)``); the signed checkpoints; and a little metadata
(schema version, log origin).

``append`` is the sequencer's one transaction: it reads the log head inside
the write lock, skips records it already holds (idempotent retries), assigns
dense sequence numbers, writes the records, their resources and the new tree nodes, and
commits durably before it returns.

The interface comes in three parts, so that a caller can ask for only what it
uses: :class:`LedgerStore` (the ledger and its tree), :class:`ReadStore`
(search, detection and completeness reads) and :class:`TokenStore`;
:class:`Store` is all three. Both stores are one SQL implementation
(:mod:`otaudit.store.sql`) over a small driver per database
(:mod:`otaudit.store.driver`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from otaudit.record import Columns, Entry
from otaudit.store.migrations import Migration
from otaudit.store.search import BrowseOrder, SearchFilter


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    """A signed checkpoint as the store keeps it."""

    tree_size: int
    root_hash: bytes
    signed_at_ns: int
    note: str


@dataclass(frozen=True, slots=True)
class StoredToken:
    """An API token as the store keeps it (never the token itself: its SHA-256)."""

    token_id: str
    name: str
    scopes: str  # comma-separated
    token_hash: str
    created_at: str
    revoked_at: str | None


@dataclass(frozen=True, slots=True)
class StoredResource:
    """How a record row keeps its resource: cut out of its sealed bytes at byte ``at``,
    kept once in ``resources`` under ``hash``; ``body`` is what that table holds under
    ``hash`` (None: nothing)."""

    at: int
    hash: bytes
    body: bytes | None


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """One ledger row: sequence number, sealed bytes (whole: the resource spliced back
    in), dedup key and stored columns; ``resource``: how the row keeps its resource
    (None: its sealed bytes are stored whole, as rows written before resources were
    kept once are)."""

    seq: int
    sealed: bytes
    dedup_key: bytes
    columns: Columns
    resource: StoredResource | None = None


@dataclass(frozen=True, slots=True)
class Removal:
    """A range of sequence numbers ``first..last`` (inclusive) whose record rows the receipt
    at ``receipt_seq`` allowed to be deleted (table ``removals``)."""

    first: int
    last: int
    receipt_seq: int


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What ``append`` did: the sequence number given to each entry (None: already held)."""

    seqs: list[int | None]
    tree_size: int


@dataclass(frozen=True, slots=True)
class ProducerStats:
    """One producer's numbered records (``producer_seq`` not NULL) in a time window."""

    producer: str
    first_seq: int
    last_seq: int
    records: int


@dataclass(frozen=True, slots=True)
class SeqBreak:
    """Two neighbouring numbers of one producer (in number order) that do not follow on.

    ``seq == previous``: the number occurs twice (one row per extra copy);
    ``seq > previous + 1``: the numbers ``previous + 1 .. seq - 1`` are missing.
    """

    producer: str
    previous: int
    seq: int


@dataclass(frozen=True, slots=True)
class ServiceConformance:
    """How many of one service's audit records lack required fields or numbering."""

    service: str | None
    records: int
    nonconforming: int
    missing_actor: int
    missing_result: int
    unnumbered: int


class LedgerStore(Protocol):
    """The ledger itself: the sequencer's append, the stored records and tree, signed
    checkpoints, the signer's turn, metadata and the schema's migrations."""

    @property
    def migrations(self) -> Sequence[Migration]:
        """This store's migrations, in version order."""
        ...

    def schema_version(self) -> int:
        """The number of the last migration applied to this ledger (0: empty)."""
        ...

    def migrate(
        self, *, online_only: bool, progress: Callable[[int], object] | None = None
    ) -> list[Migration]:
        """Apply the pending migrations (one transaction each); return those applied.

        With ``online_only``, ConfigError if any pending one is not safe to apply
        while other otaudit processes use the ledger. ``progress`` (optional) is called
        with the number applied so far after each one.
        """
        ...

    def signer_turn(self) -> AbstractContextManager[bool]:
        """Hold the right to sign checkpoints while inside; False: another process has it."""
        ...

    def append(self, entries: Sequence[Entry]) -> AppendResult:
        """Durably append entries not already held; return their sequence numbers."""
        ...

    def tree_size(self) -> int:
        """The number of records (leaves) committed."""
        ...

    def removals(self) -> list[Removal]:
        """Every range of removed payloads, by first seq (they never overlap)."""
        ...

    def add_removals(self, receipt_seq: int, ranges: Sequence[tuple[int, int]]) -> None:
        """Durably let the rows of ``ranges`` (first, last inclusive, none overlapping a
        stored range) be removed under the receipt at ``receipt_seq`` (already appended)."""
        ...

    @property
    def placeholder(self) -> str:
        """The parameter marker of this store's SQL."""
        ...

    def rows_where(
        self, columns: Sequence[str], condition: str, params: Sequence[Any], *, end: int
    ) -> Iterator[tuple[Any, ...]]:
        """``columns`` of the records rows with seq ``< end`` matching ``condition`` (SQL
        over the ``records`` columns, with :attr:`placeholder`), by seq, streamed."""
        ...

    def seqs_where(self, condition: str, params: Sequence[Any], *, end: int) -> Iterator[int]:
        """The seqs of :meth:`rows_where`."""
        ...

    def subject_condition(self, subject: str) -> tuple[str, list[Any]]:
        """A condition over the records columns true when ``subject`` is a record's actor,
        its target or the value of one of its attributes."""
        ...

    def present_in_removals(self) -> list[int]:
        """The seqs whose rows are stored although a removal covers them."""
        ...

    def remove_payloads(self, first: int, last: int) -> int:
        """Delete the record rows ``first <= seq <= last`` (all inside stored removals)
        in one durable transaction; how many rows went."""
        ...

    def present_seqs(self, first: int, last: int) -> list[int]:
        """The sequence numbers ``first..last`` whose record rows are stored."""
        ...

    def restore(self, seq: int, entry: Entry) -> None:
        """Store again the record row of ``seq`` (removed earlier) from its sealed entry; the
        caller has checked that it hashes to the stored leaf."""
        ...

    def reclaim_space(self, max_pages: int) -> int:
        """Give free pages back to the file system (SQLite); how many were."""
        ...

    def nodes(self, keys: Sequence[tuple[int, int]]) -> list[bytes]:
        """The stored hashes of the given (level, idx) perfect subtrees, in order."""
        ...

    def iter_records(self, begin: int = 0, end: int | None = None) -> Iterator[StoredRecord]:
        """Records with ``begin <= seq < end`` in sequence order (as stored; gaps show)."""
        ...

    def iter_level(self, level: int, begin: int = 0) -> Iterator[tuple[int, bytes]]:
        """The (idx, hash) rows of one tree level from ``idx >= begin``, in order."""
        ...

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        """The checkpoint with the largest tree size, or None."""
        ...

    def checkpoints(self) -> list[StoredCheckpoint]:
        """Every stored checkpoint, oldest first."""
        ...

    def add_checkpoint(self, cp: StoredCheckpoint) -> None:
        """Durably store a signed checkpoint."""
        ...

    def meta(self, key: str) -> str | None:
        """A metadata value, or None."""
        ...

    def set_meta(self, key: str, value: str) -> None:
        """Set a metadata value once (metadata is append-only too)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class ReadStore(Protocol):
    """The reads over the stored columns: search, selection, detection and completeness."""

    def search(
        self, where: SearchFilter, *, after_seq: int = -1, limit: int | None = None
    ) -> Iterator[tuple[Any, ...]]:
        """Rows of ``search.SEARCH_COLUMNS`` matching ``where`` with ``seq > after_seq``,
        in sequence order, streamed (constant memory however many match)."""
        ...

    def browse(
        self,
        where: SearchFilter,
        page: BrowseOrder,
        *,
        after_seq: int | None = None,
        limit: int | None = None,
        seq_window: tuple[int, int] | None = None,
    ) -> Iterator[tuple[Any, ...]]:
        """Rows of ``search.SEARCH_COLUMNS`` matching ``where`` and ``page`` in its order,
        from just past record ``after_seq`` (keyset paging), within ``seq_window``
        (``first <= seq < end``) when given, streamed."""
        ...

    def window_holds_at_most(self, where: SearchFilter, limit: int) -> bool:
        """Whether the time window of ``where`` holds at most ``limit`` records."""
        ...

    def count(self, where: SearchFilter) -> int:
        """How many records match ``where``."""
        ...

    def select_seqs(
        self, *, since_ns: int | None, until_ns: int | None, actions: Sequence[str], end: int
    ) -> Iterator[int]:
        """Sequence numbers ``< end`` of the records selected by time and action, in order.

        A record is selected when ``since_ns <= time_unix_nano < until_ns`` (a None bound is
        open) and, if ``actions`` is not empty, its ``action`` column is one of them.
        """
        ...

    def detect_rows(self, begin: int, end: int | None = None) -> Iterator[tuple[Any, ...]]:
        """Rows of ``store.events.EVENT_COLUMNS`` with ``begin <= seq < end``, by seq."""
        ...

    def first_seq_at(self, time_ns: int) -> int | None:
        """The smallest seq of a record with ``time_unix_nano >= time_ns`` (None: no such)."""
        ...

    def action_rows(
        self, actions: Sequence[str], *, since_ns: int | None = None
    ) -> Iterator[tuple[Any, ...]]:
        """(seq, time_unix_nano, actor, target, attributes) of otaudit's own records
        (pipeline ``conventions.OWN_PIPELINE``) with one of ``actions``, in sequence order
        (attributes: a dict or its JSON text)."""
        ...

    def producer_stats(
        self, *, since_ns: int | None = None, producer: str | None = None, end: int | None = None
    ) -> Iterator[ProducerStats]:
        """Per producer, ordered by producer id: statistics of the records with both
        ``producer`` and ``producer_seq``, ``time_unix_nano >= since_ns`` and ``seq < end``
        (None: no bound), of one producer only if ``producer`` is given."""
        ...

    def producer_breaks(
        self, *, since_ns: int | None = None, producer: str | None = None, end: int | None = None
    ) -> Iterator[SeqBreak]:
        """The breaks in each producer's numbering over the same records as
        ``producer_stats``, ordered by producer id (in the same order), then number.

        Pass the same ``end`` to both (e.g. the tree size read first) for one consistent
        view while records are being appended."""
        ...

    def service_conformance(self, *, since_ns: int | None = None) -> Iterator[ServiceConformance]:
        """Per service (``service`` column), counts of the records with
        ``time_unix_nano >= since_ns`` that lack required fields or producer numbering."""
        ...


class TokenStore(Protocol):
    """The API tokens (kept by their SHA-256, never the token itself)."""

    def tokens(self) -> list[StoredToken]:
        """Every API token ever created (revoked ones too), oldest first."""
        ...

    def add_token(self, token: StoredToken) -> None:
        """Store a new API token."""
        ...

    def revoke_token(self, token_id: str, at: str) -> bool:
        """Mark a token revoked (once); False if there is no such unrevoked token."""
        ...


class Store(LedgerStore, ReadStore, TokenStore, Protocol):
    """A ledger backend (SQLite embedded, PostgreSQL shared): all three at once."""
