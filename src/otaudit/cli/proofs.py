"""``otaudit checkpoint`` and ``otaudit prove``."""

from __future__ import annotations

from pathlib import Path

import click

from otaudit import proofs
from otaudit.cli.options import Count, store_options
from otaudit.cli.reading import audited_read, reading
from otaudit.cli.render import print_json


@click.command("checkpoint")
@store_options
@click.option("--size", type=Count(0), help="A signed tree size (default: the latest).")
def checkpoint_command(data: Path, store_url: str | None, size: int | None) -> None:
    """Print a signed checkpoint (C2SP tlog-checkpoint), exactly as signed."""
    with reading(data, store_url) as store:
        click.echo(proofs.checkpoint_at(store, size).note, nl=False)


@click.group("prove")
def prove_group() -> None:
    """RFC 9162 proofs anchored to signed checkpoints, as JSON."""


@prove_group.command("inclusion")
@store_options
@click.option("--seq", type=Count(0), required=True, help="The record's sequence number.")
@click.option("--size", type=Count(0), help="Signed tree size (default: the latest).")
def prove_inclusion(data: Path, store_url: str | None, seq: int, size: int | None) -> None:
    """Prove that record SEQ is in the signed tree (RFC 9162 §2.1.3)."""
    text = f"prove inclusion --seq {seq}" + (f" --size {size}" if size is not None else "")
    with audited_read(data, store_url, "prove", text) as (store, outcome):
        document = proofs.inclusion(store, seq, size)
        outcome.rows = 1
    print_json(document)


@prove_group.command("consistency")
@store_options
@click.option("--from", "size1", type=Count(0), required=True, help="Older signed size.")
@click.option("--to", "size2", type=Count(0), help="Newer signed size (default: latest).")
def prove_consistency(data: Path, store_url: str | None, size1: int, size2: int | None) -> None:
    """Prove that the newer signed tree extends the older one (RFC 9162 §2.1.4)."""
    text = f"prove consistency --from {size1}" + (f" --to {size2}" if size2 is not None else "")
    with audited_read(data, store_url, "prove", text) as (store, _):
        document = proofs.consistency(store, size1, size2)
    print_json(document)


def register(group: click.Group) -> None:
    """Add this module's commands to the CLI."""
    for command in (checkpoint_command, prove_group):
        group.add_command(command)
