"""``otaudit verify``: exit 0 intact, 1 altered or inconsistent, 2 usage or I/O error."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from otaudit import datadir
from otaudit.cli.main import fail, store_options
from otaudit.errors import OtauditError, VerificationError
from otaudit.verify import verify_ledger


@click.command("verify")
@store_options
@click.option(
    "--key",
    "key_text",
    metavar="VKEY",
    help="Verifier key (name+id+base64) to check checkpoints with "
    "(default: the key recorded in the ledger).",
)
def verify_command(data: Path, store_url: str | None, key_text: str | None) -> None:
    """Recompute every leaf, column, tree node and checkpoint of the ledger."""
    try:
        datadir.prepare(data, create=False) if store_url is None else None
        store = datadir.open_store(data, store_url, readonly=True)
        try:
            key = datadir.verifier_key(data, store, key_text)
            report = verify_ledger(store, key)
        finally:
            store.close()
    except VerificationError as exc:
        click.echo(f"FAILED: {exc}", err=True)
        sys.exit(1)
    except OtauditError as exc:
        fail(str(exc))
        return
    mb = report.record_bytes / 1e6
    click.echo(
        f"OK: {report.records} records verified ({mb:.1f} MB) in {report.seconds:.2f} s, "
        f"{report.rate:,.0f} records/s; tree size {report.tree_size}, "
        f"{report.checkpoints} signed checkpoints, latest at size {report.checkpoint_size}"
    )
    if report.uncovered:
        click.echo(
            f"note: {report.uncovered} records after the latest checkpoint are sealed in the tree "
            "but not yet signed (the server signs within a second while running, and at start)"
        )


def register(group: click.Group) -> None:
    """Add this module's commands to the CLI."""
    group.add_command(verify_command)
