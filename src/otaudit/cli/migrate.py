"""``otaudit migrate``: bring a ledger's schema to the version this otaudit needs."""

from __future__ import annotations

from pathlib import Path

import click

from otaudit import datadir
from otaudit.cli.options import store_options
from otaudit.cli.progress import progress_bar
from otaudit.errors import ConfigError
from otaudit.store.sqlite import SQLiteStore


@click.command("migrate")
@store_options
@click.option("--dry-run", is_flag=True, help="List the pending migrations; change nothing.")
@click.option("--vacuum", is_flag=True,
              help="SQLite: rewrite a ledger created before retention existed so that pruning "
                   "gives disk space back (offline; needs as much free space again).")  # fmt: skip
def migrate_command(data: Path, store_url: str | None, dry_run: bool, vacuum: bool) -> None:
    """Apply pending schema migrations (each in its own transaction).

    `otaudit serve` applies migrations that are safe while the ledger is in use
    by itself; run this for the others, with every otaudit process stopped.
    """
    if store_url is None:
        datadir.check(data, create=True)
    store = datadir.open_store(data, store_url, readonly=False, migrate=False)
    try:
        current = store.schema_version()
        pending = [m for m in store.migrations if m.version > current]
        if dry_run:
            for m in pending:
                click.echo(f"pending: {m.version} {m.description}")
            click.echo(f"schema version {current}; {len(pending)} migration(s) pending")
            return
        # A migration can rewrite every row of a large ledger: n of m on a terminal.
        with progress_bar("applying migrations", len(pending), bar_from=1) as progress:
            applied = store.migrate(online_only=False, progress=progress)
        for m in applied:
            click.echo(f"applied: {m.version} {m.description}")
        click.echo(f"schema version {store.schema_version()} (current)")
        if vacuum:
            if not isinstance(store, SQLiteStore):
                raise ConfigError("--vacuum is for the SQLite store (PostgreSQL: autovacuum)")
            before, after = store.rewrite_reclaiming()
            click.echo(f"rewrote the ledger: {before:,} -> {after:,} bytes; pruning now gives"
                       " disk space back")  # fmt: skip
    finally:
        store.close()


def register(group: click.Group) -> None:
    """Add this module's commands to the CLI."""
    group.add_command(migrate_command)
