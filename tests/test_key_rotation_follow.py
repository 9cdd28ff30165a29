"""Following a key rotation away from the ledger: evidence bundles (``keys.jsonl``), proofs
(``verifier_key``, ``rotations``) and witnesses (``rotation.<size>``).

The ledger is built and rotated in this process (tests/rotated.py); each test checks that
the history verifies under the key that signed it, and that what a retired key or a forged
rotation would need is refused.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from minilog import run_cli
from otaudit import datadir, tree
from otaudit.checkpoint import open_checkpoint
from otaudit.keys import SigningKey, VerifierKey
from otaudit.rotation import RETIRED_SUFFIX
from otaudit.witness import (
    ConsistencyProof,
    Refused,
    RotationProof,
    Witness,
    open_cosigned,
)
from otaudit.witness.rotation import follow
from rotated import append_records, rotated
from sealing import sign
from test_bundle import run_docs_script


def test_a_bundle_across_a_rotation_verifies_offline(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "bundle"
    old, new, seq = rotated(data)
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
    old, _, _ = rotated(data)
    assert run_cli("export", "--data", data, "--out", out).exit_code == 0
    doc = json.loads((out / "keys.jsonl").read_text())
    doc["hashes"][0] = "00" * 32
    (out / "keys.jsonl").write_text(json.dumps(doc) + "\n")
    result = run_cli("verify-bundle", out, "--key", str(old))
    assert result.exit_code == 1
    assert "keys.jsonl line 1: seq" in result.stderr and "not in the checkpoint" in result.stderr


def test_the_docs_script_checks_a_rotated_bundle_with_the_key_in_force(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "bundle"
    old, new, _ = rotated(data)
    assert run_cli("export", "--data", data, "--out", out).exit_code == 0
    assert run_docs_script(out, str(new), tmp_path).returncode == 0
    refused = run_docs_script(out, str(old), tmp_path)
    assert refused.returncode == 1
    assert refused.stderr.strip() == "checkpoint is not signed by that key"


def test_proofs_name_the_key_that_signed_and_carry_the_rotation(tmp_path: Path) -> None:
    data = tmp_path / "data"
    old, new, seq = rotated(data)
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


def test_a_witness_follows_only_a_proven_rotation(tmp_path: Path) -> None:
    data, state = tmp_path / "data", tmp_path / "state"
    old, new, seq = rotated(data)
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
        append_records(store, 1)
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
    old, new, seq = rotated(data)
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
