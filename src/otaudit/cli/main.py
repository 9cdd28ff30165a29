"""The ``otaudit`` command group and the options every command shares.

Only this layer exits: library code raises ``OtauditError``; the group turns it
into a one-line message on stderr and exit status 2 (1 for a failed check:
``verify``, ``verify-bundle``, ``export``, ``key``), once for every command.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from otaudit import __version__
from otaudit.cli.render import FAILED_PREFIX, error_message, fail, failed
from otaudit.datadir import DEFAULT_DATA
from otaudit.errors import OtauditError, VerificationError
from otaudit.timespec import parse_time

F = TypeVar("F", bound=Callable[..., Any])


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


class OtauditGroup(click.Group):
    """The ``otaudit`` group: the one place where errors become messages and exit statuses.

    Library code raises :class:`~otaudit.errors.OtauditError`; here it becomes
    ``otaudit: error: <message>`` on stderr and exit status 2, or, for a
    VerificationError of a :class:`~otaudit.cli.render.CheckCommand`, its ``failed``
    prefix and exit status 1 (see :mod:`otaudit.cli.render`).
    """

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; map an OtauditError to its message and exit status."""
        try:
            return super().invoke(ctx)
        except VerificationError as exc:
            prefix = ctx.meta.get(FAILED_PREFIX)
            if prefix is None:
                fail(error_message(exc))
            failed(prefix, exc)
        except OtauditError as exc:
            fail(error_message(exc))


@click.group(
    cls=OtauditGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
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
