"""Witnessing: cosignature/v1 format (c2sp.org/tlog-cosignature) and the witness's refusals
(c2sp.org/tlog-witness): rollbacks, forks, bad proofs and unknown logs are never cosigned."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import shutil
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otaudit import merkle, tree
from otaudit.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from otaudit.checkpointer import Checkpointer
from otaudit.cli import witness as witness_cli
from otaudit.cli.main import cli
from otaudit.errors import ConfigError, VerificationError
from otaudit.keys import SigningKey, VerifierKey
from otaudit.otlp.convert import select_spans
from otaudit.record import Entry, seal
from otaudit.store.sqlite import SQLiteStore
from otaudit.witness import (
    ConsistencyProof,
    Refused,
    Witness,
    WitnessKey,
    WitnessVerifier,
    cosignature_message,
    open_cosigned,
)
from support import Server, audit_request, otaudit, post

witness_cli.register(cli)

EM = "\u2014"
ORIGIN = "example.com/audit-log"
LOG_KEY = SigningKey.from_seed(ORIGIN, bytes(range(32)))
WITNESS_SEED = bytes(range(32, 64))

# Real cosignatures from public witnesses (published witness keys, type 0x04), on a
# checkpoint of a Certificate Transparency log run by transparency.dev.
REMORA = "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2"
SMARTIT = "witness1.smartit.nu/witness1+a48c820f+BPSFWg9G6KPiO7QPryYO5Xq4oYJJ+kAvLKLSimDhoxMO"
ARCHE = (
    "arche2025h1.staging.ct.transparency.dev+ba2f06c0+AU0vHmlGCS/PdN8b2OaGmKprLI8HKM+dJ472xgFYh15f"
)
REAL_NOTE = (
    "arche2025h1.staging.ct.transparency.dev\n1432088532\n"
    "U7WM79jrzyhGZ5/GUBTpM7NzwdyfFx61t3RovgcC4Ro=\n\n"
    f"{EM} arche2025h1.staging.ct.transparency.dev zTM8sQAAAZ5W0WdjBAMARjBEAiBjW5IQf9pvsYLfQFX6ho"
    "GREPMHbdQ3urbllzalApkptQIgIpwtEroeW2BXaHAI4kJXFbon5Ch9MNL5zRNZ55lvGt0=\n"
    f"{EM} arche2025h1.staging.ct.transparency.dev ui8GwCF1+kWqZrxGdhj4aX3gcw7XUlXQQabg/27lefwh"
    "UkzbC3NygNI75MdhL1bfTW9g8Ei59RA23oHP7Ry1k3ZFWwQ=\n"
    f"{EM} witness1.smartit.nu/witness1 pIyCDwAAAABqEiEghIp82KWebrw7/oHQwlTAm3g2RKS4+eebl8eO0WH+"
    "/iEcxZ75W3u5hNI7TOQtmJbqmNWVuE0tgh0XwzdZsDsUAQ==\n"
    f"{EM} remora.n621.de 2net5wAAAABqEiEgPlfF3V06o0Y+fHM+J5J9s27wgxxcOVSpZ/2g/KSiXCg9DEZI+aVCIob"
    "WX9sXTynk5XeU/zZ0WBxtqB0DrAWfBw==\n"
)


def entries(n: int, payload: int = 50) -> list[Entry]:
    """``n`` distinct sealed audit records."""
    request = ExportTraceServiceRequest.FromString(audit_request(n, payload))
    return [
        seal(obj, content, "otlp", 1)
        for obj, content in select_spans(request, "audit.action").records
    ]


def run_cli(*args: str, process: bool = False) -> tuple[int, str, str]:
    """Run ``otaudit ARGS``: in a new process, or in this one (faster) with click's runner."""
    if process:
        result = otaudit(*args)
        return result.returncode, result.stdout, result.stderr
    ran = CliRunner().invoke(cli, list(args))
    return ran.exit_code, ran.stdout, ran.stderr


def run_sizes(stdout: str) -> list[int]:
    """The sizes ``otaudit witness run`` reports as cosigned ("cosigned tree size N: PATH")."""
    return [int(line.split(":")[0].split()[-1]) for line in stdout.splitlines()[:-1]]


def cosign_cli(
    state: Path, checkpoint: Path, proof: Path | None = None, *, process: bool = False
) -> tuple[int, str, str]:
    args = ["witness", "cosign", "--state", str(state), str(checkpoint)]
    if proof is not None:
        args += ["--proof", str(proof)]
    return run_cli(*args, process=process)


