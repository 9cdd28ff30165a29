"""User SQL on the SQLite ledger: read the audit views and nothing else, within limits.

Each statement gets a connection of its own, opened ``mode=ro`` with
``PRAGMA query_only``, an authorizer that allows reading the three views and
nothing else (no other table, no ``sqlite_master``, not even a row count of
one), a progress handler that stops it at the time limit, SQLite's own
limits on value and statement length, and a heap limit. Rows are fetched in
batches and counted in rows and bytes as they arrive. This runs inside the
query worker process (:mod:`otaudit.sqlworker`), whose address space is
capped as well.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Final

from otaudit.dialect import check_read_only, error_position, to_sqlite
from otaudit.errors import QueryError, StoreError
from otaudit.sqllimits import MAX_SQL_CHARS, QueryLimits, QueryRows, RowBudget, out_of_memory

QUERY_VIEWS: Final = frozenset({"audit_records", "audit_spans", "audit_logs"})
#: Tables the views show every row of: counting one (an empty-column read) tells nothing
#: the views do not. Every other table, ``sqlite_master`` included, may not even be counted.
_VIEW_TABLES: Final = frozenset({"records"})
_QUERY_ACTIONS: Final = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_RECURSIVE}
#: Functions no audit query needs that reach past SQL: a tokenizer pointer (an address).
_REFUSED_FUNCTIONS: Final = frozenset({"fts3_tokenizer", "load_extension", "readfile", "writefile"})
_FETCH_BATCH: Final = 256
_PROGRESS_OPS: Final = 10_000


def read_uri(path: Path) -> str:
    """A read-only URI; on read-only media (no writable directory, no ``-shm`` file)
    the file cannot change, so SQLite may open it as immutable."""
    shm = path.with_name(path.name + "-shm")
    if not os.access(path.parent, os.W_OK) and not shm.exists():
        return f"file:{path}?mode=ro&immutable=1"
    return f"file:{path}?mode=ro"


class _Authorizer:
    """Allow reading the columns the audit views read, and nothing else.

    What a statement may read is decided by table and column, the two things
    a statement cannot disguise: the name SQLite reports as the view a read
    comes through is the name of a CTE when a statement names its CTE
    ``audit_records``, so it is not trusted. ``exposed`` is the set of
    (table, column) pairs the three views read, learned from the views
    themselves when the connection opens.

    SQLite reports a read with an empty column name when a statement reads
    no column of a table (``count(*)``, ``SELECT 1 FROM t``) or of a CTE.
    Such a read is allowed for names that are not tables of the database
    (CTEs, subqueries) and for the table the views show whole.
    """

    def __init__(self, tables: frozenset[str], exposed: frozenset[tuple[str, str]]) -> None:
        self.tables = tables
        self.exposed = exposed

    def __call__(
        self, action: int, arg1: str | None, arg2: str | None, db: str | None, source: str | None
    ) -> int:
        if action == sqlite3.SQLITE_FUNCTION:
            return sqlite3.SQLITE_DENY if arg2 in _REFUSED_FUNCTIONS else sqlite3.SQLITE_OK
        if action in _QUERY_ACTIONS:
            return sqlite3.SQLITE_OK
        if action != sqlite3.SQLITE_READ or arg1 is None:
            return sqlite3.SQLITE_DENY
        table = arg1.lower()
        if arg2:
            if table in QUERY_VIEWS or (table, arg2.lower()) in self.exposed:
                return sqlite3.SQLITE_OK
            return sqlite3.SQLITE_DENY
        is_table = table in self.tables or table.startswith("sqlite_")
        if not is_table or table in _VIEW_TABLES:
            return sqlite3.SQLITE_OK
        return sqlite3.SQLITE_DENY


def _exposed_columns(conn: sqlite3.Connection) -> frozenset[tuple[str, str]]:
    """The (table, column) pairs the audit views read, from preparing each view."""
    seen: set[tuple[str, str]] = set()

    def note(action: int, arg1: str | None, arg2: str | None, *_: str | None) -> int:
        if action == sqlite3.SQLITE_READ and arg1 and arg2:
            seen.add((arg1.lower(), arg2.lower()))
        return sqlite3.SQLITE_OK

    conn.set_authorizer(note)
    try:
        for view in sorted(QUERY_VIEWS):
            conn.execute(f"SELECT * FROM {view} LIMIT 0").fetchall()
    finally:
        conn.set_authorizer(None)
    return frozenset(pair for pair in seen if pair[0] not in QUERY_VIEWS)


def connect_reader(
    path: Path, limits: QueryLimits, deadline: float, *, spill: bool = False
) -> sqlite3.Connection:
    """A connection that may read the audit views of the ledger at ``path`` and nothing
    else, within ``limits`` and until ``deadline`` (``time.monotonic()``); StoreError if the
    ledger cannot be opened. ``spill`` lets sorts spill to temporary files rather than
    count against the heap (a statement whose whole result is streamed, however large)."""
    try:
        conn = sqlite3.connect(read_uri(path), uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise StoreError(f"opening a read connection failed on {path}: {exc}") from exc
    try:
        conn.execute("PRAGMA query_only = ON")
        # Unless spilling, sorts are held in memory, where they count against the heap.
        conn.execute(f"PRAGMA temp_store = {'FILE' if spill else 'MEMORY'}")
        conn.execute(f"PRAGMA hard_heap_limit = {int(limits.max_memory_bytes // 2)}")
        tables = frozenset(
            str(r[0]).lower()
            for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        )
        exposed = _exposed_columns(conn)
    except sqlite3.Error as exc:
        conn.close()
        raise StoreError(f"opening a read connection failed on {path}: {exc}") from exc
    conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, limits.max_value_bytes)
    conn.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, 4 * MAX_SQL_CHARS)
    conn.set_authorizer(_Authorizer(tables, exposed))
    conn.set_progress_handler(lambda: int(time.monotonic() > deadline), _PROGRESS_OPS)
    return conn


def query_error(exc: sqlite3.Error, sql: str, limits: QueryLimits, deadline: float) -> QueryError:
    """The reader's error for ``exc``, raised by statement ``sql`` (user dialect)."""
    if time.monotonic() > deadline:
        return QueryError(f"query stopped after the {limits.timeout_ms} ms time limit")
    text = str(exc)
    if "too big" in text:
        text += f" (values are limited to {limits.max_value_bytes} bytes)"
    elif "not authorized" in text or "prohibited" in text:
        text += f" (queries read only {', '.join(sorted(QUERY_VIEWS))})"
    elif "out of memory" in text:
        text += f" (queries are limited to {limits.max_memory_bytes // 2**20} MiB)"
    return QueryError(f"SQL error: {text}{error_position(str(exc), sql)}")


def run_query(path: Path, sql: str, limits: QueryLimits) -> QueryRows:
    """Run one reading statement of the user dialect on the ledger at ``path``."""
    if len(sql) > MAX_SQL_CHARS:
        raise QueryError(f"SQL error: the statement is {len(sql)} characters, over {MAX_SQL_CHARS}")
    check_read_only(sql)
    deadline = time.monotonic() + limits.timeout_ms / 1000
    conn = connect_reader(path, limits, deadline)
    try:
        budget = RowBudget(limits)
        try:
            cur = conn.execute(to_sqlite(sql))
            names = [d[0] for d in cur.description or ()]
            while batch := cur.fetchmany(_FETCH_BATCH):
                if not all(budget.take(row) for row in batch):
                    break
        except sqlite3.Error as exc:
            raise query_error(exc, sql, limits, deadline) from exc
        except sqlite3.Warning as exc:
            raise QueryError(f"SQL error: {exc}") from exc
        except MemoryError as exc:
            raise out_of_memory(limits) from exc
        return budget.result(names)
    finally:
        conn.close()
