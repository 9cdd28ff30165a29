"""``otaudit sql``."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from otaudit.cli.main import handle_errors, store_options
from otaudit.cli.reading import audited_read
from otaudit.query import FORMATS, render, run_sql


@click.command("sql")
@store_options
@click.argument("statement")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option(
    "--max-rows",
    type=click.IntRange(1),
    default=100_000,
    show_default=True,
    help="Row cap; a capped result prints a notice on stderr.",
)
@click.option(
    "--timeout-ms",
    type=click.IntRange(1),
    default=30_000,
    show_default=True,
    help="Statement time limit.",
)
@handle_errors
def sql_command(
    data: Path, store_url: str | None, statement: str, fmt: str, max_rows: int, timeout_ms: int
) -> None:
    """Run read-only SQL over audit_records, audit_spans and audit_logs."""
    with audited_read(data, store_url, "sql", statement) as (store, outcome):
        result = run_sql(store, statement, max_rows=max_rows, timeout_ms=timeout_ms)
        outcome.rows = len(result.rows)
    render(result, fmt, Console(soft_wrap=fmt != "table"))
    if result.truncated:
        click.echo(f"truncated: only the first {max_rows} rows are shown (--max-rows)", err=True)


def register(group: click.Group) -> None:
    """Add this module's commands to the CLI."""
    group.add_command(sql_command)
