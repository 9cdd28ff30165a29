"""The shared store: one PostgreSQL database, any number of ``otaudit serve`` nodes.

Sequencing across nodes is one short transaction per batch that takes a
transaction-level advisory lock (the log head lock), reads the tree size and
the right edge of the tree, skips records already held, and writes the new
records and tree nodes with binary COPY. ``synchronous_commit`` is forced on,
so a commit is durable on the server before ``append`` returns. Signing
takes a second advisory lock without waiting (``signer_turn``): one node
signs at a time, the others skip that round.

The connection is reopened after a failure, so a PostgreSQL restart costs
the exports that arrive while it is away (answered 503 / UNAVAILABLE), not
the process. User SQL never runs on these connections: it runs as a
login of its own (:mod:`otaudit.store.postgres_query`). The statements
themselves are shared with SQLite (:mod:`otaudit.store.sql`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Final

import orjson
import psycopg
from psycopg.types import TypeInfo
from psycopg.types.hstore import register_hstore

from otaudit._core import pg_copy_binary
from otaudit.errors import StoreError, UnstorableRecords
from otaudit.record import Entry
from otaudit.store import migrations as mig
from otaudit.store.driver import Row, dedup_time
from otaudit.store.migrations import Migration
from otaudit.store.postgres_connect import check_dsn, connect, message, redact_dsn
from otaudit.store.postgres_schema import (
    COPY_RECORDS,
    COPY_TYPES,
    DEDUP_TIME,
    HSTORE_AT,
    INSERT_RESOURCE,
    MIGRATIONS,
)
from otaudit.store.sql import SQLStore
from otaudit.tree import AppendPlan

# Advisory lock keys (per database): the log head, the signer, migrations.
_HEAD_LOCK: Final = 0x6F7461756469_01
_SIGNER_LOCK: Final = 0x6F7461756469_02
_MIGRATE_LOCK: Final = 0x6F7461756469_03
_COPY_NODES: Final = "COPY otaudit.tree_nodes (level, idx, hash) FROM STDIN (FORMAT BINARY)"
#: The records row's COPY types as the core's field kinds (``_core.pg_copy_binary``).
_RECORD_KINDS: Final = "".join(
    {"bigint": "q", "integer": "i", "bytea": "b", "text": "t", "hstore": "h"}[t] for t in COPY_TYPES
)
_FETCH_BATCH: Final = 4000


class PostgresDriver:
    """The shared connection to a PostgreSQL ledger (schema ``otaudit``), reopened after a
    failure; see :class:`otaudit.store.driver.Driver`."""

    attribute_equals = "%s = ANY(otaudit.avals(attributes))"
    placeholder = "%s"
    byte_order = 'COLLATE "C"'
    no_resource: str | None = None
    token_order = "created_at, id"

    def __init__(self, dsn: str, *, readonly: bool, connect_timeout_s: int) -> None:
        self.dsn = dsn
        self.label = redact_dsn(dsn)
        self.readonly = readonly
        self._connect_timeout_s = connect_timeout_s
        self._lock = threading.RLock()
        self._conn: psycopg.Connection[Any] | None = None
        self._hstore_info: TypeInfo | None = None
        with self._lock:
            self._connection()

    # -- connections -----------------------------------------------------------

    def _connect(self, *, readonly: bool) -> psycopg.Connection[Any]:
        return connect(self.dsn, readonly=readonly, timeout_s=self._connect_timeout_s)

    def _connection(self) -> psycopg.Connection[Any]:
        """The shared connection (call with ``_lock`` held), reopened if it broke."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            if self._conn is not None:
                self._conn.close()
            self._conn = self._connect(readonly=self.readonly)
        return self._conn

    def _hstore(self, conn: psycopg.Connection[Any]) -> None:
        """Let ``conn`` send and receive ``hstore`` as dicts (the schema must exist)."""
        if self._hstore_info is None:
            self._hstore_info = TypeInfo.fetch(conn, "otaudit.hstore")
            if self._hstore_info is None:
                raise StoreError(f"{self.label} has no otaudit schema: run `otaudit migrate`")
        register_hstore(self._hstore_info, conn)

    @contextmanager
    def using(self, action: str) -> Iterator[psycopg.Connection[Any]]:
        """The shared connection under the lock; psycopg errors become StoreError."""
        with self._lock:
            conn = self._connection()
            try:
                yield conn
            except psycopg.Error as exc:
                if conn.broken or isinstance(exc, psycopg.OperationalError):
                    conn.close()
                raise StoreError(f"{action} failed on {self.label}: {message(exc)}") from exc

    # -- statements ------------------------------------------------------------

    def table(self, name: str) -> str:
        """The table in schema ``otaudit``."""
        return f"otaudit.{name}"

    def has_table(self, name: str) -> bool:
        """Whether the table exists in schema ``otaudit``."""
        found = self.rows(
            "reading the schema version", "SELECT to_regclass(%s)", (f"otaudit.{name}",)
        )
        return found[0][0] is not None

    def rows(self, action: str, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Every row of one statement, on the shared connection."""
        with self.using(action) as conn:
            return conn.execute(sql, params).fetchall()

    def execute(self, action: str, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one writing statement (autocommit, ``synchronous_commit``); rows changed."""
        with self.using(action) as conn:
            return conn.execute(sql, params).rowcount

    def stream(self, action: str, sql: str, params: Sequence[Any]) -> Iterator[Row]:
        """Rows of a large read through a server-side cursor on a connection of its own,
        in one REPEATABLE READ snapshot (appends by other nodes do not show up midway)."""
        conn = self._connect(readonly=True)
        try:
            self._hstore(conn)
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                with conn.cursor(name="otaudit_stream") as cur:
                    cur.itersize = _FETCH_BATCH
                    cur.execute(sql, params)
                    yield from cur
        except psycopg.Error as exc:
            raise StoreError(f"{action} failed on {self.label}: {message(exc)}") from exc
        finally:
            conn.close()

    def nodes(self, keys: Sequence[tuple[int, int]]) -> list[bytes | None]:
        """The node hashes, all in one round trip."""
        rows = self.rows(
            "reading tree nodes",
            "SELECT k.ord, n.hash FROM unnest(%s::int[], %s::bigint[]) WITH ORDINALITY"
            " AS k(level, idx, ord) LEFT JOIN otaudit.tree_nodes n USING (level, idx)"
            " ORDER BY k.ord",
            ([k[0] for k in keys], [k[1] for k in keys]),
        )
        return [None if r[1] is None else bytes(r[1]) for r in rows]

    # -- writing ---------------------------------------------------------------

    @contextmanager
    def head_lock(self) -> Iterator[None]:
        """A transaction holding the head advisory lock (other nodes wait for it)."""
        try:
            with self.using("appending to the ledger") as conn, conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_HEAD_LOCK,))
                yield
        except StoreError as exc:
            if isinstance(exc.__cause__, psycopg.DataError):  # a value it cannot hold
                raise UnstorableRecords(
                    f"PostgreSQL cannot store a value of these records: {message(exc.__cause__)}"
                ) from exc.__cause__
            raise

    def held(self, entries: Sequence[Entry]) -> set[bytes]:
        """The held dedup keys, looked up by (dedup time, key) in one statement through
        ``records_dedup`` (an index that grows in time order)."""
        rows = self.rows(
            "appending to the ledger",
            "SELECT r.dedup_key FROM unnest(%s::bigint[], %s::bytea[]) AS v (t, k)"
            f" JOIN otaudit.records r ON ({DEDUP_TIME}) = v.t AND r.dedup_key = v.k",
            ([dedup_time(e.columns) for e in entries], [e.dedup_key for e in entries]),
        )
        return {bytes(r[0]) for r in rows}

    def insert(self, plan: AppendPlan) -> None:
        """Binary COPY of the records and tree nodes; the resources kept once."""
        with self.using("appending to the ledger") as conn:
            self._hstore(conn)
            with conn.cursor() as cur:
                # The COPY streams are built whole by the compiled core (one buffer each).
                with cur.copy(COPY_RECORDS) as copy:
                    copy.write(pg_copy_binary(plan.records, _RECORD_KINDS))
                cur.executemany(
                    INSERT_RESOURCE,
                    [(h, body, orjson.loads(flat)) for h, body, flat in plan.resources],
                )
                with cur.copy(_COPY_NODES) as copy:
                    copy.write(pg_copy_binary(plan.nodes, "iqb"))

    def write_many(self, action: str, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """One transaction on the shared connection."""
        with self.using(action) as conn, conn.transaction(), conn.cursor() as cur:
            cur.executemany(sql, rows)

    def remove(self, first: int, last: int) -> int:
        """One transaction on the shared connection."""
        with self.using("removing record payloads") as conn, conn.transaction():
            cur = conn.execute(
                "DELETE FROM otaudit.records WHERE seq BETWEEN %s AND %s", (first, last)
            )
            return cur.rowcount

    def reclaim(self, max_pages: int) -> int:
        """Nothing: autovacuum makes the space of deleted rows reusable (the files keep
        their size; ``docs/retention.md``)."""
        return 0

    @contextmanager
    def _signer(self) -> Iterator[bool]:
        with self.using("taking the signer lock") as conn:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (_SIGNER_LOCK,)).fetchone()
            got = bool(row and row[0])
            try:
                yield got
            finally:
                if got and not conn.closed:
                    conn.execute("SELECT pg_advisory_unlock(%s)", (_SIGNER_LOCK,))

    def signer_turn(self) -> AbstractContextManager[bool]:
        """Hold the signer lock while inside (False: another node holds it now)."""
        return self._signer()

    @contextmanager
    def migration_lock(self) -> Iterator[None]:
        """One transaction for every pending migration, under the migration lock."""
        with self.using("migrating the ledger schema") as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_LOCK,))
            yield

    def apply(self, migration: Migration) -> None:
        """The script and its history row (inside the migration lock's transaction)."""
        with self.using("migrating the ledger schema") as conn:
            conn.execute(migration.script)
            conn.execute(
                "INSERT INTO otaudit.schema_migrations VALUES (%s, %s, now())",
                (migration.version, migration.description),
            )

    # -- reading values back -----------------------------------------------------

    def record_values(self, row: Sequence[Any]) -> Sequence[Any]:
        """The ``hstore`` columns (read as dicts) as the JSON text the columns hold."""
        values = list(row)
        for at in HSTORE_AT:
            if values[at] is not None:
                values[at] = _flat_text(values[at])
        return values

    def resource(self, resource_hash: bytes) -> tuple[bytes, str] | None:
        """The kept resource's body and flattened attributes."""
        with self.using("reading a resource") as conn:
            self._hstore(conn)
            row = conn.execute(
                "SELECT body, flat FROM otaudit.resources WHERE hash = %s", (resource_hash,)
            ).fetchone()
        return None if row is None else (bytes(row[0]), _flat_text(row[1]))

    def close(self) -> None:
        """Close the shared connection."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _flat_text(value: dict[str, str]) -> str:
    """An ``hstore`` read as a dict, as the JSON text the columns hold."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


class PostgresStore(SQLStore):
    """The PostgreSQL ledger in schema ``otaudit`` of the database named by ``dsn``."""

    migrations: Sequence[Migration] = MIGRATIONS

    def __init__(self, dsn: str, *, readonly: bool = False, connect_timeout_s: int = 5) -> None:
        self.dsn = dsn
        self.label = redact_dsn(dsn)
        self.readonly = readonly
        super().__init__(
            PostgresDriver(dsn, readonly=readonly, connect_timeout_s=connect_timeout_s)
        )
        if readonly:
            try:
                mig.require_current(self.schema_version(), MIGRATIONS, self.label)
            except BaseException:
                self.close()
                raise


def open_postgres(dsn: str, *, readonly: bool) -> PostgresStore:
    """Open a PostgreSQL ledger, refusing a DSN psycopg cannot parse with a clear message."""
    check_dsn(dsn)
    return PostgresStore(dsn, readonly=readonly)
