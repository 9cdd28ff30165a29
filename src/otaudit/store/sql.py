"""The ledger in SQL, written once for both databases.

Everything the two stores do alike lives here, over a
:class:`~otaudit.store.driver.Driver` that holds what differs: metadata,
tokens, checkpoints, the tree size, stored tree nodes and records (their
resources spliced back: :mod:`otaudit.store.resources`), the migration loop
and the sequencer's append. The reads over the stored columns are mixed in
from :mod:`otaudit.store.reports`, :mod:`otaudit.store.search` and
:mod:`otaudit.store.events`.

``append`` is one transaction inside the driver's head lock: read the tree
size and the right edge of the tree, skip the records already held, number
the rest and compute the new tree nodes (:func:`otaudit.tree.plan_append`),
write them in bulk, commit durably.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Final

from otaudit import tree
from otaudit.errors import StoreError
from otaudit.record import COLUMN_NAMES, Entry
from otaudit.store import migrations as mig
from otaudit.store.base import (
    AppendResult,
    Removal,
    StoredCheckpoint,
    StoredRecord,
    StoredToken,
)
from otaudit.store.driver import Driver
from otaudit.store.events import EventReads
from otaudit.store.migrations import Migration
from otaudit.store.reports import ReportReads
from otaudit.store.resources import ResourceCache, stored_record
from otaudit.store.search import SearchReads

#: A records row as it is read: seq, stored bytes, dedup key, the columns, and how the
#: row keeps its resource (NULL, NULL: its bytes are whole).
_RECORD_COLUMNS: Final = (
    "seq, sealed, dedup_key, "
    + ", ".join(f'"{n}"' for n in COLUMN_NAMES)
    + ", resource_hash, resource_at"
)
_CHECKPOINT_COLUMNS: Final = "tree_size, root_hash, signed_at_ns, note"
_TOKEN_COLUMNS: Final = "id, name, scopes, hash, created_at, revoked_at"


def _checkpoint(r: Sequence[Any]) -> StoredCheckpoint:
    return StoredCheckpoint(int(r[0]), bytes(r[1]), int(r[2]), str(r[3]))


class SQLStore(ReportReads, SearchReads, EventReads):
    """A ledger store over one database's driver; see :class:`otaudit.store.base.Store`."""

    migrations: Sequence[Migration]

    def __init__(self, db: Driver) -> None:
        self._db = db

    def _table(self, name: str) -> str:
        return self._db.table(name)

    def _marks(self, n: int) -> str:
        return ", ".join([self._db.placeholder] * n)

    # -- schema ----------------------------------------------------------------

    def schema_version(self) -> int:
        """The last migration applied (0: a new, empty ledger)."""
        if self._db.has_table("schema_migrations"):
            rows = self._db.rows(
                "reading the schema version",
                f"SELECT COALESCE(MAX(version), 0) FROM {self._table('schema_migrations')}",
            )
            return int(rows[0][0])
        if self._db.has_table("meta"):  # version 1 kept its version in meta
            return int(self.meta("schema_version") or 0)
        return 0

    def migrate(
        self, *, online_only: bool, progress: Callable[[int], object] | None = None
    ) -> list[Migration]:
        """Apply pending migrations under the migration lock, one transaction each;
        see ``Store.migrate``."""
        with self._db.migration_lock():
            current = self.schema_version()
            todo = mig.pending(current, self.migrations, self._db.label)
            if online_only:
                mig.check_online(todo, self._db.label, current)
            for done, m in enumerate(todo, 1):
                self._db.apply(m)
                if progress is not None:
                    progress(done)
        return todo

    # -- writing ---------------------------------------------------------------

    def append(self, entries: Sequence[Entry]) -> AppendResult:
        """Durably append the entries not already held (one transaction); see ``Store``."""
        with self._db.head_lock():
            size = self.tree_size()
            held = self._db.held(entries)
            edge = self._stored_nodes(tree.range_keys(0, size), "; run `otaudit verify`")
            plan = tree.plan_append(entries, size, held, edge, no_resource=self._db.no_resource)
            self._db.insert(plan)
        return AppendResult(plan.seqs, plan.tree_size)

    def signer_turn(self) -> AbstractContextManager[bool]:
        """Hold the right to sign checkpoints while inside (False: another process has it)."""
        return self._db.signer_turn()

    def add_checkpoint(self, cp: StoredCheckpoint) -> None:
        """Durably store a signed checkpoint."""
        self._db.execute(
            "storing a checkpoint",
            f"INSERT INTO {self._table('checkpoints')} ({_CHECKPOINT_COLUMNS})"
            f" VALUES ({self._marks(4)})",
            (cp.tree_size, cp.root_hash, cp.signed_at_ns, cp.note),
        )

    def add_token(self, token: StoredToken) -> None:
        """Store a new API token."""
        self._db.execute(
            "storing a token",
            f"INSERT INTO {self._table('tokens')} VALUES ({self._marks(6)})",
            (token.token_id, token.name, token.scopes, token.token_hash,
             token.created_at, token.revoked_at),
        )  # fmt: skip

    def revoke_token(self, token_id: str, at: str) -> bool:
        """Mark a token revoked; False if there is no such unrevoked token."""
        ph = self._db.placeholder
        changed = self._db.execute(
            "revoking a token",
            f"UPDATE {self._table('tokens')} SET revoked_at = {ph}"
            f" WHERE id = {ph} AND revoked_at IS NULL",
            (at, token_id),
        )
        return changed == 1

    def set_meta(self, key: str, value: str) -> None:
        """Set a metadata value once."""
        self._db.execute(
            f"setting {key}",
            f"INSERT INTO {self._table('meta')} (key, value) VALUES ({self._marks(2)})",
            (key, value),
        )

    # -- reading ---------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        """A metadata value, or None."""
        rows = self._db.rows(
            "reading the ledger",
            f"SELECT value FROM {self._table('meta')} WHERE key = {self._db.placeholder}",
            (key,),
        )
        return str(rows[0][0]) if rows else None

    def tokens(self) -> list[StoredToken]:
        """Every API token ever created, oldest first."""
        rows = self._db.rows(
            "reading tokens",
            f"SELECT {_TOKEN_COLUMNS} FROM {self._table('tokens')} ORDER BY {self._db.token_order}",
        )
        return [StoredToken(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]

    def tree_size(self) -> int:
        """The number of leaves committed (records whose payload was removed count too)."""
        rows = self._db.rows(
            "reading the ledger",
            f"SELECT COALESCE(MAX(idx) + 1, 0) FROM {self._table('tree_nodes')} WHERE level = 0",
        )
        return int(rows[0][0])

    # -- removed payloads (retention, erasure) -----------------------------------

    def removals(self) -> list[Removal]:
        """Every range of removed payloads, by first seq."""
        rows = self._db.rows(
            "reading removals",
            f"SELECT first_seq, last_seq, receipt_seq FROM {self._table('removals')}"
            " ORDER BY first_seq",
        )
        return [Removal(int(r[0]), int(r[1]), int(r[2])) for r in rows]

    def add_removals(self, receipt_seq: int, ranges: Sequence[tuple[int, int]]) -> None:
        """Store the ranges the receipt at ``receipt_seq`` covers, in one transaction."""
        self._db.write_many(
            "storing removals",
            f"INSERT INTO {self._table('removals')} (first_seq, last_seq, receipt_seq)"
            f" VALUES ({self._marks(3)})",
            [(first, last, receipt_seq) for first, last in ranges],
        )

    @property
    def placeholder(self) -> str:
        """The parameter marker of this store's SQL."""
        return self._db.placeholder

    def rows_where(
        self, columns: Sequence[str], condition: str, params: Sequence[Any], *, end: int
    ) -> Iterator[tuple[Any, ...]]:
        """``columns`` of the records rows with seq ``< end`` matching ``condition`` (SQL
        over the ``records`` columns, with :attr:`placeholder`), by seq, streamed."""
        names = ", ".join(f'"{c}"' for c in columns)
        sql = (
            f"SELECT {names} FROM {self._records} WHERE seq < {self._db.placeholder}"
            f" AND ({condition}) ORDER BY seq"
        )
        yield from self._db.stream("selecting records", sql, [end, *params])

    def subject_condition(self, subject: str) -> tuple[str, list[Any]]:
        """A condition over the records columns true when ``subject`` is a record's actor,
        its target or the value of one of its attributes."""
        ph = self._db.placeholder
        return (
            f"actor = {ph} OR target = {ph} OR {self._db.attribute_equals}",
            [subject, subject, subject],
        )

    def seqs_where(self, condition: str, params: Sequence[Any], *, end: int) -> Iterator[int]:
        """The seqs of :meth:`rows_where`."""
        for r in self.rows_where(("seq",), condition, params, end=end):
            yield int(r[0])

    def present_in_removals(self) -> list[int]:
        """The seqs whose rows are stored although a removal covers them (restored, or
        left by a removal that stopped halfway)."""
        rows = self._db.rows(
            "reading removals",
            f"SELECT r.seq FROM {self._table('removals')} m JOIN {self._records} r"
            " ON r.seq BETWEEN m.first_seq AND m.last_seq ORDER BY r.seq",
        )
        return [int(r[0]) for r in rows]

    def remove_payloads(self, first: int, last: int) -> int:
        """Delete the record rows of ``first..last`` (inside stored removals)."""
        return self._db.remove(first, last)

    def present_seqs(self, first: int, last: int) -> list[int]:
        """The stored seqs of ``first..last``, in order."""
        ph = self._db.placeholder
        rows = self._db.rows(
            "reading records",
            f"SELECT seq FROM {self._records} WHERE seq BETWEEN {ph} AND {ph} ORDER BY seq",
            (first, last),
        )
        return [int(r[0]) for r in rows]

    def restore(self, seq: int, entry: Entry) -> None:
        """The row of ``seq`` again, from its sealed entry (its resource kept in the row)."""
        row = (seq, entry.sealed, entry.dedup_key, *entry.columns, None, None)
        with self._db.head_lock():
            self._db.insert(tree.AppendPlan([row], [], [], [seq], self.tree_size()))

    def reclaim_space(self, max_pages: int) -> int:
        """Give free pages back to the file system (SQLite); how many were."""
        return self._db.reclaim(max_pages)

    def nodes(self, keys: Sequence[tuple[int, int]]) -> list[bytes]:
        """The stored hashes of the given (level, idx) subtrees; StoreError if one is missing."""
        return self._stored_nodes(keys, "")

    def _stored_nodes(self, keys: Sequence[tuple[int, int]], advice: str) -> list[bytes]:
        found = self._db.nodes(keys) if keys else []
        out = []
        for (level, idx), digest in zip(keys, found, strict=True):
            if digest is None:
                raise StoreError(f"tree node level {level} idx {idx} is missing{advice}")
            out.append(bytes(digest))
        return out

    def iter_records(self, begin: int = 0, end: int | None = None) -> Iterator[StoredRecord]:
        """Records with ``begin <= seq < end`` in sequence order, resources spliced back."""
        ph = self._db.placeholder
        sql = f"SELECT {_RECORD_COLUMNS} FROM {self._records} WHERE seq >= {ph}"
        params: list[int] = [begin]
        if end is not None:
            sql += f" AND seq < {ph}"
            params.append(end)
        resources = ResourceCache(self._db.resource)
        for r in self._db.stream("reading records", sql + " ORDER BY seq", params):
            values = self._db.record_values(r[:-2])
            yield stored_record(values, r[-2], r[-1], resources.get(r[-2]))

    def iter_level(self, level: int, begin: int = 0) -> Iterator[tuple[int, bytes]]:
        """The (idx, hash) rows of one tree level from ``begin``, in order."""
        ph = self._db.placeholder
        for r in self._db.stream(
            "reading tree nodes",
            f"SELECT idx, hash FROM {self._table('tree_nodes')}"
            f" WHERE level = {ph} AND idx >= {ph} ORDER BY idx",
            (level, begin),
        ):
            yield int(r[0]), bytes(r[1])

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        """The checkpoint with the largest tree size, or None."""
        rows = self._db.rows(
            "reading checkpoints",
            f"SELECT {_CHECKPOINT_COLUMNS} FROM {self._table('checkpoints')}"
            " ORDER BY tree_size DESC LIMIT 1",
        )
        return _checkpoint(rows[0]) if rows else None

    def checkpoints(self) -> list[StoredCheckpoint]:
        """Every stored checkpoint, oldest first."""
        rows = self._db.rows(
            "reading checkpoints",
            f"SELECT {_CHECKPOINT_COLUMNS} FROM {self._table('checkpoints')} ORDER BY tree_size",
        )
        return [_checkpoint(r) for r in rows]

    def close(self) -> None:
        """Release the connections."""
        self._db.close()
