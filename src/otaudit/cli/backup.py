"""``otaudit backup``: a verified copy of a SQLite ledger with its keys' public halves.

Exits 0 (copy written and verified), 1 (the copy does not verify; nothing kept) or 2 (usage
or I/O: an unusable ``--out``, a full disk, a PostgreSQL store, no ledger). The backup is a
read of the trail and is recorded like one (kind ``backup``).
"""

from __future__ import annotations

from pathlib import Path

import click

from otaudit import backup, datadir, signerstate
from otaudit.cli.options import store_options
from otaudit.cli.progress import progress_bar
from otaudit.cli.reading import audited_read
from otaudit.cli.render import CheckCommand
from otaudit.errors import ConfigError, VerificationError


@click.command("backup", cls=CheckCommand, failed="FAILED: nothing was kept: ")
@store_options
@click.option("--out", type=click.Path(path_type=Path), required=True, metavar="DIR",
              help="New directory for the copy: created with mode 0700 (files 0600), or an "
                   "empty directory of yours that group and others cannot write to; no "
                   "symbolic link on the path.")  # fmt: skip
@click.option("--key-file", type=click.Path(path_type=Path, dir_okay=False), metavar="FILE",
              help="Where `serve` keeps the signing key, when not in DATA: its saved "
                   "checkpoint FILE.checkpoint is copied (the key is never read).")  # fmt: skip
def backup_command(data: Path, store_url: str | None, out: Path, key_file: Path | None) -> None:
    """Copy a SQLite ledger (also while `serve` writes to it) with its verifier key and the
    server's saved checkpoint, never the signing key, and verify the copy.

    The copy is for reading and checking (`otaudit verify --data DIR`, `sql`, `export`),
    never for serving. PostgreSQL ledgers are backed up with pg_basebackup or pg_dump.
    """
    if store_url is not None and store_url.startswith(("postgresql://", "postgres://")):
        raise ConfigError(backup.POSTGRES_REFUSAL)
    ledger = datadir.sqlite_path(data, store_url)
    with audited_read(data, store_url, "backup", f"backup --out {out}") as (store, outcome):
        log_key = datadir.log_key(data, store, None)
        if log_key.confirmed_by is None:
            raise VerificationError(datadir.unconfirmed_message(data, log_key.key))
        saved = _saved_checkpoint(data, key_file)
        with progress_bar("verifying the copy", store.tree_size()) as progress:
            report = backup.backup_ledger(ledger, log_key.key, saved, out, progress=progress)
        outcome.rows = report.records
    root = report.checkpoint_root
    cp = (
        "no signed checkpoint yet"
        if root is None
        else f"latest checkpoint at tree size {report.checkpoint_size}, root {root.hex()}"
    )
    click.echo(f"backup of {ledger} written to {out} in {report.seconds:.2f} s:")
    click.echo(f"  {datadir.LEDGER_FILE}  {report.ledger_bytes / 1e6:.1f} MB, {report.records} "
               f"records, {report.checkpoints} signed checkpoints, {cp}")  # fmt: skip
    click.echo(f"  {datadir.PIN_FILE}  {report.key}")
    if report.saved_checkpoint_size is not None:
        click.echo(f"  {backup.SAVED_CHECKPOINT_FILE}  the server's saved checkpoint "
                   f"{saved}, tree size {report.saved_checkpoint_size}")  # fmt: skip
    else:
        click.echo(f"  (no saved checkpoint at {saved}: none copied)")
    unsigned = report.records - report.checkpoint_size
    if unsigned:
        click.echo(f"  ({unsigned} records after the latest checkpoint are sealed in the tree "
                   "but were not signed yet when the copy was taken)")  # fmt: skip
    click.echo(f"OK: the copy verifies with {report.key} (confirmed by {log_key.confirmed_by}); "
               "the signing key was not copied")  # fmt: skip
    click.echo(
        f"note: the copy is for reading and checking (`otaudit verify --data {out}`), never for "
        "serving; to restore it, see docs/operations.md, Backups"
    )


def _saved_checkpoint(data: Path, key_file: Path | None) -> Path:
    """Where the server keeps its saved checkpoint: next to ``--key-file``, or in ``data``
    when there is none there (a key in a read-only directory, see datadir.signing_key)."""
    if key_file is not None:
        beside = signerstate.path_for(key_file)
        if beside.exists():
            return beside
    return signerstate.path_for(data / datadir.KEY_FILE)


def register(group: click.Group) -> None:
    """Add this module's commands to the CLI."""
    group.add_command(backup_command)