# ------------------------------------------------------------------------------------------
# The cosignature/v1 format


def test_witness_key_id_is_sha256_of_name_newline_0x04_public_key() -> None:
    key = WitnessKey(SigningKey.from_seed("witness.example/w1", WITNESS_SEED))
    public = key.verifier().public_key_bytes
    expected = hashlib.sha256(b"witness.example/w1\n\x04" + public).digest()[:4]
    assert key.key_id == expected
    assert key.key_id != SigningKey.from_seed("witness.example/w1", WITNESS_SEED).key_id  # 0x01
    text = str(key.verifier())
    name, key_id, data = text.split("+", 2)
    assert (name, key_id) == ("witness.example/w1", expected.hex())
    assert base64.b64decode(data) == b"\x04" + public
    assert WitnessVerifier.parse(text) == key.verifier()


@pytest.mark.parametrize("vkey", [REMORA, SMARTIT])
def test_published_witness_keys_parse(vkey: str) -> None:
    # Their key IDs were computed by other implementations; parse() recomputes and compares.
    assert str(WitnessVerifier.parse(vkey)) == vkey


def test_witness_key_parse_refuses_a_note_key_and_a_wrong_id() -> None:
    with pytest.raises(ConfigError, match=r"expected 0x04 \(Ed25519 cosignature/v1\)"):
        WitnessVerifier.parse(LOG_KEY.verifier_key())
    with pytest.raises(ConfigError, match="key id mismatch"):
        WitnessVerifier.parse(REMORA.replace("da77ade7", "da77ade8"))


def test_real_cosignatures_verify() -> None:
    for vkey in (REMORA, SMARTIT):
        cosigned = open_cosigned(REAL_NOTE, WitnessVerifier.parse(vkey))
        assert cosigned.checkpoint.tree_size == 1432088532
        assert cosigned.timestamp == 1779573024
    log_key = VerifierKey.parse(ARCHE)
    assert open_cosigned(REAL_NOTE, WitnessVerifier.parse(REMORA), log_key=log_key).timestamp
    with pytest.raises(VerificationError, match="cosignature does not verify"):
        open_cosigned(REAL_NOTE.replace("1432088532", "1432088533"), WitnessVerifier.parse(REMORA))


def test_timestamp_encoding_matches_the_spec_example() -> None:
    # c2sp.org/tlog-cosignature: this cosignature's signed message has "time 1679315147".
    raw = base64.b64decode(
        "jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZ"
        "qhf5nNo0xUe+mbIUBkBIfZ+qnA=="
    )
    assert len(raw) == 4 + 8 + 64
    assert int.from_bytes(raw[4:12], "big") == 1679315147


def test_cosignature_line_layout_and_signed_message() -> None:
    key = WitnessKey(SigningKey.from_seed("witness.example/w1", WITNESS_SEED))
    body = Checkpoint(ORIGIN, 5, merkle.EMPTY_ROOT, ("ext line",)).body()
    line = key.cosign(body, 1679315147)
    assert line.startswith(f"{EM} witness.example/w1 ") and line.endswith("\n")
    raw = base64.b64decode(line.split(" ")[2])
    assert raw[:4] == key.key_id
    assert raw[4:12] == (1679315147).to_bytes(8, "big")
    message = b"cosignature/v1\ntime 1679315147\n" + body
    assert cosignature_message(body, 1679315147) == message
    Ed25519PublicKey.from_public_bytes(key.verifier().public_key_bytes).verify(raw[12:], message)


def test_open_cosigned_checks_what_it_must() -> None:
    witness = WitnessKey(SigningKey.from_seed("witness.example/w1", WITNESS_SEED))
    other = WitnessKey(SigningKey.from_seed("witness.example/w2", bytes(32)))
    note = sign_checkpoint(Checkpoint(ORIGIN, 3, bytes(32)), LOG_KEY)
    text = note[: note.rindex("\n\n") + 1]
    cosigned = note + other.cosign(text.encode(), 10) + witness.cosign(text.encode(), 20)
    opened = open_cosigned(cosigned, witness.verifier(), log_key=LOG_KEY.verifier())
    assert (opened.checkpoint.tree_size, opened.timestamp) == (3, 20)
    with pytest.raises(VerificationError, match="no cosignature by witness"):
        open_cosigned(note, witness.verifier())
    with pytest.raises(VerificationError, match="no signature by"):
        open_cosigned(cosigned, witness.verifier(), log_key=SigningKey.generate(ORIGIN).verifier())
    forged = note.replace("\n3\n", "\n4\n") + witness.cosign(text.encode(), 20)
    with pytest.raises(VerificationError, match="cosignature does not verify"):
        open_cosigned(forged, witness.verifier())


