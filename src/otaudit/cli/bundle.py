"""``otaudit export`` and ``otaudit verify-bundle``: offline evidence bundles.

``export`` exits 0 (bundle written), 1 (the ledger failed a check while
exporting) or 2 (usage, I/O, no checkpoint). It signs the manifest when the
log's signing key is readable, and says so when it is not. ``verify-bundle``
exits 0 (every record proven), 1 (``FAILED:`` naming the seq or the file) or
2 (usage or I/O: no such directory, unreadable file, bad ``--key``); after
``OK:`` it says what the bundle proved and what it did not. It takes a bundle directory or
a packed bundle (``.tar.gz``, an archive segment).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import click

from otaudit import bundle, datadir
from otaudit.cli.options import store_options, time_bound
from otaudit.cli.progress import progress_bar
from otaudit.cli.reading import audited_read
from otaudit.cli.render import CheckCommand
from otaudit.errors import ConfigError, VerificationError
from otaudit.keys import SigningKey, VerifierKey
from otaudit.timespec import TIME_HELP as _TIME_HELP


@click.command("export", cls=CheckCommand, failed="FAILED: the ledger does not verify: ")
@store_options
@click.option("--out", type=click.Path(path_type=Path), required=True, metavar="DIR",
              help="Directory to write the bundle to: created with mode 0700 (files 0600), "
                   "or an empty directory of yours that group and others cannot write to; "
                   "no symbolic link on the path.")  # fmt: skip
@click.option("--since", metavar="T", help=f"Records at or after T: {_TIME_HELP}.")
@click.option("--until", metavar="T", help="Records before T (same forms as --since).")
@click.option("--action", "actions", multiple=True, metavar="A",
              help="Only records with this audit.action (repeat for several).")  # fmt: skip
@click.option("--key-file", type=click.Path(path_type=Path, dir_okay=False), metavar="FILE",
              help="The log's signing key, to sign the manifest with (default: DATA/signing.key "
                   "when readable; without it the manifest is not signed).")  # fmt: skip
@click.option("--trust-stored-key", is_flag=True,
              help="Put the verifier key the ledger records in the bundle although no --key, "
                   "pinned key or readable signing key confirms it.")  # fmt: skip
def export_command(
    data: Path,
    store_url: str | None,
    out: Path,
    since: str | None,
    until: str | None,
    actions: tuple[str, ...],
    key_file: Path | None,
    trust_stored_key: bool,
) -> None:
    """Write an offline evidence bundle, every record proven against the latest checkpoint
    and the manifest signed with the log's key."""
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
    with audited_read(data, store_url, "export", text) as (store, outcome):
        log_key = datadir.log_key(data, store, None)
        key = log_key.key
        if log_key.confirmed_by is None and not trust_stored_key:
            raise VerificationError(datadir.unconfirmed_message(data, key))
        signer = _manifest_signer(key_file or data / datadir.KEY_FILE, key_file is not None)
        latest = store.latest_checkpoint()
        signed = 0 if latest is None else latest.tree_size
        total = signed if selection.everything else None  # a selection's count is not known
        with progress_bar("exporting records", total, work=signed) as progress:
            report = bundle.export_bundle(store, key, out, selection, signer, progress=progress)
        outcome.rows = report.records
    click.echo(
        f"exported {report.records} records ({report.record_bytes / 1e6:.1f} MB) to {out} in "
        f"{report.seconds:.2f} s ({report.rate:,.0f} records/s), proven against the signed "
        f"checkpoint at tree size {report.tree_size}"
    )
    if signer is not None:
        click.echo(f"manifest signed with the log's key {signer.name}+{signer.key_id.hex()}")
    else:
        click.echo(
            f"note: the manifest is not signed ({key_file or data / datadir.KEY_FILE} is not "
            "readable here): verify-bundle proves each record, but not the selection or that "
            "no matching record was left out; export where the signing key is, or pass "
            "--key-file"
        )
    if report.left_out:
        click.echo(
            f"note: {report.left_out} matching records after that checkpoint were left out "
            "(sealed but not yet signed); export again after the next checkpoint"
        )


