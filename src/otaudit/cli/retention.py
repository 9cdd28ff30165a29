"""``otaudit prune`` and ``otaudit erase``: payloads removed under sealed receipts.

Both append their receipts (and ``prune`` its policy record) to the ledger directly;
a running ``serve`` signs them with its next checkpoint. ``prune`` exits 0; ``erase``
exits 0 when every matching record was erased, 1 when holds kept some (naming the
holds), 2 on a usage or configuration error.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from otaudit import access, datadir
from otaudit.cli.options import store_options
from otaudit.ownrecords import DirectAppender
from otaudit.store.base import Store

if TYPE_CHECKING:
    from otaudit.retention.erase import EraseReport
    from otaudit.retention.prune import PruneReport

_FORMATS = ("table", "json")


def _open(data: Path, store_url: str | None) -> Store:
    if store_url is None:  # a mistyped --data must not leave a new ledger behind
        datadir.require_ledger(data)
    return datadir.open_store(data, store_url, readonly=False, migrate=True)


def _archive_options(func: click.decorators.FC) -> click.decorators.FC:
    func = click.option(
        "--s3-endpoint", metavar="URL", help="An S3-compatible endpoint (MinIO, ...) for s3://."
    )(func)
    return click.option(
        "--archive",
        "archive_url",
        metavar="URL",
        help="Copy the records first: file:///DIR or s3://BUCKET/PREFIX (docs/archives.md).",
    )(func)


@click.command("prune")
@store_options
@click.option("--retention", "policy_file", required=True, metavar="FILE",
              type=click.Path(path_type=Path, dir_okay=False),
              help="The retention policy (YAML; docs/retention.md).")  # fmt: skip
@click.option("--allow-short", is_flag=True, help="Accept rules shorter than the policy minimum.")
@click.option("--dry-run", is_flag=True, help="Count what would go; change nothing.")
@_archive_options
@click.option("--batch", type=click.IntRange(1, 100_000), default=2000, show_default=True,
              help="Rows deleted per transaction (appends wait for at most one).")  # fmt: skip
@click.option(
    "--rate",
    type=click.FloatRange(0),
    default=0,
    show_default=True,
    metavar="N",
    help="Rows deleted a second at most, beside a busy server (0: no limit).",
)
@click.option("--format", "fmt", type=click.Choice(_FORMATS), default="table", show_default=True)
def prune_command(
    data: Path,
    store_url: str | None,
    policy_file: Path,
    allow_short: bool,
    dry_run: bool,
    archive_url: str | None,
    s3_endpoint: str | None,
    batch: int,
    rate: float,
    fmt: str,
) -> None:
    """Remove the payloads of records past their retention and under no legal hold (their
    leaves stay: every proof stays valid), under sealed receipts."""
    from otaudit.retention.policy import load_policy
    from otaudit.retention.prune import Archive, prune
    from otaudit.retention.schedule import PAUSE_S

    policy = load_policy(policy_file, allow_short=allow_short)
    store = _open(data, store_url)
    try:
        archive = None
        if archive_url is not None and not dry_run:
            from otaudit.archive import open_target  # the S3 client loads only when used

            key = datadir.log_key(data, store, None).key
            archive = Archive(open_target(archive_url, s3_endpoint), archive_url, key)
        report = prune(
            store,
            policy,
            DirectAppender(store),
            access.os_reader(),
            dry_run=dry_run,
            archive=archive,
            batch=batch,
            pause_s=PAUSE_S,
            rate=rate,
        )
    finally:
        store.close()
    _print_prune(report, fmt)


def _print_prune(report: PruneReport, fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps(report.as_json()))
        return
    verb = "would prune" if report.dry_run else "pruned"
    click.echo(
        f"{verb} {report.pruned} records; {report.held} past retention kept by legal holds;"
        f" {report.archived} archived ({report.seconds:.1f} s)"
    )
    if report.finished:
        click.echo(f"finished an earlier prune: {report.finished} records")
    if report.receipts:
        first, last = report.receipts[0], report.receipts[-1]
        where = f"seq {first}" if first == last else f"seq {first}..{last}"
        click.echo(f"receipts: {len(report.receipts)} ({where})")
    if report.policy_seq is not None:
        click.echo(f"policy recorded at seq {report.policy_seq} (it changed)")
    if report.reclaimed_pages:
        click.echo(f"gave {report.reclaimed_pages} free pages back to the file system")


@click.command("erase")
@store_options
@click.option("--subject", required=True, metavar="VALUE",
              help="Records whose actor, target or an attribute equals VALUE.")  # fmt: skip
@click.option("--reason", required=True, metavar="TEXT",
              help="Why (sealed in the receipt: name the request, not the person).")  # fmt: skip
@click.option("--dry-run", is_flag=True, help="Count what would go; change nothing.")
@_archive_options
@click.option("--format", "fmt", type=click.Choice(_FORMATS), default="table", show_default=True)
def erase_command(
    data: Path,
    store_url: str | None,
    subject: str,
    reason: str,
    dry_run: bool,
    archive_url: str | None,
    s3_endpoint: str | None,
    fmt: str,
) -> None:
    """Erase one subject's records (their leaves stay), refusing those under legal hold."""
    from otaudit.retention.erase import erase, subject_key

    store = _open(data, store_url)
    try:
        target = None
        if archive_url is not None:
            from otaudit.archive import open_target

            target = open_target(archive_url, s3_endpoint)
        report = erase(
            store,
            DirectAppender(store),
            access.os_reader(),
            subject,
            reason,
            key=subject_key(data),
            dry_run=dry_run,
            archive=target,
        )
    finally:
        store.close()
    _print_erase(report, fmt)
    if report.held:
        sys.exit(1)


def _print_erase(report: EraseReport, fmt: str) -> None:
    if fmt == "json":
        out = {
            "erased": report.erased,
            "matched": report.matched,
            "held": report.held,
            "holds": [vars(h) for h in report.holds],
            "receipts": report.receipts,
            "subject_hmac": report.subject_hmac,
            "archives": [
                {
                    "name": s.name,
                    "retain_until": _date(s.retain_until),
                    "mode": s.mode,
                    "legal_hold": s.legal_hold,
                }
                for s in report.archives
            ],
            "dry_run": report.dry_run,
        }
        click.echo(json.dumps(out))
        return
    verb = "would erase" if report.dry_run else "erased"
    click.echo(f"{verb} {report.erased} of {report.matched} records ({report.subject_hmac})")
    if report.receipts:
        click.echo(f"receipts: seq {', '.join(map(str, report.receipts))}")
    for held in report.holds:
        click.echo(
            f"refused: {held.records} records under legal hold {held.hold_id} ({held.name})",
            err=True,
        )
    for segment in report.archives:
        lock = f"locked ({segment.mode}) until {_date(segment.retain_until)}"
        if segment.retain_until is None:
            lock = "not locked: delete it from the archive" if not segment.legal_hold else ""
        hold = ", under legal hold" if segment.legal_hold else ""
        click.echo(f"still archived: {segment.name}: {lock}{hold}", err=True)


def _date(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def register(group: click.Group) -> None:
    """Add this module's commands to the CLI."""
    group.add_command(prune_command)
    group.add_command(erase_command)
