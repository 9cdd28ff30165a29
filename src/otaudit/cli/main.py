"""The ``otaudit`` command group: every command module registered on it.

The command modules import :mod:`otaudit.cli.options` and :mod:`otaudit.cli.render`,
never this module.

Only this layer exits: library code raises ``OtauditError``; the group turns it
into a one-line message on stderr and exit status 2 (1 for a failed check:
``verify``, ``verify-bundle``, ``export``, ``key``), once for every command.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Final

import click

from otaudit import __version__
from otaudit.cli import (
    alerts,
    archive,
    backup,
    bundle,
    completeness,
    config,
    demo,
    detect,
    evidence,
    holds,
    keys,
    migrate,
    proofs,
    query,
    retention,
    rules,
    sample,
    search,
    serve,
    status,
    token,
    verify,
    witness,
)
from otaudit.cli.render import FAILED_PREFIX, error_message, fail, failed
from otaudit.errors import OtauditError, VerificationError

#: The exit status after Ctrl-C, as shells report a process ended by SIGINT.
INTERRUPTED: Final = 130


class OtauditGroup(click.Group):
    """The ``otaudit`` group: the one place where errors become messages and exit statuses.

    Library code raises :class:`~otaudit.errors.OtauditError`; here it becomes
    ``otaudit: error: <message>`` on stderr and exit status 2, or, for a
    VerificationError of a :class:`~otaudit.cli.render.CheckCommand`, its ``failed``
    prefix and exit status 1 (see :mod:`otaudit.cli.render`). Ctrl-C exits 130.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Take ``--config FILE`` wherever it is; its settings become the defaults of
        every command (:mod:`otaudit.cli.config`)."""
        given, rest = config.take_config_option(args)
        path = config.config_path(given)
        if path is not None:
            try:
                loaded = config.load(path, self)
            except OtauditError as exc:
                fail(error_message(exc))
            ctx.default_map = loaded.default_map
            ctx.meta[config.META_KEY] = loaded
        return super().parse_args(ctx, rest)

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
        except KeyboardInterrupt:
            # Not 1, which says "altered" for the commands that check: 128 + SIGINT.
            click.echo("otaudit: interrupted", err=True)
            sys.exit(INTERRUPTED)


@click.group(
    cls=OtauditGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="otaudit")
@click.option("-v", "--verbose", is_flag=True, help="Log debug details.")
@click.option(
    "--config",
    "config_file",
    metavar="FILE",
    help="A TOML file of option values for every command (also after the command's name,"
    " or OTAUDIT_CONFIG); the command line wins. See `otaudit config show`.",
)
def cli(verbose: bool, config_file: str | None) -> None:
    """otaudit: a verifiable SOC 2 audit trail from OpenTelemetry traces and logs."""
    del config_file  # read before any command runs: OtauditGroup.parse_args
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


for _module in (
    serve,
    token,
    holds,
    migrate,
    verify,
    query,
    sample,
    search,
    proofs,
    keys,
    demo,
    bundle,
    backup,
    witness,
    completeness,
    detect,
    alerts,
    rules,
    retention,
    status,
    config,
    archive,
    evidence,
):
    _module.register(cli)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``otaudit`` script."""
    cli.main(args=argv, prog_name="otaudit")
