"""``otaudit sql``."""

from __future__ import annotations

from pathlib import Path

import click

from otaudit.cli import rows as rows_out
from otaudit.cli.options import query_store_option, store_options
from otaudit.cli.reading import audited_read
from otaudit.query import json_cell, query_target, run_sql, truncation_notice
from otaudit.sqllimits import QueryLimits

_DEFAULTS = QueryLimits()


@click.command("sql")
@store_options
@query_store_option
@click.argument("statement")
@click.option("--format", "fmt", type=click.Choice(rows_out.FORMATS), default="table",
              show_default=True)  # fmt: skip
@click.option("--wide", is_flag=True, help="Cut no value in a table.")
@click.option(
    "--max-rows",
    type=click.IntRange(1),
    default=_DEFAULTS.max_rows,
    show_default=True,
    help="Row cap; a capped result prints a notice on stderr.",
)
@click.option(
    "--max-bytes",
    type=click.IntRange(1),
    default=_DEFAULTS.max_result_bytes,
    show_default=True,
    help="Cap on the bytes of cell data returned; a capped result prints a notice on stderr.",
)
@click.option(
    "--timeout-ms",
    type=click.IntRange(1),
    default=_DEFAULTS.timeout_ms,
    show_default=True,
    help="Statement time limit.",
)
def sql_command(
    data: Path,
    store_url: str | None,
    query_url: str | None,
    statement: str,
    fmt: str,
    wide: bool,
    max_rows: int,
    max_bytes: int,
    timeout_ms: int,
) -> None:
    """Run read-only SQL over audit_records, audit_spans and audit_logs."""
    limits = QueryLimits(max_rows=max_rows, max_result_bytes=max_bytes, timeout_ms=timeout_ms)
    with audited_read(data, store_url, "sql", statement) as (store, outcome):
        result = run_sql(query_target(store, query_url), statement, limits)
        outcome.rows = len(result.rows)
    shown = rows_out.write(result.columns, result.rows, fmt, wide=wide, exact=json_cell)
    for notice in (truncation_notice(result, limits), rows_out.cut_note(shown)):
        if notice:
            click.echo(notice, err=True)


def register(group: click.Group) -> None:
    """Add this module's commands to the CLI."""
    group.add_command(sql_command)