def _manifest_signer(path: Path, given: bool) -> SigningKey | None:
    """The signing key at ``path``, or None when it is absent or not readable by this user
    (unless ``--key-file`` named it). A key file others may read is refused, as everywhere."""
    if not given and not os.access(path, os.R_OK):
        return None
    if path.exists() and not path.is_file():  # a FIFO would block the key's reading
        raise ConfigError(f"key file {path} is not a regular file")
    return SigningKey.load(path)


@click.command("verify-bundle", cls=CheckCommand)
@click.argument("directory", type=click.Path(path_type=Path), metavar="DIR|FILE.tar.gz")
@click.option("--key", "key_text", metavar="VKEY",
              help="The log's verifier key (name+id+base64), obtained from the log operator "
                   "(default: the bundle's own verifier.key, with a warning).")  # fmt: skip
@click.option("--require-signed-manifest", is_flag=True,
              help="Fail when the manifest is not signed (no manifest.sig), rather than say "
                   "that the selection and completeness are not proven.")  # fmt: skip
def verify_bundle_command(
    directory: Path, key_text: str | None, require_signed_manifest: bool
) -> None:
    """Check an evidence bundle offline: files, signatures, inclusion proofs, readable copies;
    then say what it proved and what it did not. A packed bundle (an archive segment,
    .tar.gz) is unpacked into a private temporary directory and checked there."""
    key = VerifierKey.parse(key_text) if key_text is not None else None
    if key is None:
        click.echo(
            "warning: no --key given: the checkpoint is checked with the bundle's own "
            "verifier.key, which whoever made the bundle chose; compare the key printed "
            "below with the one obtained from the log operator out of band",
            err=True,
        )
    packed = directory.is_file()
    records = None if packed else bundle.stated_records(directory)
    checks = None if records is None else 2 * records  # each record: its proof, its copies
    verify = bundle.verify_packed if packed else bundle.verify_bundle
    with progress_bar("checking records", checks) as progress:
        report = verify(directory, key, progress=progress,
                        require_signed_manifest=require_signed_manifest)  # fmt: skip
    assert report.key is not None
    click.echo(
        f"OK: {report.records} records ({report.record_bytes / 1e6:.1f} MB) checked in "
        f"{report.seconds:.2f} s, proven against checkpoint of tree size {report.tree_size} "
        f"signed by {report.key.name}+{report.key.key_id.hex()}"
    )
    for line in proven(report):
        click.echo(line)
    if key is None:
        click.echo(f"key used (from the bundle, compare it): {report.key}")


def proven(report: bundle.Report) -> tuple[str, str]:
    """What a verified bundle proved, and what it did not: two lines."""
    size, selection = report.tree_size, report.selection.describe()
    did = "proven: each record is in the log, unaltered, under that signed checkpoint"
    if report.complete:
        did += f", and the bundle holds all {size} records of the log up to it (complete)"
    if report.manifest_signed:
        did += f"; the selection ({selection}) is the one the exporter signed with the log's key"
    if report.complete:
        not_done = f"not proven: anything about records sealed after tree size {size}"
        if not report.manifest_signed:
            not_done += f"; the manifest is not signed (no {bundle.MANIFEST_SIG})"
    elif report.manifest_signed:
        not_done = (
            "not proven: that no record matching the selection was left out (the exporter's "
            "signed word, not a proof; a bundle of every record proves it)"
        )
    else:
        not_done = (
            f"NOT proven: the selection ({selection}) or that no matching record was left out: "
            f"the manifest is not signed (no {bundle.MANIFEST_SIG}), so records may have been "
            "removed and the selection changed after export"
        )
    return did, not_done


def register(group: click.Group) -> None:
    """Add this module's commands to the CLI."""
    group.add_command(export_command)
    group.add_command(verify_bundle_command)
