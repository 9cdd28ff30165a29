"""Key rotation: ``otaudit key rotate``, and every check that reads the key history.

A rotation record, signed by both keys, hands over from the old key to the new one at its
seq; checkpoints are checked with the key in force at their size (docs/operations.md, "Key
rotation"). The first test runs the real server before and after a rotation; the others
build the ledger in this process (tests/minilog.py) and change one thing each.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from conftest import STORE_KINDS, new_store_url
from minilog import run_cli, sealed_ledger
from otaudit import datadir, tree
from otaudit.access import Reader
from otaudit.checkpoint import open_checkpoint
from otaudit.checkpointer import Checkpointer
from otaudit.errors import ConfigError, VerificationError
from otaudit.keyhistory import add_signature, load_history, rotation_note, statement
from otaudit.keys import SigningKey, VerifierKey
from otaudit.note import sign_note
from otaudit.otlp.convert import select_spans
from otaudit.ownrecords import DirectAppender, append_one
from otaudit.record import seal
from otaudit.rotation import RETIRED_SUFFIX, rotate, rotation_entry
from otaudit.verify import verify_ledger
from otaudit.witness import (
    ConsistencyProof,
    Refused,
    RotationProof,
    Witness,
    WitnessVerifier,
    open_cosigned,
)
from otaudit.witness.rotation import follow
from sealing import sign
from support import Server, audit_request, otaudit, post
from test_bundle import run_docs_script

READER = Reader("tester")


def _grow(data: Path, n: int, *, store_url: str | None = None) -> None:
    """Append ``n`` audit records and sign them with the key in force (as ``serve`` does)."""
    store = datadir.open_store(data, store_url, readonly=False)
    try:
        key = datadir.signing_key(data, store, None, None)
        request = ExportTraceServiceRequest.FromString(audit_request(n))
        records = select_spans(request, "audit.action").records
        store.append([seal(obj, content, "otlp", time.time_ns()) for obj, content in records])
        Checkpointer(store, key, key.name).checkpoint()
    finally:
        store.close()


def _rotated(data: Path) -> tuple[VerifierKey, VerifierKey, int]:
    """A ledger of 5 records, rotated, then 4 more records signed by the new key: the old
    key, the new key and the rotation record's seq."""
    old = VerifierKey.parse(sealed_ledger(data, audit_request(5)))
    result = run_cli("key", "rotate", "--data", data)
    assert result.exit_code == 0, result.output + result.stderr
    new = SigningKey.load(data / "signing.key").verifier()
    _grow(data, 4)
    seq = int(result.output.split(" at seq ")[1].split(":")[0])
    return old, new, seq


# --------------------------------------------------------------------------------------------
# The real server, before and after


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


# --------------------------------------------------------------------------------------------
# verify


def test_verify_checks_each_checkpoint_with_the_key_in_force(tmp_path: Path) -> None:
    data = tmp_path / "data"
    old, new, seq = _rotated(data)
    for key in ([], ["--key", str(old)], ["--key", str(new)]):
        result = run_cli("verify", "--data", data, *key)
        assert result.exit_code == 0, result.output + result.stderr
        assert f"OK: key history of 2 keys (rotated at seq {seq}, each" in result.output
    checkpoints = run_cli("checkpoint", "--data", data, "--size", str(seq + 1)).output
    open_checkpoint(checkpoints, old)
    open_checkpoint(checkpoints, new)


def test_a_checkpoint_signed_by_the_retired_key_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    old, new, _ = _rotated(data)
    retired = SigningKey.load(data / f"signing.key{RETIRED_SUFFIX}{old.key_id.hex()}")
    store = datadir.open_store(data, None, readonly=False)
    try:
        request = ExportTraceServiceRequest.FromString(audit_request(2))
        records = select_spans(request, "audit.action").records
        store.append([seal(obj, content, "otlp", time.time_ns()) for obj, content in records])
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
    old, _, seq = _rotated(data)
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


# --------------------------------------------------------------------------------------------
# key show, key pin


def test_key_show_all_lists_every_key_with_the_sizes_it_signs(tmp_path: Path) -> None:
    data = tmp_path / "data"
    old, new, seq = _rotated(data)
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
    old, new, _ = _rotated(data)
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


# --------------------------------------------------------------------------------------------
# Bundles


