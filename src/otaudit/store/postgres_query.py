"""User SQL on the PostgreSQL ledger: a login that can only read the audit views.

No parser decides what is safe here; the database does. Before a statement
runs, the login it runs as is checked: it (the session user, which must also
be the role its sessions start as) and every role it can become must
hold nothing in schema ``otaudit`` but SELECT on the three audit views, and
must not be a superuser, create roles or databases, bypass row security,
replicate, or hold a predefined role that reads or writes everything,
monitors other sessions, runs
programs or reads server files (:func:`check_query_login`). A login that
fails is refused with what it can do and how to make one that passes
(``docs/operations.md``, "A login for user SQL").

The statement is then sent alone through the extended query protocol, as
the query of a ``DECLARE ... CURSOR`` (so a second statement, a
data-modifying ``WITH`` or anything but a SELECT is refused by the server),
in a READ ONLY transaction with ``statement_timeout``, and fetched in
batches counted in rows and bytes. A timer cancels it at the time limit even
if the statement changed its own settings.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Final

import psycopg

from otaudit.dialect import check_read_only
from otaudit.errors import QueryError, StoreError
from otaudit.sqllimits import MAX_SQL_CHARS, QueryLimits, QueryRows, RowBudget, out_of_memory
from otaudit.store.postgres_connect import message, redact_dsn
from otaudit.store.postgres_schema import QUERY_VIEWS

_CURSOR: Final = "otaudit_user_sql"
#: What psycopg puts before the statement (a server's error position counts from there).
_DECLARE_PREFIX: Final = len(f'DECLARE "{_CURSOR}" CURSOR FOR ')
_FETCH_BATCH: Final = 256
#: Predefined roles that reach past the views: all data, server files, programs, signals.
_BROAD_ROLES: Final = (
    "pg_read_all_data",
    "pg_write_all_data",
    "pg_read_server_files",
    "pg_write_server_files",
    "pg_execute_server_program",
    "pg_signal_backend",
    "pg_monitor",
    "pg_read_all_settings",
    "pg_read_all_stats",
    "pg_stat_scan_tables",
)
_ANY_TABLE_RIGHT: Final = "SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER"
_ANY_VIEW_WRITE: Final = "INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER"
_CHECK_LOGIN: Final = f"""
WITH me AS (
    SELECT oid, rolname, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, rolreplication
    FROM pg_roles
    WHERE pg_has_role(session_user, oid, 'MEMBER') OR pg_has_role(current_user, oid, 'MEMBER')
)
SELECT rolname, CASE
    WHEN rolsuper THEN 'is a superuser'
    WHEN rolcreaterole THEN 'can create roles'
    WHEN rolcreatedb THEN 'can create databases'
    WHEN rolbypassrls THEN 'bypasses row-level security'
    WHEN rolreplication THEN 'may start replication'
    WHEN rolname = ANY(%(broad)s) THEN 'is a predefined role that reaches past the views'
    WHEN has_database_privilege(oid, current_database(), 'CREATE')
        THEN 'can create schemas in this database'
    WHEN has_schema_privilege(oid, 'otaudit', 'CREATE') THEN 'can create objects in otaudit'
    ELSE (
        SELECT 'has rights on otaudit.' || c.relname || ' beyond reading the audit views'
        FROM pg_class c
        WHERE c.relnamespace = 'otaudit'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
          AND (CASE WHEN c.relname = ANY(%(views)s)
                    THEN has_table_privilege(me.oid, c.oid, '{_ANY_VIEW_WRITE}')
                         OR has_any_column_privilege(me.oid, c.oid, 'INSERT, UPDATE, REFERENCES')
                    ELSE has_table_privilege(me.oid, c.oid, '{_ANY_TABLE_RIGHT}')
                         OR has_any_column_privilege(me.oid, c.oid,
                                                     'SELECT, INSERT, UPDATE, REFERENCES')
               END)
        ORDER BY c.relname LIMIT 1
    )
