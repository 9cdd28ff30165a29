"""The embedded store: one SQLite database in WAL mode.

Durability: ``synchronous=FULL``, so a commit is on disk (the WAL is fsynced)
before ``append`` returns. An append's rows are written by the compiled core
(:class:`otaudit._core.SqliteWriter`, a second connection on the same libsqlite3,
statements stepped without the GIL); everything else uses Python's ``sqlite3``.
Append-only: triggers abort any UPDATE or DELETE on the ledger tables. One
``serve`` owns a SQLite ledger, so the head lock is SQLite's own write lock
(``BEGIN IMMEDIATE``) and the signer's turn is always its own. User SQL runs
elsewhere, on connections of its own (:mod:`otaudit.store.sqlite_query`). The
statements themselves are shared with PostgreSQL (:mod:`otaudit.store.sql`).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, Final

from otaudit import _core
from otaudit.errors import ConfigError, StoreError, UnstorableRecords
from otaudit.record import COLUMN_NAMES, Entry
from otaudit.store import codec
from otaudit.store import migrations as mig
from otaudit.store.driver import Row, dedup_time
from otaudit.store.migrations import Migration
from otaudit.store.sql import SQLStore
from otaudit.store.sqlite_query import read_uri
from otaudit.store.sqlite_schema import DEDUP_TIME, MIGRATIONS
from otaudit.store.walcheckpoint import WalCheckpointer
from otaudit.tree import AppendPlan

_INSERT_RECORD: Final = (
    f"INSERT INTO records (seq, sealed, dedup_key, {', '.join(COLUMN_NAMES)},"
    f" resource_hash, resource_at) VALUES ({', '.join('?' * (5 + len(COLUMN_NAMES)))})"
)
# A held resource is not inserted again (OR IGNORE; trigger resources_once also makes any
# other insert of it a no-op, so INSERT OR REPLACE cannot swap it).
_INSERT_RESOURCE: Final = "INSERT OR IGNORE INTO resources (hash, body, flat) VALUES (?, ?, ?)"
_INSERT_NODE: Final = "INSERT INTO tree_nodes (level, idx, hash) VALUES (?, ?, ?)"
_DUP_CHUNK: Final = 400
#: While removing payloads: checkpoint the WAL every 64 MiB, and keep at most that of it.
_REMOVE_CHECKPOINT_PAGES: Final = 16384
_REMOVE_WAL_LIMIT_BYTES: Final = 64 << 20
_FETCH_BATCH: Final = 4000


def stored_bytes_reader(conn: sqlite3.Connection) -> codec.StoredBytes:
    """Decodes the ``sealed`` column of ``records`` rows read on ``conn`` by hand (a zstd
    frame is decompressed with the ledger's dictionary; other bytes are as they are)."""

    def dictionary(dictionary_id: int) -> bytes | None:
        try:
            rows = conn.execute(
                "SELECT body FROM dictionaries WHERE id = ?", (dictionary_id,)
            ).fetchall()
        except sqlite3.Error:
            return None
        return bytes(rows[0][0]) if rows else None

    return codec.StoredBytes(dictionary)


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class SQLiteDriver:
    """One connection to a SQLite ledger; see :class:`otaudit.store.driver.Driver`."""

    placeholder = "?"
    attribute_equals = "EXISTS (SELECT 1 FROM json_each(attributes) WHERE json_each.value = ?)"
    byte_order = ""
    no_resource: str | None = ""
    token_order = "rowid"

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path
        self.label = str(path)
        self._bytes = stored_bytes_reader(conn)
        self._encoder_loaded = False
        self.wal: WalCheckpointer | None = None
        self._writer: _core.SqliteWriter | None = None
        self._autocheckpoint = ""
        self._removing = False
        #: Taken around each write transaction of this driver's appends and removals, so
        #: that one waits for the other on a lock that wakes it at once, not on SQLite's
        #: busy handler, which sleeps in steps of up to 100 ms.
        self.turn: threading.Lock = threading.Lock()

    def _error(self, action: str, exc: Exception) -> StoreError:
        return StoreError(f"{action} failed on {self.path}: {exc}")

    def table(self, name: str) -> str:
        """The table's own name (one database, one schema)."""
        return name

    def has_table(self, name: str) -> bool:
        """Whether ``sqlite_master`` lists the table."""
        return bool(
            self.rows(
                "reading the schema version",
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                (name,),
            )
        )

    def rows(self, action: str, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Every row of one statement."""
        try:
            return self.conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self._error(action, exc) from exc

    def execute(self, action: str, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one writing statement (autocommit: durable on return); rows changed."""
        try:
            return self.conn.execute(sql, params).rowcount
        except sqlite3.Error as exc:
            raise self._error(action, exc) from exc

    def stream(self, action: str, sql: str, params: Sequence[Any]) -> Iterator[Row]:
        """The rows of a large read, in batches."""
        try:
            cur = self.conn.execute(sql, params)
            while rows := cur.fetchmany(_FETCH_BATCH):
                yield from rows
        except sqlite3.Error as exc:
            raise self._error(action, exc) from exc

    def nodes(self, keys: Sequence[tuple[int, int]]) -> list[bytes | None]:
        """The node hashes, one indexed lookup each (cheap in process)."""
        out: list[bytes | None] = []
        for level, idx in keys:
            rows = self.rows(
                "reading tree nodes",
                "SELECT hash FROM tree_nodes WHERE level = ? AND idx = ?",
                (level, idx),
            )
            out.append(bytes(rows[0][0]) if rows else None)
        return out

    def _writing(self) -> _core.SqliteWriter:
        """The appends' connection, opened on first use."""
        if self._writer is None:
            self._writer = _core.SqliteWriter(str(self.path))
            if self._autocheckpoint:
                self._writer.execute(self._autocheckpoint)
        return self._writer

    def set_checkpoints(self, pragmas: str) -> None:
        """Run the WAL checkpoint pragmas on both connections (each commits)."""
        self._autocheckpoint = pragmas
        self.conn.executescript(pragmas)
        if self._writer is not None:
            self._writer.execute(pragmas)

    @contextmanager
    def head_lock(self) -> Iterator[None]:
        """``BEGIN IMMEDIATE`` (SQLite's write lock) ... ``COMMIT`` on the appends'
        connection; rolled back on error. Reads inside it on ``conn`` see the last commit,
        which nothing else can change while the lock is held. Taken under :attr:`turn`."""
        with self.turn:
            yield from self._head_lock()

    def _head_lock(self) -> Iterator[None]:
        try:
            writer = self._writing()
            writer.execute("BEGIN IMMEDIATE")
            try:
                yield
                writer.execute("COMMIT")
            except BaseException:
                writer.rollback()
                raise
        except (OverflowError, sqlite3.DataError) as exc:  # a value SQLite cannot hold
            raise UnstorableRecords(f"SQLite cannot store a value of these records: {exc}") from exc
        except sqlite3.Error as exc:
            raise self._error("appending to the ledger", exc) from exc

    def held(self, entries: Sequence[Entry]) -> set[bytes]:
        """The held dedup keys, looked up by (dedup time, key) ``_DUP_CHUNK`` at a time
        through ``records_dedup`` (an index that grows in time order)."""
        pairs = [(dedup_time(e.columns), e.dedup_key) for e in entries]
        held: set[bytes] = set()
        for i in range(0, len(pairs), _DUP_CHUNK):
            chunk = pairs[i : i + _DUP_CHUNK]
            values = ",".join(["(?, ?)"] * len(chunk))
            sql = (  # a join, so that SQLite seeks the index once per pair
                f"SELECT dedup_key FROM (VALUES {values}) AS v CROSS JOIN records"
                f" WHERE {DEDUP_TIME} = v.column1 AND dedup_key = v.column2"
            )
            params = [v for pair in chunk for v in pair]
            held.update(bytes(r[0]) for r in self.conn.execute(sql, params))
        return held

    def insert(self, plan: AppendPlan) -> None:
        """The records (their bytes compressed as they are bound), resources and tree nodes,
        written by the core's writer; trains the ledger's dictionary first when it is time
        (``store.codec``)."""
        records = plan.records
        if records:
            if not self._encoder_loaded:
                self._load_encoder()
            if self._bytes.wants_dictionary(records[0][0]):
                self._train(records)
        writer = self._writing()
        writer.insert(_INSERT_RECORD, records, (1, self._bytes.encoder))
        writer.insert(_INSERT_RESOURCE, plan.resources)
        writer.insert(_INSERT_NODE, plan.nodes)

    def _load_encoder(self) -> None:
        """Compress with the ledger's latest dictionary, if it has one."""
        rows = self.conn.execute(
            "SELECT id, body FROM dictionaries ORDER BY created_at DESC, rowid DESC LIMIT 1"
        ).fetchall()
        if rows:
            self._bytes.use(int(rows[0][0]), bytes(rows[0][1]))
        self._encoder_loaded = True

    def _train(self, records: Sequence[tuple[Any, ...]]) -> None:
        """Train a dictionary on the latest stored records and these, and keep it."""
        latest = self.conn.execute(
            "SELECT sealed FROM records ORDER BY seq DESC LIMIT ?", (codec.TRAIN_SAMPLES,)
        ).fetchall()
        samples = [self._bytes.decode(bytes(r[0])) for r in latest]
        samples += [bytes(r[1]) for r in records[: codec.TRAIN_SAMPLES]]
        trained = self._bytes.train(samples, int(records[0][0]))
        if trained is not None:
            self._writing().insert(
                "INSERT INTO dictionaries (id, body, created_at) VALUES (?, ?, ?)",
                [(trained[0], trained[1], codec.created_at())],
            )

    @contextmanager
    def _transaction(self, action: str) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` on ``conn`` (rolled back on error)."""
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise self._error(action, exc) from exc

    def write_many(self, action: str, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """One write transaction on ``conn``."""
        with self._transaction(action) as conn:
            conn.executemany(sql, rows)

    def remove(self, first: int, last: int) -> int:
        """One write transaction on ``conn`` (waits for an append in progress), committed
        without an fsync of its own (``synchronous = NORMAL``): a delete lost to a power
        cut leaves rows that a receipt, committed durably before, already names, and the
        next prune deletes them again. Its WAL is checkpointed every 64 MiB rather than
        every 4 MiB (each deleted row dirties a page of the table and of each index)."""
        conn = self.conn
        try:
            if not self._removing:
                conn.execute(f"PRAGMA wal_autocheckpoint = {_REMOVE_CHECKPOINT_PAGES}")
                conn.execute(f"PRAGMA journal_size_limit = {_REMOVE_WAL_LIMIT_BYTES}")
                self._removing = True
            conn.execute("PRAGMA synchronous = NORMAL")
            with self.turn, self._transaction("removing record payloads"):
                cur = conn.execute("DELETE FROM records WHERE seq BETWEEN ? AND ?", (first, last))
            return cur.rowcount
        except sqlite3.Error as exc:
            raise self._error("removing record payloads", exc) from exc
        finally:
            conn.execute("PRAGMA synchronous = FULL")

    def reclaim(self, max_pages: int) -> int:
        """``PRAGMA incremental_vacuum`` on a ledger created with ``auto_vacuum =
        INCREMENTAL`` (0 on one created before: its free pages are reused, not returned);
        once no free page is left, a ``TRUNCATE`` checkpoint moves the last of them into the
        file, shortens it and empties the WAL."""
        try:
            if self.conn.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
                return 0
            before = int(self.conn.execute("PRAGMA freelist_count").fetchone()[0])
            # sqlite3_exec runs the pragma to the end (each step of it frees one page)
            self.conn.executescript(f"PRAGMA incremental_vacuum({int(max_pages)});")
            freed = before - int(self.conn.execute("PRAGMA freelist_count").fetchone()[0])
            if freed < max_pages:
                self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            return freed
        except sqlite3.Error as exc:
            raise self._error("returning free pages", exc) from exc

    def signer_turn(self) -> AbstractContextManager[bool]:
        """Always this process's turn: one ``serve`` owns a SQLite ledger."""
        return nullcontext(True)

    def migration_lock(self) -> AbstractContextManager[None]:
        """Nothing to take: each migration's ``BEGIN IMMEDIATE`` is the lock."""
        return nullcontext()

    def apply(self, migration: Migration) -> None:
        """The script and its history row in one write transaction."""
        conn = self.conn
        try:
            conn.executescript("BEGIN IMMEDIATE;" + migration.script)
            if migration.version >= 2:  # the history table exists from version 2 on
                conn.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                    (migration.version, migration.description, _utc_now()),
                )
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise self._error(f"migration {migration.version}", exc) from exc

    def record_values(self, row: Sequence[Any]) -> Sequence[Any]:
        """The stored bytes decompressed (``store.codec``); the flattened attributes are
        kept as their JSON text."""
        return (row[0], self._bytes.decode(bytes(row[1])), *row[2:])

    def unreadable(self, stored: bytes) -> str | None:
        """Why stored bytes read back from a row cannot be decompressed (None: they can)."""
        return self._bytes.why_unreadable(stored)

    def resource(self, resource_hash: bytes) -> tuple[bytes, str] | None:
        """The kept resource's body and flattened attributes."""
        rows = self.rows(
            "reading a resource",
            "SELECT body, flat FROM resources WHERE hash = ?",
            (resource_hash,),
        )
        return (bytes(rows[0][0]), str(rows[0][1])) if rows else None

    def close(self) -> None:
        """Stop the WAL checkpoints, if they run in a thread; close the connection."""
        if self.wal is not None:
            self.wal.stop()
            self.wal = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self.conn.close()


class SQLiteStore(SQLStore):
    """The SQLite ledger inside a data directory (``<data>/ledger.db``).

    Opened writable, it applies pending migrations unless ``migrate`` is False.
    """

    migrations = MIGRATIONS

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
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            self._sqlite = SQLiteDriver(conn, path)
            super().__init__(self._sqlite)
            conn.execute("PRAGMA busy_timeout = 10000")
            if readonly:
                conn.execute("PRAGMA query_only = ON")
            else:
                # A new ledger gives the pages of removed records back to the file system
                # (PRAGMA incremental_vacuum); the mode can only be chosen before any table.
                if not conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall():
                    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = FULL")
                conn.execute("PRAGMA cache_size = -65536")
                if migrate:
                    self.migrate(online_only=False)
            if readonly:
                mig.require_current(self.schema_version(), MIGRATIONS, str(path))
        except sqlite3.Error as exc:
            raise StoreError(f"opening the ledger failed on {path}: {exc}") from exc

    def rewrite_reclaiming(self) -> tuple[int, int]:
        """Make a ledger created before ``auto_vacuum = INCREMENTAL`` give freed pages back
        from now on: set it and rewrite the file (``VACUUM``: every otaudit process on it
        stopped, as much free space again). The file's size before and after, in bytes."""
        before = self.path.stat().st_size
        conn = self._sqlite.conn
        try:
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            raise StoreError(
                f"rewriting {self.path} failed: {exc} (stop every otaudit process on it first)"
            ) from exc
        return before, self.path.stat().st_size

    def checkpoint_in_background(self) -> WalCheckpointer:
        """Run the WAL's checkpoints in a thread of their own from now until :meth:`close`
        (``serve``: :mod:`otaudit.store.walcheckpoint`); wake it after each commit."""
        driver = self._sqlite
        if driver.wal is None:
            driver.wal = WalCheckpointer(self.path, driver.set_checkpoints)
            driver.wal.start()
        return driver.wal
