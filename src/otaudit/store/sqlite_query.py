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
from otaudit.sqllimits import MAX_SQL_CHARS, QueryLimits, QueryRows, RowBudget

QUERY_VIEWS: Final = frozenset({"audit_records", "audit_spans", "audit_logs"})
#: Tables the views show every row of: counting one (an empty-column read) tells nothing
#: the views do not. Every other table, ``sqlite_master`` included, may not even be counted.
_VIEW_TABLES: Final = frozenset({"records"})
_QUERY_ACTIONS: Final = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
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
    """Allow reading the audit views (and what they read) and nothing else.

    SQLite reports a read with an empty column name when a statement reads
    no column of a table (``count(*)``, ``SELECT 1 FROM t``) or of a CTE,
    without saying through which view. Such a read is allowed for names that
    are not tables of the database (CTEs, subqueries) and for the table the
    views show whole; any other table is refused.
    """

    def __init__(self, tables: frozenset[str]) -> None:
        self.tables = tables

    def __call__(
        self, action: int, arg1: str | None, arg2: str | None, db: str | None, source: str | None
    ) -> int:
        if action in _QUERY_ACTIONS:
            return sqlite3.SQLITE_OK
        if action != sqlite3.SQLITE_READ:
            return sqlite3.SQLITE_DENY
        if db == "main" and (arg1 in QUERY_VIEWS or source in QUERY_VIEWS):
            return sqlite3.SQLITE_OK
        if arg2 == "" and arg1 is not None:
            name = arg1.lower()
            is_table = name in self.tables or name.startswith("sqlite_")
            if not is_table or name in _VIEW_TABLES:
                return sqlite3.SQLITE_OK
        return sqlite3.SQLITE_DENY


def run_query(path: Path, sql: str, limits: QueryLimits) -> QueryRows:
    """Run one reading statement of the user dialect on the ledger at ``path``."""
    if len(sql) > MAX_SQL_CHARS:
        raise QueryError(f"SQL error: the statement is {len(sql)} characters, over {MAX_SQL_CHARS}")
    check_read_only(sql)
    try:
        conn = sqlite3.connect(read_uri(path), uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise StoreError(f"opening a read connection failed on {path}: {exc}") from exc
    deadline = time.monotonic() + limits.timeout_ms / 1000
    try:
        try:
            conn.execute("PRAGMA query_only = ON")
            conn.execute(f"PRAGMA hard_heap_limit = {int(limits.max_memory_bytes // 2)}")
            tables = frozenset(
                str(r[0]).lower()
                for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            )
        except sqlite3.Error as exc:
            raise StoreError(f"opening a read connection failed on {path}: {exc}") from exc
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, limits.max_value_bytes)
        conn.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, 4 * MAX_SQL_CHARS)
        conn.set_authorizer(_Authorizer(tables))
        conn.set_progress_handler(lambda: int(time.monotonic() > deadline), _PROGRESS_OPS)
        budget = RowBudget(limits)
        try:
            cur = conn.execute(to_sqlite(sql))
            names = [d[0] for d in cur.description or ()]
            while batch := cur.fetchmany(_FETCH_BATCH):
                if not all(budget.take(row) for row in batch):
                    break
        except sqlite3.Error as exc:
            if time.monotonic() > deadline:
                raise QueryError(
                    f"query stopped after the {limits.timeout_ms} ms time limit"
                ) from exc
            text = str(exc)
            if "too big" in text:
                text += f" (values are limited to {limits.max_value_bytes} bytes)"
            elif "not authorized" in text:
                text += f" (queries read only {', '.join(sorted(QUERY_VIEWS))})"
            elif "out of memory" in text:
                text += f" (queries are limited to {limits.max_memory_bytes // 2**20} MiB)"
            raise QueryError(f"SQL error: {text}{error_position(str(exc), sql)}") from exc
        except sqlite3.Warning as exc:
            raise QueryError(f"SQL error: {exc}") from exc
        except MemoryError as exc:
            raise QueryError(
                f"query stopped: it needed more than {limits.max_memory_bytes // 2**20} MiB"
            ) from exc
        return budget.result(names)
    finally:
        conn.close()
