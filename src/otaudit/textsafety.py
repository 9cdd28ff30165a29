"""Record data made safe to show: on a terminal, and in CSV meant for a spreadsheet.

Record values are chosen by whoever sent the record, so they may hold bytes that a terminal
or a spreadsheet obeys rather than shows. Every renderer of record data goes through here:

- :func:`terminal_text` for anything printed to a terminal (tables, messages). Control
  characters (C0 but tab and newline, DEL, C1: ESC starts clear-screen, colour and OSC
  sequences), Unicode format characters (bidirectional overrides such as U+202E, zero-width
  characters), line and paragraph separators and lone surrogates are shown as the escape
  Python writes for them (``\\x1b``, ``\\u202e``, ``\\U000e0041``), never passed through.
- :func:`spreadsheet_cell` for CSV cells: a cell a spreadsheet would read as a formula
  (starting with ``=``, ``+``, ``-``, ``@``, tab or carriage return; OWASP "CSV Injection")
  gets a leading ``'``, which spreadsheets take as "this is text" and do not display. A cell
  that starts with ``'`` gets one too, so that the change is reversible: a program reading
  the CSV drops one leading ``'`` from any cell that starts with one. A plain decimal number
  (``-12``, ``-0.5``) is left as it is.

JSON and JSONL outputs do not use this module: JSON escapes control characters itself, and
they stay the exact values.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Final

#: Characters shown escaped on a terminal: C0 but tab and newline, DEL and C1 (Cc);
#: Unicode format characters (Cf, Unicode 15.1: bidi controls, zero-width, tags);
#: surrogates (Cs); line and paragraph separators (Zl, Zp). ``tests/test_output_safety.py``
#: checks this set against :mod:`unicodedata`.
_TERMINAL_UNSAFE: Final = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\xad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2"
    "\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ud800-\udfff\ufeff"
    "\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3"
    "\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f]"
)
#: First characters that make a spreadsheet read a cell as a formula, and the quote itself.
_FORMULA_START: Final = frozenset("=+-@\t\r'")
_NUMBER: Final = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def terminal_text(text: str) -> str:
    """``text`` with every character a terminal would obey rather than show written as its
    escape (``\\x1b``, ``\\u202e``); tab and newline are kept. Other text is unchanged."""
    return _TERMINAL_UNSAFE.sub(_escape, text)


#: The most characters of a client's or operator's text one log line shows.
LOG_TEXT_CHARS: Final = 200


def log_text(text: str) -> str:
    """``text`` as one log line may show it: :func:`terminal_text` with newline and tab
    escaped too (a name holding a newline cannot fake a second line), at most
    :data:`LOG_TEXT_CHARS` characters (then ``...`` says it was cut)."""
    shown = terminal_text(text).replace("\n", "\\n").replace("\t", "\\t")
    return shown if len(shown) <= LOG_TEXT_CHARS else shown[:LOG_TEXT_CHARS] + "..."


def spreadsheet_cell(value: Any) -> Any:
    """A CSV cell a spreadsheet shows as text: ``'`` before a string starting with ``=``,
    ``+``, ``-``, ``@``, tab, carriage return or ``'``, unless it is a plain decimal number.
    Other values (numbers, None, other strings) are returned as they are."""
    if (
        isinstance(value, str)
        and value
        and value[0] in _FORMULA_START
        and not _NUMBER.fullmatch(value)
    ):
        return "'" + value
    return value


def spreadsheet_row(row: Iterable[Any]) -> list[Any]:
    """:func:`spreadsheet_cell` of every cell of ``row``."""
    return [spreadsheet_cell(v) for v in row]
