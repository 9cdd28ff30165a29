"""The storage interface every ledger backend implements.

A store keeps four things, all append-only: the sealed records with their
derived query columns, the Merkle tree's perfect aligned subtree hashes
(``tree_nodes``: level 0 holds the leaf hashes; node (level, idx) is the hash
of leaves ``[idx * 2**level, (idx + 1) * 2**level)``), the signed
checkpoints, and a little metadata (schema version, log origin).

``append`` is the sequencer's one transaction: it reads the log head inside
the write lock, skips records it already holds (idempotent retries), assigns
dense sequence numbers, writes the records and the new tree nodes, and
commits durably before it returns.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from otaudit.record import Columns, Entry


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    """A signed checkpoint as the store keeps it."""

    tree_size: int
    root_hash: bytes
    signed_at_ns: int
    note: str


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """One ledger row: sequence number, sealed bytes, dedup key and stored columns."""

    seq: int
    sealed: bytes
    dedup_key: bytes
    columns: Columns


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What ``append`` did: the sequence number given to each entry (None: already held)."""

    seqs: list[int | None]
    tree_size: int


class Store(Protocol):
    """A ledger backend (SQLite embedded, PostgreSQL shared)."""

    def append(self, entries: Sequence[Entry]) -> AppendResult:
        """Durably append entries not already held; return their sequence numbers."""
        ...

    def tree_size(self) -> int:
        """The number of records (leaves) committed."""
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

    def select_seqs(
        self, *, since_ns: int | None, until_ns: int | None, actions: Sequence[str], end: int
    ) -> Iterator[int]:
        """Sequence numbers ``< end`` of the records selected by time and action, in order.

        A record is selected when ``since_ns <= time_unix_nano < until_ns`` (a None bound is
        open) and, if ``actions`` is not empty, its ``action`` column is one of them.
        """
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

    def query(
        self, sql: str, *, max_rows: int, timeout_ms: int
    ) -> tuple[list[str], list[tuple[Any, ...]], bool]:
        """Run read-only SQL: column names, rows (at most ``max_rows``), truncated flag."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
