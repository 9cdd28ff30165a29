"""``otaudit archive list | fetch | restore``: the archives records are kept in outside the
ledger.

``list`` reads an archive's object listing (no ledger needed): each segment's seq range,
records, size and lock. ``fetch`` copies one segment to a local file for
``otaudit verify-bundle``. ``restore`` stores a removed record's row again from the segment
that holds it, once its bytes hash to the leaf the ledger's tree still holds; it is an
administrative action, recorded on the ledger (``otaudit.archive_restore``). Both exit 2
for a bad URL or an archive that cannot be reached; ``restore`` exits 1 when the archived
bytes are not the ledger's (``FAILED:``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from otaudit import access, archive, datadir
from otaudit.cli import rows as rows_out
from otaudit.cli.options import Count, store_options
from otaudit.cli.render import CheckCommand
from otaudit.errors import VerificationError
from otaudit.ownrecords import DirectAppender

_HEADERS = ("segment", "first_seq", "last_seq", "records", "bytes", "mode", "retain_until",
            "legal_hold")  # fmt: skip

s3_endpoint_option = click.option(
    "--s3-endpoint",
    metavar="URL",
    envvar="OTAUDIT_S3_ENDPOINT",
    help="An S3-compatible store's endpoint (MinIO, ...), for s3:// archives (default: AWS).",
)


@click.group("archive")
def archive_group() -> None:
    """Archives (file:///DIR, s3://BUCKET/PREFIX): records kept as evidence bundle segments."""


@archive_group.command("list")
@click.argument("url")
@s3_endpoint_option
@click.option("--format", "fmt", type=click.Choice(rows_out.FORMATS), default="table",
              show_default=True)  # fmt: skip
def archive_list(url: str, s3_endpoint: str | None, fmt: str) -> None:
    """List an archive's segments: seq range, records, size, retention and legal hold."""
    segments = archive.list_segments(archive.open_target(url, s3_endpoint))
    if not segments and fmt in ("table", "vertical"):
        click.echo(f"no segments in {url}")
        return
    rows: list[tuple[Any, ...]] = [
        (s.name, s.first_seq, s.last_seq, s.records, s.size_bytes, s.mode,
         None if s.retain_until is None else s.retain_until.isoformat(),
         "on" if s.legal_hold else "off")
        for s in segments
    ]  # fmt: skip
    rows_out.write(_HEADERS, rows, fmt, wide=True, noun="segment(s)")


@archive_group.command("fetch")
@click.argument("url")
@click.argument("segment")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True,
              metavar="FILE", help="The file to write (new; mode 0600).")  # fmt: skip
@s3_endpoint_option
def archive_fetch(url: str, segment: str, out: Path, s3_endpoint: str | None) -> None:
    """Copy one segment unchanged to a local file, to check offline with
    `otaudit verify-bundle FILE --key VKEY`."""
    size = archive.fetch_segment(archive.open_target(url, s3_endpoint), segment, out)
    click.echo(f"fetched {segment} ({size} bytes) to {out}")


@archive_group.command("restore", cls=CheckCommand, failed="FAILED: ")
@store_options
@click.argument("url")
@click.option("--seq", type=Count(0), required=True, help="The record to store again.")
@s3_endpoint_option
@click.option("--key", "key_text", metavar="VKEY",
              help="The log's verifier key (default: DATA/verifier.key, the signing key's, "
                   "or the one the ledger records when confirmed).")  # fmt: skip
def archive_restore(
    data: Path, store_url: str | None, url: str, seq: int, s3_endpoint: str | None,
    key_text: str | None,
) -> None:  # fmt: skip
    """Store a removed record again from the archive segment that holds it (its bytes must
    hash to the ledger's leaf); the restore is recorded on the ledger."""
    target = archive.open_target(url, s3_endpoint)
    if store_url is None:  # a mistyped --data must not leave a new ledger behind
        datadir.require_ledger(data)
    store = datadir.open_store(data, store_url, readonly=False, migrate=True)
    try:
        log_key = datadir.log_key(data, store, key_text)
        if log_key.confirmed_by is None:
            raise VerificationError(datadir.unconfirmed_message(data, log_key.key))
        recorded = archive.restore(store, log_key.key, target, seq, DirectAppender(store),
                                   access.os_reader())  # fmt: skip
    finally:
        store.close()
    click.echo(f"restored seq {seq} from {url}; the restore is recorded as seq {recorded}")


def register(group: click.Group) -> None:
    """Add this module's commands to the CLI."""
    group.add_command(archive_group)
