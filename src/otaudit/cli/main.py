"""The ``otaudit`` command group and the options every command shares.

Only this layer exits: library code raises ``OtauditError``; here it becomes
a one-line message on stderr and exit status 2 (``verify`` uses 1 for a
ledger that fails verification).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click

from otaudit import __version__
from otaudit.datadir import DEFAULT_DATA
from otaudit.errors import OtauditError, VerificationError
from otaudit.textsafety import terminal_text
from otaudit.timespec import parse_time

F = TypeVar("F", bound=Callable[..., Any])

EXIT_USAGE = 2


def store_options(func: F) -> F:
    """Add ``--data`` and ``--store`` to a command."""
    func = click.option(
        "--store",
        "store_url",
        metavar="URL",
        envvar="OTAUDIT_STORE",
        help="Ledger store URL (default: the SQLite ledger inside --data).",
    )(func)
    func = click.option(
        "--data",
        type=click.Path(path_type=Path, file_okay=False),
        default=DEFAULT_DATA,
        show_default=True,
        envvar="OTAUDIT_DATA",
        help="Data directory (SQLite ledger and signing key).",
    )(func)
    return func


def time_bound(text: str | None, option: str, now_ns: int) -> int | None:
    """A ``--since``/``--until`` value as UTC nanoseconds (None if not given); a usage
    error naming the option if it is neither RFC 3339, a date, nor a duration ago."""
    if text is None:
        return None
    try:
        return parse_time(text, now_ns)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


def fail(message: str, code: int = EXIT_USAGE) -> None:
    """Print ``otaudit: error: message`` (which may quote record data: control characters
    escaped) and exit."""
    click.echo(terminal_text(f"otaudit: error: {message}"), err=True)
    sys.exit(code)


@contextlib.contextmanager
def verification_exits(failed: str = "FAILED: ") -> Iterator[None]:
    """Inside: a VerificationError prints ``failed`` and the error and exits 1; any other
    OtauditError is a usage or I/O error (exit 2)."""
    try:
        yield
    except VerificationError as exc:
        click.echo(terminal_text(f"{failed}{exc}"), err=True)
        sys.exit(1)
    except OtauditError as exc:
        fail(str(exc))


def handle_errors(func: F) -> F:
    """Turn ``OtauditError`` raised by a command into a message and exit status 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except OtauditError as exc:
            fail(str(exc))

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="otaudit")
@click.option("-v", "--verbose", is_flag=True, help="Log debug details.")
def cli(verbose: bool) -> None:
    """otaudit: a verifiable SOC 2 audit trail from OpenTelemetry traces and logs."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``otaudit`` script."""
    from otaudit.cli import (
        bundle,
        completeness,
        demo,
        detect,
        migrate,
        proofs,
        query,
        sample,
        search,
        serve,
        token,
        verify,
        witness,
    )

    for module in (
        serve,
        token,
        migrate,
        verify,
        query,
        sample,
        search,
        proofs,
        demo,
        bundle,
        witness,
        completeness,
        detect,
    ):
        module.register(cli)
    cli.main(args=argv, prog_name="otaudit")
