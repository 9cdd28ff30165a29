"""``populations.xlsx``: every control's population, one sheet a control, for the auditor's Excel.

Each sheet is streamed from its control's ``population.csv`` with XlsxWriter in
``constant_memory`` mode, so memory stays flat however many rows there are. Excel holds at
most :data:`MAX_ROWS` rows a sheet and :data:`MAX_CELL_CHARS` characters a cell; a
population over either is refused with a :class:`~otaudit.errors.ConfigError` before any
file is written, never written truncated. Every cell is a string (``write_string``), so a
value that looks like a formula or a number stays the text it was.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

import xlsxwriter

from otaudit.errors import ConfigError

#: Excel's rows a sheet, the header row included.
MAX_ROWS = 1_048_576
#: Excel's characters a cell.
MAX_CELL_CHARS = 32_767
_SHEET_NAME_CHARS = 31
_SHEET_NAME_FORBIDDEN = re.compile(r"[\[\]:*?/\\]")


def sheet_name(control: str, taken: set[str]) -> str:
    """``control`` as an Excel sheet name: at most 31 characters, none of ``[]:*?/\\``.

    Names are unique without regard to case; ``taken`` holds the lower-cased names already
    used and gets this one added.
    """
    base = _SHEET_NAME_FORBIDDEN.sub("_", control).strip("'")[:_SHEET_NAME_CHARS] or "control"
    if base.lower() == "history":  # reserved by Excel
        base += "_"
    name, n = base, 1
    while name.lower() in taken:
        n += 1
        suffix = f"~{n}"
        name = base[: _SHEET_NAME_CHARS - len(suffix)] + suffix
    taken.add(name.lower())
    return name


def _check(control: str, population: Path) -> None:
    """Raise unless Excel can hold ``population`` whole: rows and cell lengths."""
    with population.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        rows = -1  # the header is not a record
        for row in reader:
            rows += 1
            for value in row:
                if len(value) > MAX_CELL_CHARS:
                    raise ConfigError(
                        f"populations.xlsx cannot hold a cell of {len(value):,} characters "
                        f"in {control}'s row {rows} (Excel's limit is {MAX_CELL_CHARS:,} a "
                        "cell); use population.csv"
                    )
    if rows + 1 > MAX_ROWS:
        raise ConfigError(
            f"populations.xlsx cannot hold {control}'s {rows:,} rows (Excel's limit is "
            f"{MAX_ROWS:,} a sheet); use population.csv"
        )


def write_xlsx(path: Path, sheets: Iterable[tuple[str, Path]], created: datetime) -> None:
    """Write ``populations.xlsx`` at ``path``: one sheet per (control, population.csv).

    The CSV's header row comes first; every value is written as a string. ``created`` is
    the workbook's creation time (the pack's build time), so the same populations give the
    same bytes. Raises :class:`~otaudit.errors.ConfigError` if a population does not fit
    a sheet, before anything is written.
    """
    sheets = list(sheets)
    for control, population in sheets:
        _check(control, population)
    workbook = xlsxwriter.Workbook(
        str(path),
        {"constant_memory": True, "strings_to_numbers": False, "strings_to_formulas": False},
    )
    try:
        workbook.set_properties({"created": created, "title": "Populations", "author": "otaudit"})
        taken: set[str] = set()
        for control, population in sheets:
            worksheet = workbook.add_worksheet(sheet_name(control, taken))
            worksheet.freeze_panes(1, 0)
            with population.open(newline="", encoding="utf-8") as f:
                for r, row in enumerate(csv.reader(f)):
                    for c, value in enumerate(row):
                        worksheet.write_string(r, c, value)
    finally:
        workbook.close()
