"""What one database adds to the shared SQL: the driver under :class:`otaudit.store.sql.SQLStore`.

Both stores run the same statements over the same tables (:mod:`otaudit.store.sql`);
a driver holds only what differs between the databases: how a statement names a
table and a parameter, how it runs and streams rows and says what failed, the
write transaction that holds the log head, how an append's rows are written in
bulk (``executemany`` or binary ``COPY``), the signer's lock, how a migration is
applied, and how a stored value reads back as the columns' text.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from otaudit.record import Columns, Entry
from otaudit.store.migrations import Migration
from otaudit.tree import AppendPlan

Row = tuple[Any, ...]


class Driver(Protocol):
    """One database's connection and dialect; every method raises StoreError on failure.

    ``label`` says where the ledger is (a path, a DSN without its password);
    ``placeholder`` is the parameter marker; ``byte_order`` the collation clause
    that orders text by bytes; ``no_resource`` the ``resource`` column of a row
    that keeps its resource once; ``token_order`` how tokens sort oldest first.
    """

    label: str
    attribute_equals: str
    placeholder: str
    byte_order: str
    no_resource: str | None
    token_order: str

    def table(self, name: str) -> str:
        """The ledger table ``name`` as a statement names it."""
        ...

    def has_table(self, name: str) -> bool:
        """Whether the ledger table ``name`` exists."""
        ...

    def rows(self, action: str, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Every row of one statement; ``action`` names it in an error."""
        ...

    def execute(self, action: str, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one writing statement durably; the number of rows it changed."""
        ...

    def stream(self, action: str, sql: str, params: Sequence[Any]) -> Iterator[Row]:
        """The rows of a large read, fetched in batches (constant memory)."""
        ...

    def nodes(self, keys: Sequence[tuple[int, int]]) -> list[bytes | None]:
        """The hashes of the (level, idx) tree nodes, in order (None: not stored)."""
        ...

    def head_lock(self) -> AbstractContextManager[None]:
        """One write transaction holding the log head, committed durably on leaving
        (UnstorableRecords if the database cannot hold a value of the rows written)."""
        ...

    def held(self, entries: Sequence[Entry]) -> set[bytes]:
        """Which of the entries' dedup keys the ledger holds (inside ``head_lock``)."""
        ...

    def insert(self, plan: AppendPlan) -> None:
        """Write an append's records, resources and tree nodes (inside ``head_lock``)."""
        ...

    def signer_turn(self) -> AbstractContextManager[bool]:
        """Hold the right to sign checkpoints while inside; False: another process has it."""
        ...

    def write_many(self, action: str, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run ``sql`` once per row, all in one durable transaction."""
        ...

    def remove(self, first: int, last: int) -> int:
        """Delete the records rows with ``first <= seq <= last`` in one durable transaction
        (the database refuses it outside the ranges of ``removals``); how many went."""
        ...

    def reclaim(self, max_pages: int) -> int:
        """Give up to ``max_pages`` free pages back to the file system; how many were
        (0 where the database does it itself)."""
        ...

    def migration_lock(self) -> AbstractContextManager[None]:
        """Keep other processes from migrating the ledger while inside."""
        ...

    def apply(self, migration: Migration) -> None:
        """Apply one migration and record it in ``schema_migrations`` (inside the lock)."""
        ...

    def record_values(self, row: Sequence[Any]) -> Sequence[Any]:
        """A stored ``(seq, sealed, dedup_key, *columns)`` with each column as its text."""
        ...

    def resource(self, resource_hash: bytes) -> tuple[bytes, str] | None:
        """The (body, flat text) kept once under ``resource_hash`` (None: no such row)."""
        ...

    def close(self) -> None:
        """Release the connections."""
        ...


def dedup_time(columns: Columns) -> int:
    """The time a record's dedup key is filed under (index ``records_dedup``): its own
    time, or 0 when it has none (its timestamp is its receive time, which a retry of it
    does not share). A retry carries the same content, so it is found under the same time,
    and the index grows in time order as records arrive."""
    return 0 if columns.timestamp == columns.received_at else columns.time_unix_nano


class OverDriver:
    """A part of the store written once in SQL over ``_db``; each read mixes this in."""

    _db: Driver

    @property
    def _records(self) -> str:
        return self._db.table("records")
