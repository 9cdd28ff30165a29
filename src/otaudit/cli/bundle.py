"""``otaudit export`` and ``otaudit verify-bundle``: offline evidence bundles.

``export`` exits 0 (bundle written), 1 (the ledger failed a check while
exporting) or 2 (usage, I/O, no checkpoint). ``verify-bundle`` exits 0
(every record proven), 1 (``FAILED:`` naming the seq or the file) or 2
(usage or I/O: no such directory, unreadable file, bad ``--key``).
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from otaudit import bundle, datadir
from otaudit.checkpoint import VerifierKey
from otaudit.cli.main import store_options, time_bound, verification_exits
from otaudit.cli.reading import audited_read
from otaudit.timespec import TIME_HELP as _TIME_HELP


@click.command("export")
@store_options
@click.option("--out", type=click.Path(path_type=Path), required=True, metavar="DIR",
              help="New (or empty) directory to write the bundle to.")  # fmt: skip
@click.option("--since", metavar="T", help=f"Records at or after T: {_TIME_HELP}.")
@click.option("--until", metavar="T", help="Records before T (same forms as --since).")
@click.option("--action", "actions", multiple=True, metavar="A",
              help="Only records with this audit.action (repeat for several).")  # fmt: skip
def export_command(
    data: Path,
    store_url: str | None,
    out: Path,
    since: str | None,
    until: str | None,
    actions: tuple[str, ...],
) -> None:
    """Write an offline evidence bundle, every record proven against the latest checkpoint."""
    now = time.time_ns()
    selection = bundle.Selection(
        time_bound(since, "--since", now),
        time_bound(until, "--until", now),
        tuple(dict.fromkeys(actions)),
        {"since": since, "until": until},
    )
    text = " ".join(
        ["export", "--out", str(out)]
        + [f"--since {since}"] * (since is not None)
        + [f"--until {until}"] * (until is not None)
        + [f"--action {a}" for a in selection.actions]
    )
    with (
        verification_exits("FAILED: the ledger does not verify: "),
        audited_read(data, store_url, "export", text) as (store, outcome),
    ):
        key = datadir.verifier_key(data, store, None)
        report = bundle.export_bundle(store, key, out, selection)
        outcome.rows = report.records
    click.echo(
        f"exported {report.records} records ({report.record_bytes / 1e6:.1f} MB) to {out} in "
        f"{report.seconds:.2f} s ({report.rate:,.0f} records/s), proven against the signed "
        f"checkpoint at tree size {report.tree_size}"
    )
    if report.left_out:
        click.echo(
            f"note: {report.left_out} matching records after that checkpoint were left out "
            "(sealed but not yet signed); export again after the next checkpoint"
        )


@click.command("verify-bundle")
@click.argument("directory", type=click.Path(path_type=Path), metavar="DIR")
@click.option("--key", "key_text", metavar="VKEY",
              help="The log's verifier key (name+id+base64), obtained from the log operator "
                   "(default: the bundle's own verifier.key, with a warning).")  # fmt: skip
def verify_bundle_command(directory: Path, key_text: str | None) -> None:
    """Check an evidence bundle offline: files, signature, inclusion proofs, readable copies."""
    with verification_exits():
        key = VerifierKey.parse(key_text) if key_text is not None else None
        if key is None:
            click.echo(
                "warning: no --key given: the checkpoint is checked with the bundle's own "
                "verifier.key, which whoever made the bundle chose; compare the key printed "
                "below with the one obtained from the log operator out of band",
                err=True,
            )
        report = bundle.verify_bundle(directory, key)
    assert report.key is not None
    click.echo(
        f"OK: {report.records} records ({report.record_bytes / 1e6:.1f} MB) checked in "
        f"{report.seconds:.2f} s, proven against checkpoint of tree size {report.tree_size} "
        f"signed by {report.key.name}+{report.key.key_id.hex()}"
    )
    if key is None:
        click.echo(f"key used (from the bundle, compare it): {report.key}")


def register(group: click.Group) -> None:
    """Add this module's commands to the CLI."""
    group.add_command(export_command)
    group.add_command(verify_bundle_command)
