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
login of its own (:mod:`otaudit.store.postgres_query`).
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

from otaudit.errors import StoreError, UnstorableRecords
from otaudit.record import Entry
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
from otaudit.store.postgres_connect import check_dsn, connect, message, redact_dsn
from otaudit.store.postgres_schema import (
    COPY_RECORDS,
    COPY_TYPES,
    HSTORE_AT,
    INSERT_RESOURCE,
    MIGRATIONS,
    RECORD_COLUMNS,
)
from otaudit.store.reports import ReportReads
from otaudit.store.resources import ResourceCache, stored_record
from otaudit.store.search import SearchReads

# Advisory lock keys (per database): the log head, the signer, migrations.
_HEAD_LOCK: Final = 0x6F7461756469_01
_SIGNER_LOCK: Final = 0x6F7461756469_02
_MIGRATE_LOCK: Final = 0x6F7461756469_03
_CHECKPOINT_COLUMNS: Final = "tree_size, root_hash, signed_at_ns, note"


class PostgresStore(ReportReads, SearchReads, EventReads):
    """The PostgreSQL ledger in schema ``otaudit`` of the database named by ``dsn``."""

    migrations: Sequence[Migration] = MIGRATIONS
    _records_table = "otaudit.records"
    _placeholder = "%s"
    _byte_order = 'COLLATE "C"'

    def __init__(self, dsn: str, *, readonly: bool = False, connect_timeout_s: int = 5) -> None:
        self.dsn = dsn
        self.label = redact_dsn(dsn)
        self.readonly = readonly
        self._connect_timeout_s = connect_timeout_s
        self._lock = threading.RLock()
        self._conn: psycopg.Connection[Any] | None = None
        self._hstore_info: TypeInfo | None = None
        with self._lock:
            self._connection()
        if readonly:
            try:
                mig.require_current(self.schema_version(), MIGRATIONS, self.label)
            except BaseException:
                self.close()
                raise

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
    def _using(self, action: str) -> Iterator[psycopg.Connection[Any]]:
        """The shared connection under the lock; psycopg errors become StoreError."""
        with self._lock:
            conn = self._connection()
            try:
                yield conn
            except psycopg.Error as exc:
                if conn.broken or isinstance(exc, psycopg.OperationalError):
                    conn.close()
                raise StoreError(f"{action} failed on {self.label}: {message(exc)}") from exc

    def _scalar(self, action: str, query: str, params: Sequence[Any] = ()) -> Any:
        return self._rows(action, query, params)[0][0]

    def _rows(self, action: str, query: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._using(action) as conn:
            return conn.execute(query, params).fetchall()

    # -- schema ----------------------------------------------------------------

    def schema_version(self) -> int:
        """The last migration applied (0: no otaudit schema in this database)."""
        action = "reading the schema version"
        if self._scalar(action, "SELECT to_regclass('otaudit.schema_migrations')") is None:
            return 0
        return int(
            self._scalar(action, "SELECT COALESCE(MAX(version), 0) FROM otaudit.schema_migrations")
        )

    def migrate(self, *, online_only: bool) -> list[Migration]:
        """Apply pending migrations under the migration lock, one transaction each."""
        applied: list[Migration] = []
        with self._using("migrating the ledger schema") as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_LOCK,))
            current = self.schema_version()
            todo = mig.pending(current, MIGRATIONS, self.label)
            if online_only:
                mig.check_online(todo, self.label, current)
            for m in todo:
                conn.execute(m.script)
                conn.execute(
                    "INSERT INTO otaudit.schema_migrations VALUES (%s, %s, now())",
                    (m.version, m.description),
                )
                applied.append(m)
        return applied

    # -- writing ---------------------------------------------------------------

    def append(self, entries: Sequence[Entry]) -> AppendResult:
        """Durably append the entries not already held; see ``Store.append``."""
        try:
            return self._append(entries)
        except StoreError as exc:
            if isinstance(exc.__cause__, psycopg.DataError):  # a value it cannot hold
                raise UnstorableRecords(
                    f"PostgreSQL cannot store a value of these records: {message(exc.__cause__)}"
                ) from exc.__cause__
            raise

    def _append(self, entries: Sequence[Entry]) -> AppendResult:
        with self._using("appending to the ledger") as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_HEAD_LOCK,))
            size = int(
                _first(conn.execute("SELECT COALESCE(MAX(seq) + 1, 0) FROM otaudit.records"))
            )
            keys = [e.dedup_key for e in entries]
            held = {
                bytes(r[0])
                for r in conn.execute(
                    "SELECT dedup_key FROM otaudit.records WHERE dedup_key = ANY(%s)", (keys,)
                )
            }
            plan = plan_append(entries, size, held, self._edge(conn, size), no_resource=None)
            self._hstore(conn)
            with conn.cursor() as cur:
                with cur.copy(COPY_RECORDS) as copy:
                    copy.set_types(COPY_TYPES)
                    for row in plan.records:
                        values = list(row)
                        for at in HSTORE_AT:
                            if values[at] is not None:
                                values[at] = orjson.loads(values[at])
                        copy.write_row(values)
                cur.executemany(
                    INSERT_RESOURCE,
                    [(h, body, orjson.loads(flat)) for h, body, flat in plan.resources],
                )
                with cur.copy(
                    "COPY otaudit.tree_nodes (level, idx, hash) FROM STDIN (FORMAT BINARY)"
                ) as copy:
                    copy.set_types(["integer", "bigint", "bytea"])
                    for node in plan.nodes:
                        copy.write_row(node)
        return plan.result

    @staticmethod
    def _edge(conn: psycopg.Connection[Any], size: int) -> list[bytes]:
        keys = edge_keys(size)
        if not keys:
            return []
        found = {
            (int(r[0]), int(r[1])): bytes(r[2])
            for r in conn.execute(
                "SELECT level, idx, hash FROM otaudit.tree_nodes"
                " WHERE (level, idx) IN (SELECT * FROM unnest(%s::int[], %s::bigint[]))",
                ([k[0] for k in keys], [k[1] for k in keys]),
            )
        }
        missing = [k for k in keys if k not in found]
        if missing:
            level, idx = missing[0]
            raise StoreError(f"tree node level {level} idx {idx} is missing; run `otaudit verify`")
        return [found[k] for k in keys]

    @contextmanager
    def _signer(self) -> Iterator[bool]:
        with self._using("taking the signer lock") as conn:
            got = bool(_first(conn.execute("SELECT pg_try_advisory_lock(%s)", (_SIGNER_LOCK,))))
            try:
                yield got
            finally:
                if got and not conn.closed:
                    conn.execute("SELECT pg_advisory_unlock(%s)", (_SIGNER_LOCK,))

    def signer_turn(self) -> AbstractContextManager[bool]:
        """Hold the signer lock while inside (False: another node holds it now)."""
        return self._signer()

    def add_checkpoint(self, cp: StoredCheckpoint) -> None:
        """Durably store a signed checkpoint."""
        with self._using("storing a checkpoint") as conn:
            conn.execute(
                f"INSERT INTO otaudit.checkpoints ({_CHECKPOINT_COLUMNS}) VALUES (%s, %s, %s, %s)",
                (cp.tree_size, cp.root_hash, cp.signed_at_ns, cp.note),
            )

    def tokens(self) -> list[StoredToken]:
        """Every API token ever created, oldest first."""
        rows = self._rows(
            "reading tokens",
            "SELECT id, name, scopes, hash, created_at, revoked_at FROM otaudit.tokens"
            " ORDER BY created_at, id",
        )
        return [StoredToken(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]

    def add_token(self, token: StoredToken) -> None:
        """Store a new API token."""
        with self._using("storing a token") as conn:
            conn.execute(
                "INSERT INTO otaudit.tokens VALUES (%s, %s, %s, %s, %s, %s)",
                (token.token_id, token.name, token.scopes, token.token_hash,
                 token.created_at, token.revoked_at),
            )  # fmt: skip

    def revoke_token(self, token_id: str, at: str) -> bool:
        """Mark a token revoked; False if there is no such unrevoked token."""
        with self._using("revoking a token") as conn:
            cur = conn.execute(
                "UPDATE otaudit.tokens SET revoked_at = %s WHERE id = %s AND revoked_at IS NULL",
                (at, token_id),
            )
            return cur.rowcount == 1

    def set_meta(self, key: str, value: str) -> None:
        """Set a metadata value once."""
        with self._using(f"setting {key}") as conn:
            conn.execute("INSERT INTO otaudit.meta (key, value) VALUES (%s, %s)", (key, value))

    # -- reading ---------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        """A metadata value, or None."""
        rows = self._rows(
            "reading the ledger", "SELECT value FROM otaudit.meta WHERE key = %s", (key,)
        )
        return str(rows[0][0]) if rows else None

    def tree_size(self) -> int:
        """The number of records committed."""
        return int(
            self._rows(
                "reading the ledger", "SELECT COALESCE(MAX(seq) + 1, 0) FROM otaudit.records"
            )[0][0]
        )

    def nodes(self, keys: Sequence[tuple[int, int]]) -> list[bytes]:
        """The stored hashes of the given (level, idx) subtrees; StoreError if one is missing."""
        if not keys:
            return []
        rows = self._rows(
            "reading tree nodes",
            "SELECT k.ord, n.hash FROM unnest(%s::int[], %s::bigint[]) WITH ORDINALITY"
            " AS k(level, idx, ord) LEFT JOIN otaudit.tree_nodes n USING (level, idx)"
            " ORDER BY k.ord",
            ([k[0] for k in keys], [k[1] for k in keys]),
        )
        for (level, idx), row in zip(keys, rows, strict=True):
            if row[1] is None:
                raise StoreError(f"tree node level {level} idx {idx} is missing")
        return [bytes(r[1]) for r in rows]

    def _stream(self, action: str, query: str, params: Sequence[Any]) -> Iterator[tuple[Any, ...]]:
        """Rows of a large read through a server-side cursor on a connection of its own,
        in one REPEATABLE READ snapshot (appends by other nodes do not show up midway)."""
        conn = self._connect(readonly=True)
        try:
            self._hstore(conn)
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                with conn.cursor(name="otaudit_stream") as cur:
                    cur.itersize = 4000
                    cur.execute(query, params)
                    yield from cur
        except psycopg.Error as exc:
            raise StoreError(f"{action} failed on {self.label}: {message(exc)}") from exc
        finally:
            conn.close()

    def iter_records(self, begin: int = 0, end: int | None = None) -> Iterator[StoredRecord]:
        """Records with ``begin <= seq < end`` in sequence order."""
        query = f"SELECT {RECORD_COLUMNS} FROM otaudit.records WHERE seq >= %s"
        params: list[int] = [begin]
        if end is not None:
            query += " AND seq < %s"
            params.append(end)
        resources = ResourceCache(self._resource)
        for r in self._stream("reading records", query + " ORDER BY seq", params):
            values = list(r[:-2])
            for at in HSTORE_AT:
                if values[at] is not None:
                    values[at] = _flat_text(values[at])
            yield stored_record(values, r[-2], r[-1], resources.get(r[-2]))

    def _resource(self, resource_hash: bytes) -> tuple[bytes, str] | None:
        with self._using("reading a resource") as conn:
            self._hstore(conn)
            row = conn.execute(
                "SELECT body, flat FROM otaudit.resources WHERE hash = %s", (resource_hash,)
            ).fetchone()
        return None if row is None else (bytes(row[0]), _flat_text(row[1]))

    def iter_level(self, level: int, begin: int = 0) -> Iterator[tuple[int, bytes]]:
        """The (idx, hash) rows of one tree level from ``begin``, in order."""
        for r in self._stream(
            "reading tree nodes",
            "SELECT idx, hash FROM otaudit.tree_nodes WHERE level = %s AND idx >= %s ORDER BY idx",
            (level, begin),
        ):
            yield int(r[0]), bytes(r[1])

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        """The checkpoint with the largest tree size, or None."""
        rows = self._rows(
            "reading checkpoints",
            f"SELECT {_CHECKPOINT_COLUMNS} FROM otaudit.checkpoints"
            " ORDER BY tree_size DESC LIMIT 1",
        )
        return _checkpoint(rows[0]) if rows else None

    def checkpoints(self) -> list[StoredCheckpoint]:
        """Every stored checkpoint, oldest first."""
        rows = self._rows(
            "reading checkpoints",
            f"SELECT {_CHECKPOINT_COLUMNS} FROM otaudit.checkpoints ORDER BY tree_size",
        )
        return [_checkpoint(r) for r in rows]

    def close(self) -> None:
        """Close the shared connection."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _flat_text(value: dict[str, str]) -> str:
    """An ``hstore`` read as a dict, as the JSON text the columns hold."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _first(cur: psycopg.Cursor[Any]) -> Any:
    row = cur.fetchone()
    assert row is not None
    return row[0]


def _checkpoint(r: Sequence[Any]) -> StoredCheckpoint:
    return StoredCheckpoint(int(r[0]), bytes(r[1]), int(r[2]), str(r[3]))


def open_postgres(dsn: str, *, readonly: bool) -> PostgresStore:
    """Open a PostgreSQL ledger, refusing a DSN psycopg cannot parse with a clear message."""
    check_dsn(dsn)
    return PostgresStore(dsn, readonly=readonly)
