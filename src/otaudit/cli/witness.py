"""``otaudit witness``: cosign a log's checkpoints, refusing rollbacks and forks.

Exit status: 0 cosigned (or nothing to do); 1 refused (unknown log, bad signature, rollback,
fork, bad proof, a note over the size limits; stderr starts with ``REFUSED:`` and the state
is unchanged); 2 usage or I/O error (also: an input that is not a regular file, or larger than
its limit). See c2sp.org/tlog-witness and c2sp.org/tlog-cosignature.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import click

from otaudit.errors import ConfigError
from otaudit.keys import VerifierKey
from otaudit.smallfile import read_small_file
from otaudit.witness import (
    MAX_NOTE_BYTES,
    MAX_PROOF_BYTES,
    ConsistencyProof,
    Refused,
    RotationProof,
    Witness,
)


def _refused(exc: Refused) -> NoReturn:
    click.echo(f"REFUSED: {exc}", err=True)
    sys.exit(1)


def _read(path: Path, what: str, limit: int) -> bytes:
    """A regular file of at most ``limit`` bytes, or that much of stdin for ``-``."""
    if str(path) == "-":
        data = sys.stdin.buffer.read(limit + 1)
        if len(data) > limit:
            raise ConfigError(f"{what} on standard input is larger than {limit} bytes")
        return data
    data = read_small_file(path, what, limit)
    if data is None:
        raise ConfigError(f"{what} {path} does not exist")
    return data


def _dropped_notice(dropped: tuple[str, ...]) -> str:
    if not dropped:
        return ""
    names = ", ".join(dropped[:5]) + (f" and {len(dropped) - 5} more" if len(dropped) > 5 else "")
    return (
        f"dropped {len(dropped)} signature line(s) this witness cannot verify (keys it does "
        f"not know): {names}"
    )


_state_option = click.option(
    "--state",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    metavar="DIR",
    help="Witness state directory: its key, the trusted logs, the last accepted checkpoints.",
)


@click.group("witness")
def witness_group() -> None:
    """Witness a log: cosign its checkpoints only while they stay consistent."""


@witness_group.command("init")
@_state_option
@click.option("--name", required=True, help="The witness name, e.g. witness.example.com/w1.")
def init_command(state: Path, name: str) -> None:
    """Create a witness key and print its verifier key (cosignature/v1, type 0x04)."""
    click.echo(str(Witness.init(state, name).key.verifier()))


@witness_group.command("key")
@_state_option
def key_command(state: Path) -> None:
    """Print the witness's verifier key (name+id+base64), for whoever checks cosignatures."""
    click.echo(str(Witness(state).key.verifier()))


@witness_group.command("add-log")
@_state_option
@click.option(
    "--log-key",
    required=True,
    metavar="VKEY",
    help="The log's verifier key (`otaudit key show`); its name is the log's origin.",
)
def add_log_command(state: Path, log_key: str) -> None:
    """Trust a log: cosign its checkpoints from now on."""
    key = VerifierKey.parse(log_key)
    if Witness(state).add_log(key):
        click.echo(f"trusting log {key.name} ({key})")
    else:
        click.echo(f"log {key.name} was already trusted with this key")


@witness_group.command("cosign")
@_state_option
@click.argument(
    "checkpoint_file",
    type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
    metavar="CHECKPOINT_FILE",
)
@click.option(
    "--proof",
    "proof_file",
    type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
    metavar="PROOF_JSON",
    help="Consistency proof from the last size this witness accepted "
    "(JSON with size1, size2, hashes, as `otaudit prove consistency` prints).",
)
@click.option(
    "--rotation",
    "rotation_file",
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="ROTATION_JSON",
    help="For the transition checkpoint of a key rotation: the rotation record and its "
    "inclusion proof (rotation.<size>, written by `otaudit key rotate --witness-dir`); "
    "the witness then trusts the log's new key.",
)
def cosign_command(
    state: Path, checkpoint_file: Path, proof_file: Path | None, rotation_file: Path | None
) -> None:
    """Check a signed checkpoint and print it with this witness's cosignature appended.

    The output keeps the log's signature lines; lines of keys this witness does not know
    (other witnesses' cosignatures) are dropped, and stderr says which.
    """
    witness = Witness(state)
    note = _read(checkpoint_file, "checkpoint", MAX_NOTE_BYTES)
    proof_text = None
    if proof_file is not None:
        proof_text = _read(proof_file, "consistency proof", MAX_PROOF_BYTES)
    try:
        proof = ConsistencyProof.parse(proof_text) if proof_text is not None else None
        rotation = None
        if rotation_file is not None:
            rotation_text = _read(rotation_file, "key rotation proof", MAX_PROOF_BYTES)
            rotation = RotationProof.parse(rotation_text)
        done = witness.witness(note, proof, rotation=rotation)
    except Refused as exc:
        _refused(exc)
    click.echo(done.note, nl=False)
    if done.dropped:
        click.echo(_dropped_notice(done.dropped), err=True)


@witness_group.command("run")
@_state_option
@click.option(
    "--from-dir",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    metavar="WITNESS_DIR",
    help="A directory written by `otaudit serve --witness-dir`.",
)
def run_command(state: Path, from_dir: Path) -> None:
    """Cosign every new checkpoint.<size> of a witness directory, in size order.

    Writes cosigned.<size> next to each; checkpoints already cosigned are skipped.
    """
    count = 0
    try:
        for size, path, dropped in Witness(state).run(from_dir):
            click.echo(f"cosigned tree size {size}: {path}")
            if dropped:
                click.echo(f"tree size {size}: {_dropped_notice(dropped)}", err=True)
            count += 1
    except Refused as exc:
        _refused(exc)
    click.echo(f"{count} checkpoint(s) cosigned" if count else "nothing new to cosign")


def register(group: click.Group) -> None:
    """Add this module's commands to the CLI."""
    group.add_command(witness_group)
