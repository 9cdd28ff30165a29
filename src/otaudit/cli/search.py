"""``otaudit search``: find audit records by who, what, on what, outcome and time.

Results stream in sequence order with a stable column order
(``SEARCH_COLUMNS``): ``csv``, ``json`` and ``jsonl`` write each row as it
arrives, so any number of rows goes out in constant memory; ``table`` and ``vertical``
are for reading on a terminal and show at most ``--limit`` rows (default 1,000), saying
on stderr how many matched when that cuts them short (see :mod:`otaudit.cli.rows`).

Record data cannot act on what shows it: ``table`` shows control characters escaped
(:func:`otaudit.textsafety.terminal_text`), ``csv`` is safe to open in a spreadsheet
(:func:`otaudit.textsafety.spreadsheet_cell`: a ``'`` before a cell that starts like a
formula or with ``'``), and ``json``/``jsonl`` hold the exact values (see
:mod:`otaudit.cli.render`).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import click

from otaudit.cli import rows as rows_out
from otaudit.cli.options import Count, store_options, time_bound
from otaudit.cli.reading import reading, record_read
from otaudit.cli.render import error_message
from otaudit.errors import OtauditError
from otaudit.store.search import SEARCH_COLUMNS, SearchFilter

TABLE_ROWS: Final = 1000


def _columns(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> tuple[int, ...] | None:
    """``--columns``: positions in ``SEARCH_COLUMNS``; a name not among them is refused."""
    if value is None:
        return None
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in SEARCH_COLUMNS]
    if unknown or not names:
        raise click.BadParameter(
            f"{', '.join(unknown) or 'nothing'}: choose among {', '.join(SEARCH_COLUMNS)}"
        )
    return tuple(SEARCH_COLUMNS.index(n) for n in names)


@click.command("search")
@store_options
@click.option("--action", "actions", multiple=True, metavar="A", help="audit.action (repeatable).")
@click.option("--actor", "actors", multiple=True, metavar="WHO", help="Actor (repeatable).")
@click.option("--target", "targets", multiple=True, metavar="T", help="Target (repeatable).")
@click.option("--resource-type", "resource_types", multiple=True, metavar="R",
              help="audit.resource_type (repeatable).")  # fmt: skip
@click.option("--result", "results", multiple=True, metavar="R",
              help="Outcome: success, failure, ... (repeatable).")  # fmt: skip
@click.option("--service", "services", multiple=True, metavar="S", help="service.name.")
@click.option("--trace-id", "trace_ids", multiple=True, metavar="HEX", help="Trace id (hex).")
@click.option("--since", metavar="T",
              help="At or after T: RFC 3339, a date, or a duration ago (90d, 12h).")  # fmt: skip
@click.option("--until", metavar="T", help="Before T (same forms as --since).")
@click.option("--limit", type=Count(1),
              help="At most N records (table and vertical: default 1000).")  # fmt: skip
@click.option("--columns", metavar="A,B,...", callback=_columns,
              help="The columns to show, in this order (default: all).")  # fmt: skip
@click.option("--format", "fmt", type=click.Choice(rows_out.FORMATS), default="table",
              show_default=True)  # fmt: skip
@click.option("--wide", is_flag=True, help="Cut no value in a table.")
def search_command(
    data: Path,
    store_url: str | None,
    actions: tuple[str, ...],
    actors: tuple[str, ...],
    targets: tuple[str, ...],
    resource_types: tuple[str, ...],
    results: tuple[str, ...],
    services: tuple[str, ...],
    trace_ids: tuple[str, ...],
    since: str | None,
    until: str | None,
    limit: int | None,
    columns: tuple[int, ...] | None,
    fmt: str,
    wide: bool,
) -> None:
    """Find audit records; columns: seq, timestamp, signal, service, actor, actor_role,
    client_address, action, target, resource_type, result, name, trace_id, span_id."""
    now = time.time_ns()
    where = SearchFilter(
        {
            "action": actions,
            "actor": actors,
            "target": targets,
            "resource_type": resource_types,
            "result": results,
            "service": services,
            "trace_id": tuple(t.lower() for t in trace_ids),
        },
        time_bound(since, "--since", now),
        time_bound(until, "--until", now),
    )
    shown_limit = limit
    if fmt in ("table", "vertical") and limit is None:
        shown_limit = TABLE_ROWS
    text = "search " + where.describe() + (f" --limit {limit}" if limit else "")
    with reading(data, store_url) as store:
        # One row more than shown tells whether the table stops short of the matches.
        fetch = None if shown_limit is None else shown_limit + (limit is None)
        rows: Iterator[tuple[Any, ...]] = store.search(where, limit=fetch)
        try:
            first = list(itertools.islice(rows, 1))  # runs the query
        except OtauditError as exc:
            record_read(data, store_url, "search", text.strip(), ok=False,
                        error=error_message(exc))  # fmt: skip
            raise
        record_read(data, store_url, "search", text.strip(), ok=True)
        everything: Iterator[tuple[Any, ...]] = itertools.chain(first, rows)
        more = False
        if shown_limit is not None and fetch != shown_limit:
            held = list(everything)
            more = len(held) > shown_limit
            everything = iter(held[:shown_limit])
        picked = SEARCH_COLUMNS if columns is None else [SEARCH_COLUMNS[i] for i in columns]
        if columns is not None:
            everything = (tuple(row[i] for i in columns) for row in everything)
        shown = rows_out.write(picked, everything, fmt, wide=wide, noun="record(s)")
        if more:
            matched = store.count(where)
            click.echo(
                f"showing {shown.rows:,} of {matched:,} matching records (a {fmt} stops at "
                f"--limit, default {TABLE_ROWS:,}): --limit N shows more, --format csv or "
                "jsonl writes them all",
                err=True,
            )
    note = rows_out.cut_note(shown)
    if note:
        click.echo(note, err=True)


def register(group: click.Group) -> None:
    """Add this module's commands to the CLI."""
    group.add_command(search_command)