END AS problem
FROM me ORDER BY rolname
"""


def _options(limits: QueryLimits) -> str:
    return (
        "-c search_path=otaudit -c timezone=UTC -c default_transaction_read_only=on"
        f" -c statement_timeout={limits.timeout_ms}"
        f" -c idle_in_transaction_session_timeout={limits.timeout_ms + 5000}"
        " -c client_connection_check_interval=1000"
        # A cursor is planned for its first 10 % of rows by default; this one reads them all.
        " -c cursor_tuple_fraction=1"
    )


def connect_query(
    dsn: str, limits: QueryLimits, *, timeout_s: int = 5, check_login: bool = True
) -> psycopg.Connection[Any]:
    """A connection for user SQL: read-only by default, time-limited, checked by
    :func:`check_query_login` (unless ``check_login`` is false: a statement otaudit wrote
    itself, run as the store's own login); StoreError if it cannot connect, QueryError if
    refused."""
    try:
        conn = psycopg.connect(
            dsn,
            autocommit=True,
            connect_timeout=timeout_s,
            options=_options(limits),
            application_name="otaudit query",
        )
    except psycopg.Error as exc:
        raise StoreError(
            f"cannot connect to PostgreSQL at {redact_dsn(dsn)}: {redact_dsn(message(exc))}"
        ) from exc
    try:
        if check_login:
            check_query_login(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def check_query_login(conn: psycopg.Connection[Any]) -> None:
    """QueryError unless the login of ``conn``, and every role it can become, may do
    nothing in the ledger's database but read the audit views."""
    try:
        if conn.execute("SELECT to_regnamespace('otaudit')").fetchone() == (None,):
            raise StoreError("the database has no otaudit schema: run `otaudit migrate`")
        login = conn.execute("SELECT session_user, current_user").fetchone()
        found = conn.execute(
            _CHECK_LOGIN,
            {"broad": list(_BROAD_ROLES), "views": list(QUERY_VIEWS)},
        ).fetchall()
    except psycopg.Error as exc:
        raise StoreError(f"checking the query login failed: {message(exc)}") from exc
    name = login[0] if login else "?"
    if login is not None and login[0] != login[1]:
        raise QueryError(
            f"refusing to run user SQL as {name!r}: it starts its sessions as role {login[1]!r}"
            " (ALTER ROLE ... SET role), so what it is checked as is not what it can do;"
            " use a login without that setting"
        )
    problems = [(role != name, role, problem) for role, problem in found if problem is not None]
    if problems:
        _, role, problem = min(problems)  # the login's own problem first
        via = "" if role == name else f" (through role {role})"
        raise QueryError(
            f"refusing to run user SQL as {name!r}: it {problem}{via}. User SQL runs only as a"
            " login that can read the audit views and nothing else, for example one created with"
            f" `CREATE ROLE otaudit_sql LOGIN IN ROLE otaudit_query`; pass it as --query-store"
            " (see docs/operations.md, 'A login for user SQL')"
        )


def run_query(dsn: str, sql: str, limits: QueryLimits) -> QueryRows:
    """Run one reading statement as the query login of ``dsn``."""
    if len(sql) > MAX_SQL_CHARS:
        raise QueryError(f"SQL error: the statement is {len(sql)} characters, over {MAX_SQL_CHARS}")
    check_read_only(sql)
    conn = connect_query(dsn, limits)
    deadline = time.monotonic() + limits.timeout_ms / 1000
    stopper = threading.Timer(limits.timeout_ms / 1000 + 0.5, conn.cancel_safe)
    stopper.daemon = True
    stopper.start()
    budget = RowBudget(limits)
    try:
        with conn.transaction(), conn.cursor(name=_CURSOR) as cur:
            cur.execute(sql.rstrip().removesuffix(";"))
            names = [d.name for d in cur.description or ()]
            while time.monotonic() < deadline:
                batch = cur.fetchmany(_FETCH_BATCH)
                if not batch or not all(budget.take(tuple(row)) for row in batch):
                    break
            else:
                raise QueryError(f"query stopped after the {limits.timeout_ms} ms time limit")
    except psycopg.errors.QueryCanceled as exc:
        raise QueryError(f"query stopped after the {limits.timeout_ms} ms time limit") from exc
    except psycopg.errors.InsufficientPrivilege as exc:
        raise QueryError(
            f"SQL error: {message(exc)} (queries read only {', '.join(QUERY_VIEWS)})"
        ) from exc
    except psycopg.errors.ProgramLimitExceeded as exc:
        raise QueryError(f"SQL error: {message(exc)}") from exc
    except psycopg.OperationalError as exc:
        raise StoreError(f"query failed on {redact_dsn(dsn)}: {message(exc)}") from exc
    except psycopg.Error as exc:
        raise QueryError(f"SQL error: {message(exc)}{_position(exc)}") from exc
    except MemoryError as exc:
        raise out_of_memory(limits) from exc
    finally:
        stopper.cancel()
        conn.close()
    return budget.result(names)


def _position(exc: psycopg.Error) -> str:
    """`` (at character N)`` in the user's statement, when the server names a place."""
    at = exc.diag.statement_position if exc.diag else None
    if not at or int(at) <= _DECLARE_PREFIX:
        return ""
    return f" (at character {int(at) - _DECLARE_PREFIX})"
