"""``otaudit search``: find audit records by who, what, on what, outcome and time.

Results stream in sequence order with a stable column order
(``SEARCH_COLUMNS``): ``csv``, ``json`` and ``jsonl`` write each row as it
arrives, so any number of rows goes out in constant memory; ``table`` is for
reading on a terminal and shows at most ``--limit`` rows (default 1,000).

Record data cannot act on what shows it: ``table`` shows control characters escaped
(:func:`otaudit.textsafety.terminal_text`), ``csv`` is safe to open in a spreadsheet
(:func:`otaudit.textsafety.spreadsheet_cell`: a ``'`` before a cell that starts like a
formula or with ``'``), and ``json``/``jsonl`` hold the exact values (see
:mod:`otaudit.cli.render`).
"""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import click

from otaudit.cli.options import store_options, time_bound
from otaudit.cli.reading import reading, record_read
from otaudit.cli.render import error_message, print_table, terminal, write_rows
from otaudit.errors import OtauditError
from otaudit.store.search import SearchFilter

FORMATS: Final = ("table", "csv", "json", "jsonl")
TABLE_ROWS: Final = 1000


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
@click.option("--limit", type=click.IntRange(1), help="At most N records (table: default 1000).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
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
    fmt: str,
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
    if fmt == "table" and limit is None:
        limit = TABLE_ROWS
    text = "search " + where.describe() + (f" --limit {limit}" if limit else "")
    with reading(data, store_url) as store:
        rows: Iterator[tuple[Any, ...]] = store.search(where, limit=limit)
        try:
            first = list(itertools.islice(rows, 1))  # runs the query
        except OtauditError as exc:
            record_read(data, store_url, "search", text.strip(), ok=False,
                        error=error_message(exc))  # fmt: skip
            raise
        record_read(data, store_url, "search", text.strip(), ok=True)
        everything = itertools.chain(first, rows)
        if fmt == "table":
            print_table(everything, terminal())
        else:
            write_rows(everything, fmt, sys.stdout)


def register(group: click.Group) -> None:
    """Add this module's commands to the CLI."""
    group.add_command(search_command)