# ------------------------------------------------------------------------------------------
# A real server writing a witness directory, and `otaudit witness run`


def test_server_witness_dir_cosigned_in_order(tmp_path: Path) -> None:
    wdir, state = tmp_path / "witness-dir", tmp_path / "state"
    server = Server(tmp_path / "data", extra_args=["--witness-dir", str(wdir)]).start()
    log_vkey = SigningKey.load(server.data / "signing.key").verifier_key()
    code, out, err = run_cli("witness", "init", "--state", str(state), "--name", "w.example/w1")
    assert code == 0, err
    witness_vkey = WitnessVerifier.parse(out.strip())
    assert stat.S_IMODE((state / "witness.key").stat().st_mode) == 0o600
    code, out, err = run_cli("witness", "add-log", "--state", str(state), "--log-key", log_vkey)
    assert code == 0 and out.startswith("trusting log "), err

    cosigned_sizes: list[int] = []
    try:
        for _ in range(2):  # two rounds of traffic, each followed by a witness run
            for _ in range(3):
                assert post(server, audit_request(7)).status_code == 200
                time.sleep(0.15)  # several checkpoints per round (interval 0.1 s)
            time.sleep(0.3)
            run = otaudit("witness", "run", "--state", str(state), "--from-dir", str(wdir))
            assert run.returncode == 0, run.stderr
            assert run.stdout.endswith(" checkpoint(s) cosigned\n"), run.stdout
            cosigned_sizes += run_sizes(run.stdout)
    finally:
        assert server.stop() == 0
    code, out, err = run_cli("witness", "run", "--state", str(state), "--from-dir", str(wdir))
    assert code == 0, err
    cosigned_sizes += run_sizes(out)  # anything signed after the last run (normally nothing)

    sizes = sorted(int(p.name.split(".")[1]) for p in wdir.glob("checkpoint.*"))
    assert sizes[0] == 0 and sizes[-1] == 42 and len(sizes) >= 4
    assert cosigned_sizes == sizes  # every checkpoint, once, in size order
    previous = 0
    for size in sizes:  # each proof starts at the previous checkpoint written there
        proof = json.loads((wdir / f"proof.{size}").read_text())
        assert (proof["size1"], proof["size2"]) == (previous, size)
        previous = size
    log_key = VerifierKey.parse(log_vkey)
    for size in sizes:
        cosigned = open_cosigned(
            (wdir / f"cosigned.{size}").read_text(), witness_vkey, log_key=log_key
        )
        assert cosigned.checkpoint.tree_size == size
        assert abs(cosigned.timestamp - time.time()) < 600
    again = run_cli("witness", "run", "--state", str(state), "--from-dir", str(wdir))
    assert again[:2] == (0, "nothing new to cosign\n")

    # A second ledger with the SAME signing key and other records: a fork at size 42.
    fork_data, fork_dir = tmp_path / "fork-data", tmp_path / "fork-dir"
    fork_data.mkdir(mode=0o700)
    shutil.copy2(server.data / "signing.key", fork_data / "signing.key")
    fork = Server(
        fork_data, extra_args=["--origin", log_key.name, "--witness-dir", str(fork_dir)]
    ).start()
    try:
        assert post(fork, audit_request(42)).status_code == 200
        time.sleep(0.5)
    finally:
        assert fork.stop() == 0
    forked = fork_dir / "checkpoint.42"
    assert open_checkpoint(forked.read_text(), log_key).tree_size == 42  # validly signed
    code, out, err = cosign_cli(state, forked, fork_dir / "proof.42")
    assert (code, out) == (1, "")
    assert err.startswith("REFUSED: ") and "(fork)" in err and "size 42" in err
    code, _, err = run_cli("witness", "run", "--state", str(state), "--from-dir", str(fork_dir))
    assert code == 1 and "checkpoint.0: " in err and "(rollback)" in err  # it comes first
    assert not list(fork_dir.glob("cosigned.*"))


