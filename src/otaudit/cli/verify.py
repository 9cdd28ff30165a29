"""``otaudit verify``: exit 0 intact, 1 altered or inconsistent, 2 usage or I/O error."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TextIO

import click

from otaudit import datadir, signerstate
from otaudit.cli.options import Count, store_options
from otaudit.cli.progress import progress_bar
from otaudit.cli.reading import record_read
from otaudit.cli.render import CheckCommand
from otaudit.errors import VerificationError
from otaudit.keyhistory import history_for
from otaudit.keys import VerifierKey
from otaudit.latesigning import DEFAULT_MAX_DELAY_S, duration_text
from otaudit.smallfile import read_small_file
from otaudit.store.base import Store
from otaudit.timespec import parse_duration
from otaudit.verify import VerifyReport, check_saved_checkpoint, verify_ledger, verify_range


def _summary(report: VerifyReport, what: str) -> str:
    mb = report.record_bytes / 1e6
    return (
        f"OK: {report.records} {what} verified ({mb:.1f} MB) in {report.seconds:.2f} s, "
        f"{report.rate:,.0f} records/s; tree size {report.tree_size}, "
        f"{report.checkpoints} signed checkpoints, latest at size {report.checkpoint_size}"
    )


def _duration(ctx: click.Context, param: click.Parameter, value: str) -> int:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _signer_state(data: Path, store: Store, key: VerifierKey) -> int | None:
    """Check the ledger against the checkpoint the server saved next to its key in ``data``,
    when there is one this user can read; return its tree size."""
    path = signerstate.path_for(data / datadir.KEY_FILE)
    if not os.access(path, os.R_OK):
        return None
    raw = read_small_file(path, "saved checkpoint", signerstate.MAX_FILE_BYTES)
    if raw is None:
        return None
    try:
        return check_saved_checkpoint(store, raw.decode("utf-8", "replace"), key)
    except VerificationError as exc:
        raise VerificationError(
            f"{exc}; checked against {path}, the server's own copy of the latest checkpoint "
            "it signed",
            exc.seq,
            expected=exc.expected,
            computed=exc.computed,
        ) from exc


@click.command("verify", cls=CheckCommand)
@store_options
@click.option("--key", "key_text", metavar="VKEY",
              help="Verifier key (name+id+base64) to check signatures with (default: "
                   "the key pinned by `otaudit key pin`, else the signing key's).")  # fmt: skip
@click.option("--trust-stored-key", is_flag=True,
              help="When nothing above confirms the verifier key the ledger records, use it "
                   "anyway (whoever can write the database can replace it).")  # fmt: skip
@click.option("--checkpoint", "checkpoint_file", type=click.File("r"), metavar="FILE",
              help="A signed checkpoint kept elsewhere earlier: the ledger must still contain "
                   "exactly the tree it signs.")  # fmt: skip
@click.option("--from-seq", type=Count(0), help="Check only records from this seq.")
@click.option("--to-seq", type=Count(0), help="Check only records before this seq.")
@click.option("--max-signing-delay", "max_delay_s", metavar="DURATION",
              default=duration_text(DEFAULT_MAX_DELAY_S), show_default=True, callback=_duration,
              help="Fail when a record stayed unsigned while the server received client "
                   "records this much later (30s, 10m, 1h).")  # fmt: skip
def verify_command(
    data: Path,
    store_url: str | None,
    key_text: str | None,
    trust_stored_key: bool,
    checkpoint_file: TextIO | None,
    from_seq: int | None,
    to_seq: int | None,
    max_delay_s: int,
) -> None:
    """Recompute every leaf, column, tree node and checkpoint of the ledger."""
    partial = from_seq is not None or to_seq is not None
    if from_seq is not None and to_seq is not None and to_seq <= from_seq:
        raise click.BadParameter(
            f"{to_seq} must be above --from-seq {from_seq}: the records checked are those"
            " from --from-seq up to, not including, --to-seq",
            param_hint="--to-seq",
        )
    delay = duration_text(max_delay_s) if max_delay_s != DEFAULT_MAX_DELAY_S else None
    text = " ".join(
        f"--{name} {value}"
        for name, value in (("from-seq", from_seq), ("to-seq", to_seq),
                            ("checkpoint", checkpoint_file and checkpoint_file.name),
                            ("max-signing-delay", delay))
        if value is not None
    ) + (" --trust-stored-key" if trust_stored_key else "")  # fmt: skip
    if store_url is None:
        datadir.check(data, create=False)
    store = datadir.open_store(data, store_url, readonly=True)
    unconfirmed = False
    try:
        log_key = datadir.log_key(data, store, key_text)
        key, unconfirmed = log_key.key, log_key.confirmed_by is None
        if unconfirmed and not trust_stored_key:
            raise VerificationError(datadir.unconfirmed_message(data, key))
        saved = checkpoint_file.read() if checkpoint_file is not None else None
        with progress_bar("verifying records", store.tree_size()) as progress:
            if partial:
                report = verify_range(store, key, from_seq or 0, to_seq, progress=progress)
            else:
                report = verify_ledger(store, key, progress=progress,
                                       max_signing_delay_s=max_delay_s)  # fmt: skip
        saved_size = check_saved_checkpoint(store, saved, key) if saved else None
        signer_size = _signer_state(data, store, key)
        rotations = [r.seq for r in history_for(store, key).rotations]
    except VerificationError as exc:
        failure: VerificationError | None = exc
    else:
        failure = None
    finally:
        store.close()
    # Verifying is a read of the trail, and a failure is what the verification_failed
    # rule alerts on: both are recorded.
    if failure is not None:
        click.echo(f"FAILED: {failure}", err=True)
        record_read(data, store_url, "verify", text, ok=False, error=str(failure))
        sys.exit(1)
    record_read(data, store_url, "verify", text, ok=True, rows=report.records)
    if unconfirmed:
        click.echo(datadir.unconfirmed_warning(key), err=True)
    click.echo(_summary(report, "records in the range" if partial else "records"))
    if rotations:
        click.echo(f"OK: key history of {len(rotations) + 1} keys (rotated at seq "
                   f"{', '.join(map(str, rotations))}, each rotation signed by both keys); "
                   "each checkpoint checked with the key in force at its size")  # fmt: skip
    for kind, verb in (("prune", "pruned"), ("erase", "erased")):
        records, receipts = report.removed(kind)
        if receipts:
            seqs = [str(r.seq) for r in report.receipts if r.kind == kind]
            shown = ", ".join(seqs[:5]) + (", ..." if len(seqs) > 5 else "")
            click.echo(
                f"OK: {records} records {verb} under {receipts} receipts (seq {shown}): their"
                " leaves stay in the tree and each receipt's digest matches"
            )
    if saved_size is not None:
        click.echo(f"OK: the ledger still holds exactly the tree of the saved checkpoint "
                   f"(tree size {saved_size})")  # fmt: skip
    if signer_size is not None:
        click.echo(f"OK: the ledger extends the checkpoint the server saved outside the "
                   f"database (tree size {signer_size})")  # fmt: skip
    if report.uncovered and not partial:
        click.echo(
            f"note: {report.uncovered} records after the latest checkpoint are sealed in the tree "
            "but not yet signed (the server signs within a second while running, and at start)"
        )


def register(group: click.Group) -> None:
    """Add this module's commands to the CLI."""
    group.add_command(verify_command)
