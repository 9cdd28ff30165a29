"""``otaudit key show`` and ``key pin``, ``otaudit checkpoint`` and ``otaudit prove``."""

from __future__ import annotations

from pathlib import Path

import click

from otaudit import datadir, proofs
from otaudit.cli.options import Count, store_options
from otaudit.cli.reading import audited_read, reading
from otaudit.cli.render import CheckCommand, print_json
from otaudit.errors import VerificationError
from otaudit.keys import SigningKey, VerifierKey


@click.group("key")
def key_group() -> None:
    """The log's signing identity."""


_TRUST_HELP = (
    "When neither a pinned key nor the signing key confirms the verifier key the "
    "ledger records, take it anyway (whoever can write the database can replace it)."
)


def _confirmed(log_key: datadir.LogKey, data: Path, trust_stored_key: bool) -> VerifierKey:
    """The key, if something confirms it or the user takes the ledger's word (said on stderr)."""
    if log_key.confirmed_by is None:
        if not trust_stored_key:
            raise VerificationError(datadir.unconfirmed_message(data, log_key.key))
        click.echo(datadir.unconfirmed_warning(log_key.key), err=True)
    return log_key.key


@key_group.command("show", cls=CheckCommand, failed="otaudit: error: ")
@store_options
@click.option("--trust-stored-key", is_flag=True, help=_TRUST_HELP)
def key_show(data: Path, store_url: str | None, trust_stored_key: bool) -> None:
    """Print the log's verifier key (signed-note form: name+keyid+base64).

    The key is the one pinned by `otaudit key pin`, else the signing key's; the key the
    ledger records must be the same. Exit status 1 if it is not, or if nothing confirms it.
    The data directory of a node whose ledger is in PostgreSQL holds only the signing key:
    without --store, its verifier key is printed (checked against the ledger with --store).
    """
    signing = data / datadir.KEY_FILE
    if store_url is None and not (data / datadir.LEDGER_FILE).exists() and signing.exists():
        click.echo(
            f"otaudit: {data} holds no ledger, only the signing key {signing}: its verifier "
            "key follows; pass --store to check it against the ledger it signs",
            err=True,
        )
        click.echo(str(SigningKey.load(signing).verifier()))
        return
    with reading(data, store_url) as store:
        key = _confirmed(datadir.log_key(data, store, None), data, trust_stored_key)
    click.echo(str(key))


@key_group.command("pin", cls=CheckCommand, failed="otaudit: error: ")
@store_options
@click.option("--key", "key_text", metavar="VKEY",
              help="The verifier key to pin, as obtained from the log's operator (default: "
                   "the signing key's).")  # fmt: skip
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="FILE",
    help="Write the pin here (default: DATA/verifier.key, which later commands use).",
)
@click.option("--trust-stored-key", is_flag=True, help=_TRUST_HELP)
def key_pin(
    data: Path, store_url: str | None, key_text: str | None, out: Path | None,
    trust_stored_key: bool,
) -> None:  # fmt: skip
    """Write the log's verifier key to a file that verify and key show then trust.

    The key must be the one the ledger records. A file that pins another key is never
    replaced: exit status 1, as for a ledger whose key was swapped.
    """
    with reading(data, store_url) as store:
        log_key = datadir.log_key(data, store, None)
    if key_text is None:
        key = _confirmed(log_key, data, trust_stored_key)
    else:
        key = VerifierKey.parse(key_text)
        if key != log_key.key:
            raise VerificationError(
                f"the ledger records the verifier key {log_key.key}, not {key}: the key in "
                "the database was replaced, or the ledger belongs to another log"
            )
    path = out if out is not None else data / datadir.PIN_FILE
    if out is None and store_url is not None:
        datadir.check(data, create=True)
    written = datadir.pin_key(path, key)
    click.echo(f"pinned {key} in {path}" if written else f"{path} already pins {key}")


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
    for command in (key_group, checkpoint_command, prove_group):
        group.add_command(command)