# ------------------------------------------------------------------------------------------
# Refusals, with two ledgers signed by the same key


class Ledger:
    """A store and its Checkpointer writing a witness directory."""

    def __init__(self, path: Path) -> None:
        path.mkdir()
        self.store = SQLiteStore(path / "ledger.db")
        self.dir = path / "witness-dir"
        self.checkpointer = Checkpointer(self.store, LOG_KEY, ORIGIN, self.dir,
                                         saved_path=path / "signing.key.checkpoint")  # fmt: skip

    def grow(self, records: list[Entry]) -> int:
        self.store.append(records)
        cp = self.checkpointer.checkpoint()
        assert cp is not None
        return cp.tree_size

    def files(self, size: int) -> tuple[Path, Path]:
        return self.dir / f"checkpoint.{size}", self.dir / f"proof.{size}"


@pytest.fixture
def ledgers(tmp_path: Path) -> Iterator[Callable[[str], Ledger]]:
    """Make ledgers under tmp_path; close their stores afterwards."""
    made: list[Ledger] = []

    def make(name: str) -> Ledger:
        made.append(Ledger(tmp_path / name))
        return made[-1]

    yield make
    for ledger in made:
        ledger.store.close()


@pytest.fixture
def witness_state(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    Witness.init(state, "witness.example/w1")
    assert Witness(state).add_log(LOG_KEY.verifier())
    return state


def state_bytes(state: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((state / "logs").iterdir())}


def test_refusals_leave_the_state_unchanged_across_restarts(
    tmp_path: Path, witness_state: Path, ledgers: Callable[[str], Ledger]
) -> None:
    honest, forked = ledgers("a"), ledgers("b")
    shared, more, other = entries(4), entries(4), entries(6)
    assert honest.grow(shared) == 4 and forked.grow(shared) == 4
    assert honest.grow(more) == 8
    assert forked.grow(other) == 10  # same first 4 records, then a different history
    assert cosign_cli(witness_state, *honest.files(4))[0] == 0
    code, out, err = cosign_cli(witness_state, *honest.files(8), process=True)
    assert code == 0, err
    assert open_cosigned(out, Witness(witness_state).key.verifier()).checkpoint.tree_size == 8
    accepted = state_bytes(witness_state)

    def refused(checkpoint: Path, proof: Path | None, *phrases: str, process: bool = False) -> None:
        code, out, err = cosign_cli(witness_state, checkpoint, proof, process=process)
        assert (code, out) == (1, ""), err
        assert err.startswith("REFUSED: ")
        for phrase in phrases:
            assert phrase in err, err
        assert state_bytes(witness_state) == accepted  # nothing changed

    # The fork's own proof starts at 4, where this witness has moved on to 8.
    refused(*forked.files(10), "proof is from size 4", "last accepted size 8", process=True)
    # A proof from 8 in the forked tree cannot bridge to the root accepted at 8.
    bridge = tmp_path / "bridge.json"
    hashes = tuple(tree.stored_consistency_proof(forked.store, 8, 10))
    bridge.write_bytes(ConsistencyProof(8, 10, hashes).to_json())
    refused(forked.files(10)[0], bridge, "not consistent with size 8", "(fork)")
    # The same size with another root.
    fork8 = tmp_path / "fork8"
    fork8.write_text(
        sign_checkpoint(Checkpoint(ORIGIN, 8, tree.stored_root(forked.store, 8)), LOG_KEY)
    )
    refused(fork8, None, "at size 8", "differs from root", "(fork)")
    # An older checkpoint.
    refused(honest.files(4)[0], None, "already accepted size 8 (rollback)")
    # A proof that does not verify, one to the wrong size, none at all, and a malformed one.
    assert honest.grow(entries(5)) == 13
    checkpoint13, proof13 = honest.files(13)
    good = json.loads(proof13.read_text())
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**good, "hashes": [bytes(32).hex(), *good["hashes"][1:]]}))
    refused(checkpoint13, bad, "not consistent with size 8", "(fork)")
    bad.write_text(json.dumps({**good, "size2": 12}))
    refused(checkpoint13, bad, "proof is to size 12")
    refused(checkpoint13, None, "a consistency proof from size 8", "prove consistency --from 8")
    bad.write_text('{"size1": 8, "hashes": []}')
    refused(checkpoint13, bad, "malformed consistency proof")
    # After all that, the honest next checkpoint is accepted by a fresh process.
    code, out, err = cosign_cli(witness_state, checkpoint13, proof13, process=True)
    assert code == 0, err
    assert Witness(witness_state).accepted(ORIGIN) == Checkpoint(
        ORIGIN, 13, tree.stored_root(honest.store, 13)
    )
    # The same checkpoint again is fine (same size, same root), and needs no proof.
    assert cosign_cli(witness_state, checkpoint13)[0] == 0