def test_a_bundle_across_a_rotation_verifies_offline(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "bundle"
    old, new, seq = _rotated(data)
    exported = run_cli("export", "--data", data, "--out", out)
    assert exported.exit_code == 0, exported.stderr
    lines = (out / "keys.jsonl").read_text().splitlines()
    assert [json.loads(line)["index"] for line in lines] == [seq]
    shutil.rmtree(data)  # offline: nothing but the bundle
    for key in (old, new):
        result = run_cli("verify-bundle", out, "--key", str(key), "--require-signed-manifest")
        assert result.exit_code == 0, result.output + result.stderr
    stranger = SigningKey.generate(old.name).verifier()
    assert run_cli("verify-bundle", out, "--key", str(stranger)).exit_code == 1

    # Without its rotation record the bundle's checkpoint is checked with the old key: refused.
    stripped = tmp_path / "stripped"
    shutil.copytree(out, stripped)
    (stripped / "keys.jsonl").unlink()
    manifest = json.loads((stripped / "manifest.json").read_text())
    del manifest["files"]["keys.jsonl"]
    (stripped / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    (stripped / "manifest.sig").unlink()
    result = run_cli("verify-bundle", stripped, "--key", str(old))
    assert result.exit_code == 1
    assert "checkpoint: signed note has no signature by" in result.stderr


def test_a_bundle_with_a_forged_key_history_is_refused(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "bundle"
    old, _, _ = _rotated(data)
    assert run_cli("export", "--data", data, "--out", out).exit_code == 0
    doc = json.loads((out / "keys.jsonl").read_text())
    doc["hashes"][0] = "00" * 32
    (out / "keys.jsonl").write_text(json.dumps(doc) + "\n")
    result = run_cli("verify-bundle", out, "--key", str(old))
    assert result.exit_code == 1
    assert "keys.jsonl line 1: seq" in result.stderr and "not in the checkpoint" in result.stderr


# --------------------------------------------------------------------------------------------
# Both stores


@pytest.mark.parametrize("kind", STORE_KINDS)
def test_rotation_on_each_store(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    data = tmp_path / "data"
    datadir.check(data, create=True)
    url = new_store_url(kind, tmp_path, request)
    store_url = None if kind == "sqlite" else url
    _grow(data, 3, store_url=store_url)
    store = datadir.open_store(data, store_url, readonly=False)
    try:
        original = VerifierKey.parse(store.meta("verifier_key") or "")
        done = rotate(data, store, READER)
    finally:
        store.close()
    _grow(data, 3, store_url=store_url)
    store = datadir.open_store(data, store_url, readonly=True)
    try:
        assert [r.seq for r in load_history(store).rotations] == [done.seq]
        report = verify_ledger(store, original)
        assert report.checkpoint_size == report.tree_size == done.seq + 4
        verify_ledger(store, done.new)
    finally:
        store.close()


def test_the_docs_script_checks_a_rotated_bundle_with_the_key_in_force(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "bundle"
    old, new, _ = _rotated(data)
    assert run_cli("export", "--data", data, "--out", out).exit_code == 0
    assert run_docs_script(out, str(new), tmp_path).returncode == 0
    refused = run_docs_script(out, str(old), tmp_path)
    assert refused.returncode == 1
    assert refused.stderr.strip() == "checkpoint is not signed by that key"


# --------------------------------------------------------------------------------------------
# Proofs


def test_proofs_name_the_key_that_signed_and_carry_the_rotation(tmp_path: Path) -> None:
    data = tmp_path / "data"
    old, new, seq = _rotated(data)
    store = datadir.open_store(data, None, readonly=True)
    try:
        sizes = [cp.tree_size for cp in store.checkpoints()]
    finally:
        store.close()
    before, after = sizes[0], sizes[-1]
    assert before <= seq < after
    included = json.loads(run_cli("prove", "inclusion", "--data", data, "--seq", "0").output)
    assert included["verifier_key"] == str(new)
    open_checkpoint(included["checkpoint"], VerifierKey.parse(included["verifier_key"]))
    args = ["--data", str(data), "--from", str(before), "--to", str(after)]
    doc = json.loads(run_cli("prove", "consistency", *args).output)
    assert (doc["verifier_key1"], doc["verifier_key2"]) == (str(old), str(new))
    (rotation,) = doc["rotations"]
    # Whoever trusts the old key follows the rotation to the new one, as a witness does.
    proof = RotationProof.parse(json.dumps(rotation))
    cp2 = open_checkpoint(doc["checkpoint2"], new)
    assert follow(old, old.name, cp2, before, proof) == new


def test_status_shows_the_key_in_force_and_the_rotations(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _, new, seq = _rotated(data)
    result = run_cli("status", "--data", data, "--format", "json")
    assert result.exit_code == 0, result.stderr
    key = json.loads(result.output)["ledger"]["signing_key"]
    assert key == {"in_force": str(new), "rotations": [seq], "problem": None}
    lines = run_cli("status", "--data", data).output.splitlines()
    assert f"signing key:        {new} (rotated at seq {seq})" in lines


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
    _grow(data, 2)
    result = run_cli("verify", "--data", data, "--key", str(old_vkey))
    assert result.exit_code == 0, result.stderr


def test_a_witness_follows_only_a_proven_rotation(tmp_path: Path) -> None:
    data, state = tmp_path / "data", tmp_path / "state"
    old, new, seq = _rotated(data)
    store = datadir.open_store(data, None, readonly=True)
    try:
        checkpoints = {cp.tree_size: cp.note for cp in store.checkpoints()}
    finally:
        store.close()
    before, after = min(checkpoints), max(checkpoints)
    witness = Witness.init(state, "w.example/w1")
    witness.add_log(old)
    witness.witness(checkpoints[before])
    args = ["--data", str(data), "--from", str(before), "--to", str(after)]
    doc = json.loads(run_cli("prove", "consistency", *args).output)
    proof = ConsistencyProof(before, after, tuple(bytes.fromhex(h) for h in doc["hashes"]))
    # Without the rotation record, the new key's checkpoint is refused...
    with pytest.raises(Refused, match=f"no signature by {re.escape(old.name)}"):
        witness.witness(checkpoints[after], proof)
    # ...and a rotation record that is not in that checkpoint's tree too.
    (rotation,) = doc["rotations"]
    bad = RotationProof.parse(json.dumps({**rotation, "hashes": ["00" * 32]}))
    with pytest.raises(Refused, match="not in the checkpoint"):
        witness.witness(checkpoints[after], proof, rotation=bad)
    # With it, the witness cosigns and trusts the new key only.
    done = witness.witness(
        checkpoints[after], proof, rotation=RotationProof.parse(json.dumps(rotation))
    )
    assert open_cosigned(done.note, witness.key.verifier(), log_key=new)
    retired = SigningKey.load(data / f"signing.key{RETIRED_SUFFIX}{old.key_id.hex()}")
    store = datadir.open_store(data, None, readonly=False)
    try:
        request = ExportTraceServiceRequest.FromString(audit_request(1))
        records = select_spans(request, "audit.action").records
        store.append([seal(obj, content, "otlp", time.time_ns()) for obj, content in records])
        forged = sign(store, retired, old.name)  # the retired key, past its rotation
        hashes = tuple(tree.stored_consistency_proof(store, after, forged.tree_size))
    finally:
        store.close()
    with pytest.raises(Refused, match="no signature by"):
        witness.witness(forged.note, ConsistencyProof(after, forged.tree_size, hashes))
    assert seq < after


def test_a_witness_that_took_the_transition_under_the_old_key_still_follows(
    tmp_path: Path,
) -> None:
    data, state = tmp_path / "data", tmp_path / "state"
    old, new, seq = _rotated(data)
    store = datadir.open_store(data, None, readonly=True)
    try:
        checkpoints = {cp.tree_size: cp.note for cp in store.checkpoints()}
    finally:
        store.close()
    transition, after = seq + 1, max(checkpoints)
    witness = Witness.init(state, "w.example/w1")
    witness.add_log(old)
    witness.witness(checkpoints[transition])  # no rotation.<size>: accepted under the old key
    args = ["--data", str(data), "--from", str(transition), "--to", str(after)]
    doc = json.loads(run_cli("prove", "consistency", *args).output)
    assert doc["verifier_key1"] == doc["verifier_key2"] == str(new)
    (rotation,) = doc["rotations"]
    proof = ConsistencyProof(transition, after, tuple(bytes.fromhex(h) for h in doc["hashes"]))
    done = witness.witness(
        checkpoints[after], proof, rotation=RotationProof.parse(json.dumps(rotation))
    )
    assert open_cosigned(done.note, witness.key.verifier(), log_key=new)
