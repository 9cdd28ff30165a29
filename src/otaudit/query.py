"""Read-only SQL over the audit views, and result formatting.

The views ``audit_records``, ``audit_spans`` and ``audit_logs`` expose only
columns derived from sealed bytes (``docs/querying.md``). Queries run on
read-only connections with a time limit and a row cap; a capped result says
so.
"""

from __future__ import annotations

import base64
import csv
import io
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table
from rich.text import Text

from otaudit.store.base import Store

FORMATS = ("table", "csv", "json")


@dataclass(frozen=True)
class QueryResult:
    """Column names, rows and whether the row cap cut the result short."""

    columns: list[str]
    rows: list[tuple[Any, ...]]
    truncated: bool


def run_sql(
    store: Store, sql: str, *, max_rows: int = 100_000, timeout_ms: int = 30_000
) -> QueryResult:
    """Run one read-only SQL statement; QueryError carries the database's message."""
    columns, rows, truncated = store.query(sql, max_rows=max_rows, timeout_ms=timeout_ms)
    return QueryResult(columns, rows, truncated)


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
    """CSV with a header row (RFC 4180 quoting)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(result.columns)
    writer.writerows([[json_cell(v) for v in row] for row in result.rows])
    return out.getvalue()


def cell(value: Any) -> Text:
    """A table cell showing ``value`` as plain text: audit data (a user name like
    ``[/admin]``) is never read as console markup."""
    return Text("" if value is None else str(value))


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
