"""What the commands show: errors as one line on stderr, tables on a terminal, rows in files.

Record data cannot act on what shows it: tables show control characters escaped
(:func:`otaudit.textsafety.terminal_text`), ``csv`` is safe to open in a spreadsheet
(:func:`otaudit.textsafety.spreadsheet_cell`), and ``json``/``jsonl`` hold the exact values.

Errors are rendered here and mapped to exit statuses once, by the ``otaudit`` group
(:mod:`otaudit.cli.main`): an :class:`~otaudit.errors.OtauditError` is
``otaudit: error: <message>`` and exit status 2; a
:class:`~otaudit.errors.VerificationError` raised by a :class:`CheckCommand` (a command
whose answer is the check: ``verify``, ``verify-bundle``, ``export``, ``key``) is its
``failed`` prefix and the message, exit status 1. The library's messages name no
command-line option; :func:`error_message` adds the option a value came from.
"""

from __future__ import annotations

import sys
from typing import Any, Final, NoReturn

import click
import orjson
from rich.console import Console

from otaudit.errors import IndexNotInTree, OtauditError, SizesOutOfOrder
from otaudit.textsafety import terminal_text

#: Exit status of a usage or I/O error, and of every error but a failed check.
EXIT_USAGE: Final = 2
#: Exit status of a check that failed (a ledger that does not verify, a key not confirmed).
EXIT_FAILED: Final = 1
#: The ``click.Context.meta`` key where a :class:`CheckCommand` leaves its ``failed`` prefix.
FAILED_PREFIX: Final = "otaudit.failed_prefix"


def error_message(exc: OtauditError) -> str:
    """The message of ``exc`` as the command line says it: the option a value came from is
    named (``--seq 13 is not in the tree of size 13``)."""
    if isinstance(exc, IndexNotInTree):
        return f"--seq {exc.index} is not in the tree of size {exc.tree_size}"
    if isinstance(exc, SizesOutOfOrder):
        return f"--from {exc.size1} is larger than --to {exc.size2}"
    return str(exc)


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print ``otaudit: error: message`` (which may quote record data: control characters
    escaped) and exit."""
    click.echo(terminal_text(f"otaudit: error: {message}"), err=True)
    sys.exit(code)


def failed(prefix: str, exc: OtauditError) -> NoReturn:
    """Print a failed check (``prefix`` and the error, control characters escaped); exit 1."""
    click.echo(terminal_text(f"{prefix}{error_message(exc)}"), err=True)
    sys.exit(EXIT_FAILED)


class CheckCommand(click.Command):
    """A command whose answer is a check: its VerificationError exits 1, printed after
    ``failed`` (``FAILED: `` unless given); any other error exits 2 as everywhere."""

    def __init__(self, *args: Any, failed: str = "FAILED: ", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.failed = failed

    def invoke(self, ctx: click.Context) -> Any:
        """Leave the ``failed`` prefix where the ``otaudit`` group finds it, then run."""
        ctx.meta[FAILED_PREFIX] = self.failed
        return super().invoke(ctx)


def print_json(document: object) -> None:
    """Print a JSON document, indented by two spaces."""
    click.echo(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())


def terminal() -> Console:
    """A console for tables: the terminal's width, or wide enough for every column in a file."""
    console = Console()
    return console if console.is_terminal else Console(width=250)
