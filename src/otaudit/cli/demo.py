"""``otaudit demo``."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console


@click.command("demo")
@click.option(
    "--keep",
    type=click.Path(path_type=Path, file_okay=False),
    metavar="DIR",
    help="Keep the demo's data directory here instead of a temporary one.",
)
def demo_command(keep: Path | None) -> None:
    """Start a server, send instrumented traffic, verify, and query: the whole story."""
    from otaudit.demo import run_demo  # the SDK and exporters load only for this command

    run_demo(Console(), keep)


def register(group: click.Group) -> None:
    """Add this module's commands to the CLI."""
    group.add_command(demo_command)