def test_unknown_log_and_bad_signature_are_refused(tmp_path: Path, witness_state: Path) -> None:
    stranger = SigningKey.generate("example.com/other-log")
    impostor = SigningKey.generate(ORIGIN)  # the right name, another key
    for key, phrase in ((stranger, "unknown log 'example.com/other-log'"),
                        (impostor, "no signature by")):  # fmt: skip
        note = tmp_path / f"{key.name.replace('/', '_')}-{key.key_id.hex()}"
        note.write_text(sign_checkpoint(Checkpoint(key.name, 0, merkle.EMPTY_ROOT), key))
        code, out, err = cosign_cli(witness_state, note)
        assert (code, out) == (1, "") and phrase in err, err
    assert Witness(witness_state).accepted(ORIGIN) is None
    garbage = tmp_path / "garbage"
    garbage.write_text("not a note\n")
    code, _, err = cosign_cli(witness_state, garbage)
    assert code == 1 and "not a signed checkpoint" in err


def test_cli_setup_errors(tmp_path: Path, witness_state: Path) -> None:
    code, _, err = run_cli("witness", "init", "--state", str(witness_state), "--name", "w")
    assert code == 2 and "already holds a witness key" in err
    code, _, err = run_cli("witness", "key", "--state", str(tmp_path / "nowhere"))
    assert code == 2 and "witness init" in err
    vkey = LOG_KEY.verifier_key()
    code, out, _ = run_cli("witness", "add-log", "--state", str(witness_state), "--log-key", vkey)
    assert code == 0 and "already trusted" in out
    other = SigningKey.generate(ORIGIN).verifier_key()
    code, _, err = run_cli("witness", "add-log", "--state", str(witness_state), "--log-key", other)
    assert code == 2 and "already trusted with another key" in err
    code, out, _ = run_cli("witness", "key", "--state", str(witness_state))
    assert (code, out.strip()) == (0, str(Witness(witness_state).key.verifier()))


def test_witness_library_refuses_before_touching_state(witness_state: Path) -> None:
    witness = Witness(witness_state)
    first = sign_checkpoint(Checkpoint(ORIGIN, 2, bytes(32)), LOG_KEY)
    witness.cosign(first, now=1)
    with pytest.raises(Refused, match="rollback"):
        witness.cosign(sign_checkpoint(Checkpoint(ORIGIN, 1, bytes(32)), LOG_KEY))
    empty = sign_checkpoint(Checkpoint(ORIGIN, 0, bytes(32)), LOG_KEY)
    with pytest.raises(Refused, match="empty tree"):
        witness.cosign(empty)
    assert witness.accepted(ORIGIN) == Checkpoint(ORIGIN, 2, bytes(32))


# ------------------------------------------------------------------------------------------
# The server side: a failed write is logged, and the next proof bridges the gap


def test_failed_export_is_logged_and_the_next_proof_bridges_it(
    tmp_path: Path,
    witness_state: Path,
    ledgers: Callable[[str], Ledger],
    caplog: pytest.LogCaptureFixture,
) -> None:
    ledger = ledgers("a")
    assert ledger.grow(entries(3)) == 3
    shutil.move(ledger.dir, tmp_path / "moved")
    ledger.dir.write_text("not a directory")
    with caplog.at_level(logging.ERROR, logger="otaudit.ledger"):
        assert ledger.grow(entries(3)) == 6  # signed and stored all the same
    assert "checkpoint at tree size 6 not written to witness directory" in caplog.text
    assert [cp.tree_size for cp in ledger.store.checkpoints()] == [3, 6]
    ledger.dir.unlink()
    shutil.move(tmp_path / "moved", ledger.dir)
    assert ledger.grow(entries(3)) == 9
    assert json.loads(ledger.files(9)[1].read_text())["size1"] == 3
    assert [size for size, _, _ in Witness(witness_state).run(ledger.dir)] == [3, 9]
