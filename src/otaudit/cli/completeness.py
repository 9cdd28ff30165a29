"""``otaudit gaps`` (exit 0 complete, 1 missing or duplicated numbers, 2 usage or I/O error)
and ``otaudit conformance`` (a report: exit 0, or 2 on usage or I/O errors)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from otaudit import completeness
from otaudit.cli import rows as rows_out
from otaudit.cli.options import store_options, time_bound
from otaudit.cli.reading import audited_read
from otaudit.cli.render import fail

_SINCE_HELP = (
    "Only records at or after T (time_unix_nano): RFC 3339 (2026-01-01T00:00:00Z, "
    "or a date: 2026-01-01) or a duration ago (90d, 12h, 30m)."
)


def _emit(fmt: str, columns: tuple[str, ...], rows: list[tuple[object, ...]], last: str) -> None:
    if fmt in ("vertical", "jsonl"):
        rows_out.write(columns, rows, fmt)
        if fmt == "vertical":
            click.echo(last)
    elif fmt == "json":
        click.echo(completeness.to_json(columns, rows))
    elif fmt == "csv":
        click.echo(completeness.to_csv(columns, rows), nl=False)
    else:
        if rows:
            click.echo(completeness.to_table(columns, rows), nl=False)
        click.echo(last)


@click.command("gaps")
@store_options
@click.option("--producer", metavar="ID", help="Only this producer (audit.producer.id).")
@click.option("--since", metavar="T", help=_SINCE_HELP)
@click.option("--format", "fmt", type=click.Choice(completeness.FORMATS), default="table",
              show_default=True)  # fmt: skip
def gaps_command(
    data: Path, store_url: str | None, producer: str | None, since: str | None, fmt: str
) -> None:
    """Find lost audit records: numbers missing from each producer's audit.producer.seq.

    Exit 0 when every producer's numbers are complete, 1 when any number is
    missing or held twice, 2 on usage or I/O errors.
    """
    since_ns = time_bound(since, "--since", time.time_ns())
    text = (
        "gaps"
        + (f" --producer {producer}" if producer else "")
        + (f" --since {since}" if since else "")
    )
    with audited_read(data, store_url, "report", text) as (store, outcome):
        reports = list(completeness.producer_reports(store, since_ns=since_ns, producer=producer))
        outcome.rows = len(reports)
    if producer is not None and not reports:
        fail(f"no numbered audit records from producer {producer!r}"
             + (" in the --since window" if since_ns is not None else ""))  # fmt: skip
    if reports:
        last = completeness.gaps_summary(reports)
    else:
        last = "no numbered audit records (audit.producer.id with audit.producer.seq)"
    _emit(fmt, completeness.GAP_COLUMNS, [r.row() for r in reports], last)
    sys.exit(0 if all(r.complete for r in reports) else 1)


@click.command("conformance")
@store_options
@click.option("--since", metavar="T", help=_SINCE_HELP)
@click.option("--format", "fmt", type=click.Choice(completeness.FORMATS), default="table",
              show_default=True)  # fmt: skip
def conformance_command(data: Path, store_url: str | None, since: str | None, fmt: str) -> None:
    """Per service: audit records lacking actor or result, or producer numbering (worst first)."""
    since_ns = time_bound(since, "--since", time.time_ns())
    text = "conformance" + (f" --since {since}" if since else "")
    with audited_read(data, store_url, "report", text) as (store, outcome):
        reports = completeness.service_reports(store, since_ns=since_ns)
        outcome.rows = len(reports)
    rows = [r.row() for r in reports]
    if fmt == "table":
        rows = [(completeness.NO_SERVICE if r[0] is None else r[0], *r[1:]) for r in rows]
    _emit(fmt, completeness.CONFORMANCE_COLUMNS, rows, completeness.conformance_summary(reports))


def register(group: click.Group) -> None:
    """Add this module's commands to the CLI."""
    group.add_command(gaps_command)
    group.add_command(conformance_command)
