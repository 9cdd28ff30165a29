"""Read-only SQL over the audit views, and result formatting.

The views ``audit_records``, ``audit_spans`` and ``audit_logs`` expose only
columns derived from sealed bytes (``docs/querying.md``). Statements run in
a query worker process on read-only connections, within the limits of
:class:`~otaudit.sqllimits.QueryLimits`; a capped result says so.
"""

from __future__ import annotations

import base64
import csv
import io
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table
from rich.text import Text

from otaudit.errors import ConfigError
from otaudit.sqllimits import QueryLimits, QueryRows
from otaudit.sqlworker import QueryTarget, SqlRunner
from otaudit.store.base import Store
from otaudit.store.sqlite import SQLiteStore
from otaudit.textsafety import spreadsheet_row, terminal_text

FORMATS = ("table", "csv", "json")


#: A statement's columns, rows and the cap that cut it short, if any.
QueryResult = QueryRows


def query_target(store: Store, query_url: str | None = None) -> QueryTarget:
    """Where user SQL over ``store`` runs: the SQLite file itself, or PostgreSQL as the
    query login of ``query_url`` (``--query-store``; by default the store's own URL, which
    is then refused unless its login can only read the audit views)."""
    if isinstance(store, SQLiteStore):
        return QueryTarget("sqlite", str(store.path))
    dsn = query_url or getattr(store, "dsn", None)
    if not isinstance(dsn, str):
        raise ConfigError("user SQL needs a SQLite ledger or a PostgreSQL --query-store")
    return QueryTarget("postgresql", dsn)


def run_sql(
    target: QueryTarget, sql: str, limits: QueryLimits, runner: SqlRunner | None = None
) -> QueryResult:
    """Run one read-only statement in a query worker process (:mod:`otaudit.sqlworker`);
    QueryError carries the database's message, or names the limit a statement ran into."""
    if runner is not None:
        return runner.run(target, sql, limits)
    own = SqlRunner(1)
    try:
        return own.run(target, sql, limits)
    finally:
        own.close()


def truncation_notice(result: QueryResult, limits: QueryLimits) -> str | None:
    """What to tell a reader whose result was cut short, or None."""
    if result.truncated == "rows":
        return f"truncated: only the first {limits.max_rows} rows are shown (--max-rows)"
    if result.truncated == "bytes":
        return (
            f"truncated: only the first {len(result.rows)} rows are shown, the result is over"
            f" {limits.max_result_bytes} bytes (--max-bytes)"
        )
    return None


def json_cell(value: Any) -> Any:
    """A result value as JSON can carry it: bytes as base64, timestamps as RFC 3339 with Z."""
    if isinstance(value, Decimal):  # PostgreSQL numeric (EXTRACT, AVG): a JSON number
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return value


def to_json(result: QueryResult) -> str:
    """A JSON list of objects keyed by column name, in select order."""
    return orjson.dumps(
        [dict(zip(result.columns, map(json_cell, row), strict=True)) for row in result.rows],
        option=orjson.OPT_INDENT_2,
    ).decode()


def to_csv(result: QueryResult) -> str:
    """CSV with a header row (RFC 4180 quoting), safe to open in a spreadsheet
    (:func:`otaudit.textsafety.spreadsheet_cell`)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(result.columns)
    writer.writerows([spreadsheet_row(map(json_cell, row)) for row in result.rows])
    return out.getvalue()


def cell(value: Any) -> Text:
    """A table cell showing ``value`` as plain text: audit data (a user name like
    ``[/admin]``) is never read as console markup, nor its control characters obeyed
    (:func:`otaudit.textsafety.terminal_text`)."""
    return Text("" if value is None else terminal_text(str(value)))


def print_table(result: QueryResult, console: Console, *, title: str | None = None) -> None:
    """Render the result as a table on a rich console."""
    table = Table(title=title, show_lines=False)
    for name in result.columns:
        table.add_column(name, overflow="fold")
    for row in result.rows:
        table.add_row(*(cell(None if v is None else json_cell(v)) for v in row))
    console.print(table)
    console.print(f"{len(result.rows)} row(s)")


def render(result: QueryResult, fmt: str, console: Console) -> None:
    """Print a result in one of ``FORMATS``."""
    if fmt == "json":
        console.file.write(to_json(result) + "\n")
    elif fmt == "csv":
        console.file.write(to_csv(result))
    else:
        print_table(result, console)
