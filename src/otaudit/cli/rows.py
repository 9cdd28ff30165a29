"""Rows of records and results, in the formats every command that prints rows offers.

- ``table``: for a terminal. Each column is as wide as its longest value up to
  :data:`CELL_CHARS` characters; a longer value is cut with ``…`` and a note on stderr
  says how many were cut and how to see them whole (``--wide``, ``--format vertical``).
  On a terminal narrower than the table, the rows are shown one field per line instead
  (psql's ``\\x auto``; ``--wide`` keeps the table); piped, the table keeps its full width
  instead of wrapping at 80 columns.
- ``vertical``: one field per line, a record after another (psql's ``\\x``): nothing is
  cut, for wide records and long values.
- ``csv`` (safe to open in a spreadsheet), ``json``, ``jsonl``: every value exact, written
  as the rows come, so any number of rows goes out in constant memory.

Tables and vertical records show control characters escaped
(:func:`otaudit.textsafety.terminal_text`), and a value is never read as console markup.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TextIO

import orjson
from rich.console import Console
from rich.table import Table
from rich.text import Text

from otaudit.textsafety import spreadsheet_row, terminal_text

FORMATS: Final = ("table", "vertical", "csv", "json", "jsonl")
#: The widest a table column gets unless ``--wide``: a trace id (32) and an RFC 3339
#: timestamp with nanoseconds (30) fit whole.
CELL_CHARS: Final = 32
_ELLIPSIS: Final = "…"


@dataclass(frozen=True)
class Shown:
    """What a rendering printed: rows, and table cells cut to :data:`CELL_CHARS`."""

    rows: int
    cut_cells: int = 0


def shown_text(value: Any) -> str:
    """A value as a table or vertical record shows it: empty for None, escaped, and on one
    line (a newline is written ``\\n``, so record data cannot fake a field or a record)."""
    return "" if value is None else terminal_text(str(value)).replace("\n", "\\n")


def write(
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    fmt: str,
    *,
    wide: bool = False,
    exact: Callable[[Any], Any] = lambda v: v,
    noun: str = "row(s)",
    caps: Mapping[str, int] | None = None,
    out: TextIO | None = None,
) -> Shown:
    """Print ``rows`` (tuples in ``columns`` order) in ``fmt`` (one of :data:`FORMATS`).

    ``exact`` turns a value into what JSON and CSV carry (bytes as base64, say); tables and
    vertical records show ``str`` of that. ``wide`` cuts nothing in a table, which ends
    with its count of ``noun``; ``caps`` lets a column be wider than :data:`CELL_CHARS`
    (an alert's summary, say).
    """
    stream = sys.stdout if out is None else out
    if fmt == "csv":
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(columns)
        count = 0
        for row in rows:
            writer.writerow(spreadsheet_row(map(exact, row)))
            count += 1
        return Shown(count)
    if fmt in ("json", "jsonl"):
        return Shown(_write_json(columns, rows, fmt == "json", exact, stream))
    if fmt == "vertical":
        return Shown(_write_vertical(columns, rows, exact, noun, stream))
    return _write_table(columns, rows, wide, exact, noun, caps or {}, stream)


def _write_json(
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    as_list: bool,
    exact: Callable[[Any], Any],
    out: TextIO,
) -> int:
    count = 0
    if as_list:
        out.write("[")
    for row in rows:
        record = dict(zip(columns, map(exact, row), strict=True))
        line = orjson.dumps(record).decode()
        if as_list:
            out.write(("\n" if count == 0 else ",\n") + line)
        else:
            out.write(line + "\n")
        count += 1
    if as_list:
        out.write("\n]\n" if count else "]\n")
    return count


def _write_vertical(
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    exact: Callable[[Any], Any],
    noun: str,
    out: TextIO,
) -> int:
    width = max((len(c) for c in columns), default=0)
    count = 0
    for row in rows:
        count += 1
        out.write(f"-[ RECORD {count} ]" + "-" * max(4, width - 8) + "\n")
        for name, value in zip(columns, row, strict=True):
            text = shown_text(None if value is None else exact(value))
            out.write(f"{name:<{width}} | {text}\n")
    out.write(f"{count} {noun}\n")
    return count


def _write_table(
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    wide: bool,
    exact: Callable[[Any], Any],
    noun: str,
    caps: Mapping[str, int],
    out: TextIO,
) -> Shown:
    texts = [[shown_text(None if v is None else exact(v)) for v in row] for row in rows]
    widths = [len(c) for c in columns]
    for row_texts in texts:
        for i, text in enumerate(row_texts):
            widths[i] = max(widths[i], len(text))
    if not wide:
        widths = [
            max(len(c), min(w, caps.get(c, CELL_CHARS)))
            for c, w in zip(columns, widths, strict=True)
        ]
    full = sum(widths) + 3 * len(widths) + 1
    console = Console(file=out)
    if console.is_terminal and not wide and full > console.width:
        # As psql's expanded auto mode: a table wider than the terminal is shown a field
        # per line, every value whole.
        count = _write_vertical(columns, texts, lambda v: v, noun, out)
        print(
            f"(the table is {full} columns wide, the terminal {console.width}: shown one"
            " field per line; --wide for the table anyway)",
            file=sys.stderr,
        )
        return Shown(count)
    cut = 0
    for row_texts in texts:
        for i, text in enumerate(row_texts):
            if len(text) > widths[i]:
                row_texts[i] = text[: widths[i] - 1] + _ELLIPSIS
                cut += 1
    table = Table(show_lines=False)
    for name in columns:
        table.add_column(name, no_wrap=True, overflow="ellipsis")
    for row_texts in texts:
        table.add_row(*(Text(t) for t in row_texts))
    if not console.is_terminal or wide:
        console = Console(file=out, width=max(full, 20))
    console.print(table)
    console.print(f"{len(texts)} {noun}", highlight=False)
    return Shown(len(texts), cut)


def cut_note(shown: Shown) -> str | None:
    """What to tell on stderr when a table cut cells, or None."""
    if not shown.cut_cells:
        return None
    return (
        f"{shown.cut_cells} value(s) longer than their column are cut (…); "
        "--wide shows them whole, --format vertical one field per line"
    )
