"""The embedded store: one SQLite database in WAL mode.

Durability: ``synchronous=FULL``, so a commit is on disk (the WAL is fsynced)
before ``append`` returns. Append-only: triggers abort any UPDATE or DELETE
on the ledger tables. User SQL runs elsewhere, on
connections of its own (:mod:`otaudit.store.sqlite_query`).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Final

from otaudit.errors import ConfigError, StoreError, UnstorableRecords
from otaudit.record import COLUMN_NAMES, Entry
from otaudit.store import migrations as mig
from otaudit.store.base import (
    AppendResult,
    StoredCheckpoint,
    StoredRecord,
    StoredToken,
    edge_keys,
    plan_append,
)
from otaudit.store.events import EventReads
from otaudit.store.migrations import Migration
from otaudit.store.reports import ReportReads
from otaudit.store.resources import ResourceCache, stored_record
from otaudit.store.search import SearchReads
from otaudit.store.sqlite_query import read_uri
from otaudit.store.sqlite_schema import MIGRATIONS

_INSERT_RECORD: Final = (
    f"INSERT INTO records (seq, sealed, dedup_key, {', '.join(COLUMN_NAMES)},"
    f" resource_hash, resource_at) VALUES ({', '.join('?' * (5 + len(COLUMN_NAMES)))})"
)
# A held resource is not inserted again (OR IGNORE; trigger resources_once also makes any
# other insert of it a no-op, so INSERT OR REPLACE cannot swap it).
_INSERT_RESOURCE: Final = "INSERT OR IGNORE INTO resources (hash, body, flat) VALUES (?, ?, ?)"
_SELECT_RECORDS: Final = (
    f"SELECT seq, sealed, dedup_key, {', '.join(COLUMN_NAMES)}, resource_hash, resource_at"
    " FROM records WHERE seq >= ?"
)
_DUP_CHUNK: Final = 500


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _store_error(action: str, path: Path, exc: sqlite3.Error) -> StoreError:
    return StoreError(f"{action} failed on {path}: {exc}")


class SQLiteStore(ReportReads, SearchReads, EventReads):
    """The SQLite ledger inside a data directory (``<data>/ledger.db``).

    Opened writable, it applies pending migrations unless ``migrate`` is False.
    """

    def __init__(self, path: Path, *, readonly: bool = False, migrate: bool = True) -> None:
        self.path = path
        self.readonly = readonly
        if readonly:
            if not path.exists():
                raise ConfigError(
                    f"no ledger at {path}: start `otaudit serve` with this data directory first"
                )
            uri = read_uri(path)
        else:
            uri = f"file:{path}?mode=rwc"
        try:
            self._conn = sqlite3.connect(
                uri, uri=True, isolation_level=None, check_same_thread=False
            )
            self._conn.execute("PRAGMA busy_timeout = 10000")
            if readonly:
                self._conn.execute("PRAGMA query_only = ON")
            else:
                self._conn.execute("PRAGMA journal_mode = WAL")
                self._conn.execute("PRAGMA synchronous = FULL")
                self._conn.execute("PRAGMA cache_size = -65536")
                if migrate:
                    self.migrate(online_only=False)
            if readonly:
                mig.require_current(self.schema_version(), MIGRATIONS, str(path))
        except sqlite3.Error as exc:
            raise _store_error("opening the ledger", path, exc) from exc

    migrations = MIGRATIONS
    _records_table = "records"
    _placeholder = "?"
    _byte_order = ""

    def _has_table(self, name: str) -> bool:
        return bool(
            self._conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
            ).fetchone()
        )

    def schema_version(self) -> int:
        """The last migration applied (0 for a new, empty file)."""
        try:
            if self._has_table("schema_migrations"):
                return int(
                    self._conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0]
                )
            if self._has_table("meta"):
                return int(self.meta("schema_version") or 0)
        except sqlite3.Error as exc:
            raise _store_error("reading the schema version", self.path, exc) from exc
        return 0

    def migrate(self, *, online_only: bool) -> list[Migration]:
        """Apply pending migrations, each in one write transaction; see ``Store.migrate``."""
        current = self.schema_version()
        todo = mig.pending(current, MIGRATIONS, str(self.path))
        if online_only:
            mig.check_online(todo, str(self.path), current)
        for m in todo:
            try:
                self._conn.executescript("BEGIN IMMEDIATE;" + m.script)
                if m.version >= 2:  # the history table exists from version 2 on
                    self._conn.execute(
                        "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                        (m.version, m.description, _utc_now()),
                    )
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise _store_error(f"migration {m.version}", self.path, exc) from exc
        return todo

    # -- writing ---------------------------------------------------------------

    def append(self, entries: Sequence[Entry]) -> AppendResult:
        """Durably append the entries not already held (one transaction); see ``Store``."""
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = self._append_locked(conn, entries)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except (OverflowError, sqlite3.DataError) as exc:  # a value SQLite cannot hold
            raise UnstorableRecords(f"SQLite cannot store a value of these records: {exc}") from exc
        except sqlite3.Error as exc:
            raise _store_error("appending to the ledger", self.path, exc) from exc
        return result

    def _append_locked(self, conn: sqlite3.Connection, entries: Sequence[Entry]) -> AppendResult:
        size: int = conn.execute("SELECT COALESCE(MAX(seq) + 1, 0) FROM records").fetchone()[0]
        held: set[bytes] = set()
        keys = [e.dedup_key for e in entries]
        for i in range(0, len(keys), _DUP_CHUNK):
            chunk = keys[i : i + _DUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            held.update(
                r[0]
                for r in conn.execute(
                    f"SELECT dedup_key FROM records WHERE dedup_key IN ({marks})", chunk
                )
            )
        plan = plan_append(entries, size, held, self._edge_locked(conn, size), no_resource="")
        conn.executemany(_INSERT_RECORD, plan.records)
        conn.executemany(_INSERT_RESOURCE, plan.resources)
        conn.executemany("INSERT INTO tree_nodes (level, idx, hash) VALUES (?, ?, ?)", plan.nodes)
        return plan.result

    @staticmethod
    def _edge_locked(conn: sqlite3.Connection, size: int) -> list[bytes]:
        edge: list[bytes] = []
        for level, idx in edge_keys(size):
            row = conn.execute(
                "SELECT hash FROM tree_nodes WHERE level = ? AND idx = ?", (level, idx)
            ).fetchone()
            if row is None:
                raise StoreError(
                    f"tree node level {level} idx {idx} is missing; run `otaudit verify`"
                )
            edge.append(row[0])
        return edge

    def signer_turn(self) -> AbstractContextManager[bool]:
        """Always this process's turn: one ``serve`` owns a SQLite ledger."""
        return nullcontext(True)

    def add_checkpoint(self, cp: StoredCheckpoint) -> None:
        """Durably store a signed checkpoint."""
        try:
            self._conn.execute(
                "INSERT INTO checkpoints (tree_size, root_hash, signed_at_ns, note)"
                " VALUES (?, ?, ?, ?)",
                (cp.tree_size, cp.root_hash, cp.signed_at_ns, cp.note),
            )
        except sqlite3.Error as exc:
            raise _store_error("storing a checkpoint", self.path, exc) from exc

    def tokens(self) -> list[StoredToken]:
        """Every API token ever created, oldest first."""
        rows = self._read(
            "SELECT id, name, scopes, hash, created_at, revoked_at FROM tokens ORDER BY rowid"
        )
        return [StoredToken(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]

    def add_token(self, token: StoredToken) -> None:
        """Store a new API token."""
        try:
            self._conn.execute(
                "INSERT INTO tokens VALUES (?, ?, ?, ?, ?, ?)",
                (token.token_id, token.name, token.scopes, token.token_hash,
                 token.created_at, token.revoked_at),
            )  # fmt: skip
        except sqlite3.Error as exc:
            raise _store_error("storing a token", self.path, exc) from exc

    def revoke_token(self, token_id: str, at: str) -> bool:
        """Mark a token revoked; False if there is no such unrevoked token."""
        try:
            cur = self._conn.execute(
                "UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (at, token_id),
            )
        except sqlite3.Error as exc:
            raise _store_error("revoking a token", self.path, exc) from exc
        return cur.rowcount == 1

    def set_meta(self, key: str, value: str) -> None:
        """Set a metadata value once."""
        try:
            self._conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (key, value))
        except sqlite3.Error as exc:
            raise _store_error(f"setting {key}", self.path, exc) from exc

    # -- reading ---------------------------------------------------------------

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise _store_error("reading the ledger", self.path, exc) from exc

    def meta(self, key: str) -> str | None:
        """A metadata value, or None."""
        rows = self._read("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    def tree_size(self) -> int:
        """The number of records committed."""
        return int(self._read("SELECT COALESCE(MAX(seq) + 1, 0) FROM records")[0][0])

    def nodes(self, keys: Sequence[tuple[int, int]]) -> list[bytes]:
        """The stored hashes of the given (level, idx) subtrees; StoreError if one is missing."""
        out = []
        for level, idx in keys:
            rows = self._read(
                "SELECT hash FROM tree_nodes WHERE level = ? AND idx = ?", (level, idx)
            )
            if not rows:
                raise StoreError(f"tree node level {level} idx {idx} is missing")
            out.append(bytes(rows[0][0]))
        return out

    def iter_records(self, begin: int = 0, end: int | None = None) -> Iterator[StoredRecord]:
        """Records with ``begin <= seq < end`` in sequence order, resources spliced back."""
        sql = _SELECT_RECORDS
        params: list[int] = [begin]
        if end is not None:
            sql += " AND seq < ?"
            params.append(end)
        resources = ResourceCache(self._resource)
        try:
            cur = self._conn.execute(sql + " ORDER BY seq", params)
            while rows := cur.fetchmany(2000):
                for r in rows:
                    yield stored_record(r[:-2], r[-2], r[-1], resources.get(r[-2]))
        except sqlite3.Error as exc:
            raise _store_error("reading records", self.path, exc) from exc

    def _resource(self, resource_hash: bytes) -> tuple[bytes, str] | None:
        row = self._conn.execute(
            "SELECT body, flat FROM resources WHERE hash = ?", (resource_hash,)
        ).fetchone()
        return None if row is None else (bytes(row[0]), str(row[1]))

    def iter_level(self, level: int, begin: int = 0) -> Iterator[tuple[int, bytes]]:
        """The (idx, hash) rows of one tree level from ``begin``, in order."""
        try:
            cur = self._conn.execute(
                "SELECT idx, hash FROM tree_nodes WHERE level = ? AND idx >= ? ORDER BY idx",
                (level, begin),
            )
            while rows := cur.fetchmany(4000):
                yield from rows
        except sqlite3.Error as exc:
            raise _store_error("reading tree nodes", self.path, exc) from exc

    def _stream(self, action: str, sql: str, params: Sequence[Any]) -> Iterator[tuple[Any, ...]]:
        try:
            cur = self._conn.execute(sql, params)
            while rows := cur.fetchmany(4000):
                yield from rows
        except sqlite3.Error as exc:
            raise _store_error(action, self.path, exc) from exc

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        """The checkpoint with the largest tree size, or None."""
        rows = self._read(
            "SELECT tree_size, root_hash, signed_at_ns, note FROM checkpoints"
            " ORDER BY tree_size DESC LIMIT 1"
        )
        return (
            StoredCheckpoint(int(rows[0][0]), bytes(rows[0][1]), int(rows[0][2]), str(rows[0][3]))
            if rows
            else None
        )

    def checkpoints(self) -> list[StoredCheckpoint]:
        """Every stored checkpoint, oldest first."""
        rows = self._read(
            "SELECT tree_size, root_hash, signed_at_ns, note FROM checkpoints ORDER BY tree_size"
        )
        return [StoredCheckpoint(int(r[0]), bytes(r[1]), int(r[2]), str(r[3])) for r in rows]

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()
