"""``otaudit sql``."""

from __future__ import annotations

from pathlib import Path

import click

from otaudit import views
from otaudit.cli import rows as rows_out
from otaudit.cli.options import Count, query_store_option, store_options
from otaudit.cli.reading import audited_read
from otaudit.cli.render import print_json
from otaudit.query import json_cell, query_target, run_sql, truncation_notice
from otaudit.sqllimits import QueryLimits

_DEFAULTS = QueryLimits()


@click.command("sql")
@store_options
@query_store_option
@click.argument("statement", required=False)
@click.option("--schema", is_flag=True,
              help="List the views and their columns, with what each holds, and exit.")  # fmt: skip
@click.option("--format", "fmt", type=click.Choice(rows_out.FORMATS), default="table",
              show_default=True)  # fmt: skip
@click.option("--wide", is_flag=True, help="Cut no value in a table.")
@click.option(
    "--max-rows",
    type=Count(1),
    default=_DEFAULTS.max_rows,
    show_default=True,
    help="Row cap; a capped result prints a notice on stderr.",
)
@click.option(
    "--max-bytes",
    type=Count(1),
    default=_DEFAULTS.max_result_bytes,
    show_default=True,
    help="Cap on the bytes of cell data returned; a capped result prints a notice on stderr.",
)
@click.option(
    "--timeout-ms",
    type=Count(1),
    default=_DEFAULTS.timeout_ms,
    show_default=True,
    help="Statement time limit.",
)
def sql_command(
    data: Path,
    store_url: str | None,
    query_url: str | None,
    statement: str | None,
    schema: bool,
    fmt: str,
    wide: bool,
    max_rows: int,
    max_bytes: int,
    timeout_ms: int,
) -> None:
    """Run read-only SQL over audit_records, audit_spans and audit_logs (see --schema)."""
    if schema:
        _print_schema(store_url, fmt, wide)
        return
    if statement is None:
        raise click.UsageError("give a STATEMENT, or --schema for the views and their columns")
    limits = QueryLimits(max_rows=max_rows, max_result_bytes=max_bytes, timeout_ms=timeout_ms)
    with audited_read(data, store_url, "sql", statement) as (store, outcome):
        result = run_sql(query_target(store, query_url), statement, limits)
        outcome.rows = len(result.rows)
    shown = rows_out.write(result.columns, result.rows, fmt, wide=wide, exact=json_cell)
    for notice in (truncation_notice(result, limits), rows_out.cut_note(shown)):
        if notice:
            click.echo(notice, err=True)


def _print_schema(store_url: str | None, fmt: str, wide: bool) -> None:
    """The views and their columns (types as the store of ``store_url`` has them)."""
    on_postgres = store_url is not None and store_url.startswith(("postgresql:", "postgres:"))
    if fmt == "json":
        print_json(
            {
                "views": views.VIEWS,
                "columns": [
                    {"name": c.name, "type": c.postgres if on_postgres else c.sqlite,
                     "meaning": c.meaning}
                    for c in views.COLUMNS
                ],
            }
        )  # fmt: skip
        return
    if fmt in ("table", "vertical"):
        listed = ", ".join(f"{name} ({meaning})" for name, meaning in views.VIEWS.items())
        click.echo(f"views: {listed}; each has these columns:")
    rows_out.write(
        ("column", "type", "meaning"),
        [(c.name, c.postgres if on_postgres else c.sqlite, c.meaning) for c in views.COLUMNS],
        fmt,
        wide=True,
        noun="column(s)",
    )


def register(group: click.Group) -> None:
    """Add this module's commands to the CLI."""
    group.add_command(sql_command)
