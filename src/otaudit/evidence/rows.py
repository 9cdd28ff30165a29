"""Streaming a population's statement out of the store, row by row, with no row cap.

A population is never truncated, so the row and byte caps of ``otaudit sql`` do not apply;
the other bounds do. On SQLite the statement runs on a connection that reads the audit
views and nothing else (:func:`otaudit.store.sqlite_query.connect_reader`), on PostgreSQL as
a read-only session (the ``--query-store`` login when one is given, whose reach is checked
as for ``otaudit sql``; otherwise the store's own login, in a read-only transaction), both
within a time limit. Rows are fetched in batches, so memory stays flat.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import psycopg

from otaudit.dialect import to_sqlite
from otaudit.errors import QueryError, StoreError
from otaudit.sqllimits import QueryLimits
from otaudit.sqlworker import QueryTarget
from otaudit.store.postgres_connect import message, redact_dsn
from otaudit.store.postgres_query import connect_query
from otaudit.store.sqlite_query import connect_reader, query_error

_BATCH: Final = 2048
#: The memory a statement may use on SQLite (half of it its heap); sorts spill to files.
MEMORY_BYTES: Final = 256 << 20
#: How long one population's statement may run.
DEFAULT_TIMEOUT_S: Final = 1800


class Rows:
    """The column names and rows of one statement; iterate once, then close."""

    def __init__(self, columns: list[str], rows: Iterator[tuple[Any, ...]]) -> None:
        self.columns = columns
        self._rows = rows

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return self._rows


def stream(
    target: QueryTarget, sql: str, *, timeout_s: int = DEFAULT_TIMEOUT_S, checked: bool = True
) -> Rows:
    """The rows of ``sql`` (the user dialect) on ``target``, as they are read.

    ``checked`` runs a PostgreSQL statement only as a login that can read nothing but the
    views (as ``otaudit sql`` does); otaudit's own statements pass False to run as the store's
    login, still read-only.
    """
    limits = QueryLimits(timeout_ms=timeout_s * 1000, max_memory_bytes=MEMORY_BYTES)
    if target.kind == "sqlite":
        return _sqlite(Path(target.where), sql, limits)
    return _postgres(target.where, sql, limits, checked)


def _sqlite(path: Path, sql: str, limits: QueryLimits) -> Rows:
    deadline = time.monotonic() + limits.timeout_ms / 1000
    conn = connect_reader(path, limits, deadline, spill=True)
    try:
        cur = conn.execute(to_sqlite(sql))
    except sqlite3.Error as exc:
        conn.close()
        raise query_error(exc, sql, limits, deadline) from exc

    def rows() -> Iterator[tuple[Any, ...]]:
        try:
            while batch := cur.fetchmany(_BATCH):
                yield from batch
        except sqlite3.Error as exc:
            raise query_error(exc, sql, limits, deadline) from exc
        finally:
            conn.close()

    return Rows([d[0] for d in cur.description or ()], rows())


def _postgres(dsn: str, sql: str, limits: QueryLimits, checked: bool) -> Rows:
    conn = connect_query(dsn, limits, check_login=checked)
    stopper = threading.Timer(limits.timeout_ms / 1000 + 0.5, conn.cancel_safe)
    stopper.daemon = True
    stopper.start()
    try:
        conn.execute("BEGIN READ ONLY")
        cur = conn.cursor(name="otaudit_population")
        cur.execute(sql.rstrip().removesuffix(";"))
        columns = [d.name for d in cur.description or ()]
    except psycopg.Error as exc:
        stopper.cancel()
        conn.close()
        raise _pg_error(exc, dsn, limits) from exc

    def rows() -> Iterator[tuple[Any, ...]]:
        try:
            while batch := cur.fetchmany(_BATCH):
                yield from (tuple(row) for row in batch)
        except psycopg.Error as exc:
            raise _pg_error(exc, dsn, limits) from exc
        finally:
            stopper.cancel()
            conn.close()

    return Rows(columns, rows())


def _pg_error(exc: psycopg.Error, dsn: str, limits: QueryLimits) -> Exception:
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return QueryError(f"query stopped after the {limits.timeout_ms // 1000} s time limit")
    if isinstance(exc, psycopg.OperationalError):
        return StoreError(f"query failed on {redact_dsn(dsn)}: {message(exc)}")
    return QueryError(f"SQL error: {message(exc)}")
