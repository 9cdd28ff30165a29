"""Key rotation: ``otaudit key rotate`` and the ledger's key history.

A rotation record, signed by both keys, hands over from the old key to the new one at its
seq; checkpoints are checked with the key in force at their size (docs/operations.md, "Key
rotation"). The first test runs the real server before and after a rotation; the others
build the ledger in this process (tests/rotated.py) and change one thing each. Bundles,
proofs and witnesses across a rotation: tests/test_key_rotation_follow.py.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from conftest import STORE_KINDS, new_store_url
from minilog import run_cli, sealed_ledger
from otaudit import datadir
from otaudit.checkpoint import open_checkpoint
from otaudit.checkpointer import Checkpointer
from otaudit.errors import ConfigError, VerificationError
from otaudit.keyhistory import add_signature, load_history, rotation_note, statement
from otaudit.keys import SigningKey, VerifierKey
from otaudit.note import sign_note
from otaudit.ownrecords import DirectAppender, append_one
from otaudit.rotation import RETIRED_SUFFIX, rotate, rotation_entry
from otaudit.verify import verify_ledger
from otaudit.witness import (
    WitnessVerifier,
    open_cosigned,
)
from rotated import READER, append_records, grow, rotated
from sealing import sign
from support import Server, audit_request, otaudit, post


def test_rotate_between_two_runs_of_the_server_and_a_witness_follows(tmp_path: Path) -> None:
    data, wdir, state = tmp_path / "data", tmp_path / "witness-dir", tmp_path / "state"
    server = Server(data, extra_args=["--witness-dir", str(wdir)]).start()
    try:
        assert post(server, audit_request(6)).status_code == 200
        time.sleep(0.3)
    finally:
        assert server.stop() == 0
    old = SigningKey.load(data / "signing.key").verifier()
    for args in (
        ["init", "--name", "w.example/w1"],
        ["add-log", "--log-key", str(old)],
        ["run", "--from-dir", str(wdir)],
    ):
        assert otaudit("witness", *args, "--state", str(state)).returncode == 0

    rotated = otaudit("key", "rotate", "--data", str(data), "--witness-dir", str(wdir))
    assert rotated.returncode == 0, rotated.stderr
    new = SigningKey.load(data / "signing.key").verifier()
    assert new != old and new.name == old.name
    retired = data / f"signing.key{RETIRED_SUFFIX}{old.key_id.hex()}"
    assert SigningKey.load(retired).verifier() == old
    assert retired.stat().st_mode & 0o777 == 0o600

    server = Server(data, extra_args=["--witness-dir", str(wdir)]).start()
    try:
        assert post(server, audit_request(5)).status_code == 200
        time.sleep(0.3)
    finally:
        assert server.stop() == 0
    verified = otaudit("verify", "--data", str(data))
    assert verified.returncode == 0, verified.stderr
    assert otaudit("key", "show", "--data", str(data)).stdout == f"{new}\n"

    # Checkpoints up to the rotation record are the old key's, later ones the new key's, and
    # the transition checkpoint (its seq + 1) verifies under either.
    history = load_history(datadir.open_store(data, None, readonly=True))
    (rotation,) = history.rotations
    store = datadir.open_store(data, None, readonly=True)
    try:
        for cp in store.checkpoints():
            if cp.tree_size <= rotation.seq:
                open_checkpoint(cp.note, old)
                with pytest.raises(VerificationError, match="no signature by"):
                    open_checkpoint(cp.note, new)
            elif cp.tree_size == rotation.first_size:
                open_checkpoint(cp.note, old)
                open_checkpoint(cp.note, new)
            else:
                open_checkpoint(cp.note, new)
                with pytest.raises(VerificationError, match="no signature by"):
                    open_checkpoint(cp.note, old)
        latest = store.latest_checkpoint()
    finally:
        store.close()
    assert latest is not None and latest.tree_size > rotation.first_size

    # The witness that trusted the old key cosigns the transition and follows the rotation.
    run = otaudit("witness", "run", "--state", str(state), "--from-dir", str(wdir))
    assert run.returncode == 0, run.stderr
    witness_key = otaudit("witness", "key", "--state", str(state)).stdout.strip()
    last = (wdir / f"cosigned.{latest.tree_size}").read_text()
    assert open_cosigned(last, WitnessVerifier.parse(witness_key), log_key=new)
    assert (wdir / f"rotation.{rotation.first_size}").exists()


def test_verify_checks_each_checkpoint_with_the_key_in_force(tmp_path: Path) -> None:
    data = tmp_path / "data"
    old, new, seq = rotated(data)
    for key in ([], ["--key", str(old)], ["--key", str(new)]):
        result = run_cli("verify", "--data", data, *key)
        assert result.exit_code == 0, result.output + result.stderr
        assert f"OK: key history of 2 keys (rotated at seq {seq}, each" in result.output
    checkpoints = run_cli("checkpoint", "--data", data, "--size", str(seq + 1)).output
    open_checkpoint(checkpoints, old)
    open_checkpoint(checkpoints, new)


def test_a_checkpoint_signed_by_the_retired_key_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    old, new, _ = rotated(data)
    retired = SigningKey.load(data / f"signing.key{RETIRED_SUFFIX}{old.key_id.hex()}")
    store = datadir.open_store(data, None, readonly=False)
    try:
        append_records(store, 2)
        # A server still running with the old key signs nothing after the rotation...
        with pytest.raises(VerificationError, match="retired by the key rotation at seq"):
            Checkpointer(store, retired, retired.name, saved_path=tmp_path / "cp").checkpoint()
        # ...and a checkpoint the old key signed anyway fails verification.
        forged = sign(store, retired, retired.name)
    finally:
        store.close()
    result = run_cli("verify", "--data", data, "--key", str(old))
    assert result.exit_code == 1
    assert f"checkpoint at tree size {forged.tree_size}: signed note has no signature by" in (
        result.stderr
    )
    assert str(new.key_id.hex()) in result.stderr


def test_a_forged_rotation_record_fails_naming_its_seq(tmp_path: Path) -> None:
    data = tmp_path / "data"
    old = VerifierKey.parse(sealed_ledger(data, audit_request(3)))
    # Someone who can write the database but has no key appends a rotation to a key of theirs
    # and signs later checkpoints with it (with the real signing key still in its place).
    mallory, theirs = SigningKey.generate(old.name), SigningKey.generate(old.name)
    store = datadir.open_store(data, None, readonly=False)
    try:
        seq = store.tree_size()
        text = statement(old.name, seq, old, theirs.verifier())  # names the real old key
        note = add_signature(sign_note(text, mallory), theirs)  # but the old key did not sign
        append_one(DirectAppender(store), rotation_entry(READER, note, old, theirs.verifier()))
        sign(store, theirs, old.name)
    finally:
        store.close()
    result = run_cli("verify", "--data", data, "--key", str(old))
    assert result.exit_code == 1, result.output
    assert f"seq {seq}: key rotation record" in result.stderr
    assert "old key's signature" in result.stderr


def test_a_rotation_naming_another_key_in_force_is_forged(tmp_path: Path) -> None:
    data = tmp_path / "data"
    old = VerifierKey.parse(sealed_ledger(data, audit_request(3)))
    other, theirs = SigningKey.generate(old.name), SigningKey.generate(old.name)
    store = datadir.open_store(data, None, readonly=False)
    try:
        seq = store.tree_size()
        note = rotation_note(old.name, seq, other, theirs)  # validly signed, but not by `old`
        append_one(DirectAppender(store), rotation_entry(READER, note, other.verifier(),
                                                          theirs.verifier()))  # fmt: skip
        with pytest.raises(VerificationError, match=f"seq {seq}: .* a forged rotation"):
            verify_ledger(store, old)
    finally:
        store.close()


def test_a_restored_retired_key_does_not_sign(tmp_path: Path) -> None:
    data = tmp_path / "data"
    old, _, seq = rotated(data)
    (data / "signing.key").rename(tmp_path / "new.key")
    shutil.copy2(data / f"signing.key{RETIRED_SUFFIX}{old.key_id.hex()}", data / "signing.key")
    store = datadir.open_store(data, None, readonly=False)
    try:
        with pytest.raises(ConfigError, match=f"retired by the key rotation at seq {seq}"):
            datadir.signing_key(data, store, None, None)
    finally:
        store.close()


def test_an_unfinished_rotation_is_not_run_over(tmp_path: Path) -> None:
    data = tmp_path / "data"
    sealed_ledger(data, audit_request(2))
    (data / "signing.key.next").write_text("left over\n")
    result = run_cli("key", "rotate", "--data", data)
    assert result.exit_code == 2
    assert "did not finish" in result.stderr


def test_a_rotation_stopped_before_its_transition_checkpoint_can_be_finished(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    old_vkey = VerifierKey.parse(sealed_ledger(data, audit_request(3)))
    old = SigningKey.load(data / "signing.key")
    new = SigningKey.generate(old.name)
    new.save(data / "signing.key.next")
    store = datadir.open_store(data, None, readonly=False)
    try:  # steps 1 to 3 of `key rotate`, then a crash
        seq = store.tree_size()
        note = rotation_note(old.name, seq, old, new)
        entry = rotation_entry(READER, note, old_vkey, new.verifier())
        assert append_one(DirectAppender(store), entry) == seq
        with pytest.raises(ConfigError, match=r"signing\.key\.next"):
            datadir.signing_key(data, store, None, None)
    finally:
        store.close()
    # Finishing by hand (docs/operations.md): the new key in place; the server then signs the
    # first checkpoint after the rotation with it, from the old key's saved checkpoint.
    (data / "signing.key").rename(data / f"signing.key{RETIRED_SUFFIX}{old.key_id.hex()}")
    (data / "signing.key.next").rename(data / "signing.key")
    grow(data, 2)
    result = run_cli("verify", "--data", data, "--key", str(old_vkey))
    assert result.exit_code == 0, result.stderr


def test_key_show_all_lists_every_key_with_the_sizes_it_signs(tmp_path: Path) -> None:
    data = tmp_path / "data"
    old, new, seq = rotated(data)
    result = run_cli("key", "show", "--all", "--data", data)
    assert result.exit_code == 0, result.stderr
    first, second = result.output.splitlines()
    assert first.startswith(f"{old}  tree sizes 0..{seq + 1}  ")
    assert first.endswith(f"original key, retired at seq {seq}")
    assert second.startswith(f"{new}  tree sizes {seq + 1}..  ")
    assert second.endswith(f"rotation at seq {seq}, in force")
    assert run_cli("key", "show", "--data", data).output == f"{new}\n"


def test_key_pin_moves_forward_along_the_history_only(tmp_path: Path) -> None:
    data = tmp_path / "data"
    old, new, _ = rotated(data)
    assert run_cli("key", "pin", "--data", data, "--key", str(old)).exit_code == 0
    assert run_cli("verify", "--data", data).exit_code == 0
    moved = run_cli("key", "pin", "--data", data, "--key", str(new))
    assert moved.exit_code == 0, moved.stderr
    assert (data / "verifier.key").read_text() == f"{new}\n"
    back = run_cli("key", "pin", "--data", data, "--key", str(old))
    assert back.exit_code == 1 and "already pins" in back.stderr
    stranger = SigningKey.generate(old.name).verifier()
    other = run_cli("key", "pin", "--data", data, "--out", tmp_path / "p", "--key", str(stranger))
    assert other.exit_code == 1
    assert run_cli("verify", "--data", data).exit_code == 0


def test_status_shows_the_key_in_force_and_the_rotations(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _, new, seq = rotated(data)
    result = run_cli("status", "--data", data, "--format", "json")
    assert result.exit_code == 0, result.stderr
    key = json.loads(result.output)["ledger"]["signing_key"]
    assert key == {"in_force": str(new), "rotations": [seq], "problem": None}
    lines = run_cli("status", "--data", data).output.splitlines()
    assert f"signing key:        {new} (rotated at seq {seq})" in lines


@pytest.mark.parametrize("kind", STORE_KINDS)
def test_rotation_on_each_store(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    data = tmp_path / "data"
    datadir.check(data, create=True)
    url = new_store_url(kind, tmp_path, request)
    store_url = None if kind == "sqlite" else url
    grow(data, 3, store_url=store_url)
    store = datadir.open_store(data, store_url, readonly=False)
    try:
        original = VerifierKey.parse(store.meta("verifier_key") or "")
        done = rotate(data, store, READER)
    finally:
        store.close()
    grow(data, 3, store_url=store_url)
    store = datadir.open_store(data, store_url, readonly=True)
    try:
        assert [r.seq for r in load_history(store).rotations] == [done.seq]
        report = verify_ledger(store, original)
        assert report.checkpoint_size == report.tree_size == done.seq + 4
        verify_ledger(store, done.new)
    finally:
        store.close()
