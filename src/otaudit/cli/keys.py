"""``otaudit key show``, ``key pin`` and ``key rotate``: the log's signing identity."""

from __future__ import annotations

from pathlib import Path

import click

from otaudit import access, datadir, rotation
from otaudit.cli.options import store_options
from otaudit.cli.reading import reading
from otaudit.cli.render import CheckCommand
from otaudit.errors import VerificationError
from otaudit.keyhistory import history_for, load_history
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
@click.option("--all", "every", is_flag=True,
              help="List every key of the log's key history, oldest first, with the tree "
                   "sizes it signs and the rotation records between them.")  # fmt: skip
def key_show(data: Path, store_url: str | None, trust_stored_key: bool, every: bool) -> None:
    """Print the log's verifier key in force (signed-note form: name+keyid+base64).

    The key is confirmed by the one pinned by `otaudit key pin`, else by the signing key;
    it must be a key of the ledger's key history (the recorded key and the rotations sealed
    after it, each checked). Exit status 1 if it is not, or if nothing confirms it.
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
        history = history_for(store, key)
        checkpoints = store.checkpoints()
    if not every:
        click.echo(str(history.current))
        return
    sizes = [cp.tree_size for cp in checkpoints]
    for (vkey, first, last), brought in zip(history.spans(), (None, *history.rotations),
                                             strict=True):  # fmt: skip
        # A retired key signs up to its rotation record's seq, and the transition
        # checkpoint just after it (together with the new key).
        top = None if last is None else last + 1
        signed = [n for n in sizes if first <= n and (top is None or n <= top)]
        since = "original key" if brought is None else f"rotation at seq {brought.seq}"
        until = "in force" if last is None else f"retired at seq {last}"
        signs = f"tree sizes {first}.." + ("" if top is None else str(top))
        click.echo(f"{vkey}  {signs}  {len(signed)} checkpoint(s)  {since}, {until}")


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

    The key must be a key of the ledger's key history: the one the ledger records or one
    a sealed rotation brought in (pinning the newest key refuses any history an older,
    retired key could sign). A file that pins another key is never replaced, except by a
    later key of the same history (after `otaudit key rotate`): exit status 1, as for a
    ledger whose key was swapped.
    """
    with reading(data, store_url) as store:
        log_key = datadir.log_key(data, store, None)
        chain = load_history(store).keys
    if key_text is None:
        key = _confirmed(log_key, data, trust_stored_key)
    else:
        key = VerifierKey.parse(key_text)
        if key != log_key.key and key not in chain:
            raise VerificationError(
                f"the ledger records the verifier key {log_key.key}, not {key}: the key in "
                "the database was replaced, or the ledger belongs to another log"
            )
    path = out if out is not None else data / datadir.PIN_FILE
    if out is None and store_url is not None:
        datadir.check(data, create=True)
    written = datadir.pin_key(path, key, chain)
    click.echo(f"pinned {key} in {path}" if written else f"{path} already pins {key}")


@key_group.command("rotate")
@store_options
@click.option("--key-file", type=click.Path(path_type=Path, dir_okay=False),
              help="Signing key file (default: DATA/signing.key).")  # fmt: skip
@click.option("--witness-dir", type=click.Path(path_type=Path, file_okay=False),
              help="The witness directory `serve --witness-dir` writes: the transition "
                   "checkpoint and the rotation record's proof go there too.")  # fmt: skip
def key_rotate(
    data: Path, store_url: str | None, key_file: Path | None, witness_dir: Path | None
) -> None:
    """Replace the log's signing key; run with the server stopped.

    Signs what is pending with the old key, appends a rotation record signed by both keys,
    signs the checkpoint covering it with both, keeps the old key as
    signing.key.retired-<key id> and puts the new one in its place. From then on checkpoints
    are signed by the new key; `verify`, bundles, witnesses and proofs check each checkpoint
    with the key that signed it (`otaudit key show --all`).
    """
    if store_url is None:
        datadir.require_ledger(data)
    store = datadir.open_store(data, store_url, readonly=False)
    try:
        done = rotation.rotate(data, store, access.os_reader(), key_file=key_file,
                               witness_dir=witness_dir)  # fmt: skip
    finally:
        store.close()
    click.echo(f"rotated the signing key at seq {done.seq}: {done.old} -> {done.new}")
    click.echo(f"transition checkpoint at tree size {done.checkpoint.tree_size}, signed by both")
    click.echo(f"new key in {done.key_path}; old key kept in {done.retired_path}")
    click.echo(
        "next: start `otaudit serve`; give the new verifier key to witnesses and auditors "
        "(`otaudit key show --all`), and re-pin it (`otaudit key pin --key NEW`)"
    )


def register(group: click.Group) -> None:
    """Add this module's commands to the CLI."""
    group.add_command(key_group)
