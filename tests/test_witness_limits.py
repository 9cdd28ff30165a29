"""A witness reads what the log side writes: hostile files and notes (issue 14, finding 14).

Before: a ``checkpoint.<size>`` that is ``/dev/zero`` died with MemoryError and a FIFO hung
``witness run``; signature lines of keys the witness does not know were copied, unverified,
into the cosigned output; a 50 MB extension line was stored in the witness state; a 1 MB
origin was echoed whole in the refusal.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from otaudit.checkpoint import Checkpoint, sign_checkpoint
from otaudit.cli import witness as witness_cli
from otaudit.cli.main import cli
from otaudit.errors import ConfigError
from otaudit.keys import SigningKey
from otaudit.note import signature_line
from otaudit.witness import (
    MAX_NOTE_BYTES,
    Refused,
    Witness,
    WitnessKey,
    open_cosigned,
)
from otaudit.witness.limits import MAX_EXTENSION_LINES, MAX_LINE_BYTES, MAX_ORIGIN_BYTES

ORIGIN = "example.com/audit-log"
LOG_KEY = SigningKey.from_seed(ORIGIN, bytes(range(32)))
EMPTY = hashlib.sha256(b"").digest()

witness_cli.register(cli)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    directory = tmp_path / "state"
    Witness.init(directory, "witness.example/w1")
    assert Witness(directory).add_log(LOG_KEY.verifier())
    return directory


def _logs(state: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((state / "logs").iterdir())}


def _otaudit(*args: str) -> tuple[int, str, str]:
    """The CLI in this process; a call that does not return within 10 s fails the test."""
    result: list[tuple[int, str, str]] = []

    def call() -> None:
        ran = CliRunner().invoke(cli, list(args))
        result.append((ran.exit_code, ran.stdout, ran.stderr))

    worker = threading.Thread(target=call, daemon=True)  # a hung read must not hang pytest
    worker.start()
    worker.join(10)
    assert result, f"otaudit {' '.join(args)} did not return within 10 s"
    return result[0]


def _otaudit_limited(*args: str) -> tuple[int, str, str]:
    """The CLI in a process limited to 1 GiB of memory and 20 s (reading /dev/zero whole)."""
    ran = subprocess.run(
        ["prlimit", f"--as={1 << 30}", sys.executable, "-m", "otaudit", *args],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    return ran.returncode, ran.stdout, ran.stderr


# ------------------------------------------------------------------------------------------
# Only regular files are read


@pytest.mark.parametrize("kind", ["dev-zero", "fifo"])
def test_run_refuses_a_checkpoint_that_is_not_a_regular_file(
    tmp_path: Path, state: Path, kind: str
) -> None:
    wdir = tmp_path / "wdir"
    wdir.mkdir()
    if kind == "fifo":
        os.mkfifo(wdir / "checkpoint.5")
    else:
        (wdir / "checkpoint.5").symlink_to("/dev/zero")
    run = _otaudit if kind == "fifo" else _otaudit_limited
    code, _, err = run("witness", "run", "--state", str(state), "--from-dir", str(wdir))
    assert code == 2, err
    assert "checkpoint" in err and "is not a regular file" in err
    assert "MemoryError" not in err
    assert not list(wdir.glob("cosigned.*"))


def test_run_refuses_a_proof_that_is_not_a_regular_file(tmp_path: Path, state: Path) -> None:
    wdir = tmp_path / "wdir"
    wdir.mkdir()
    (wdir / "checkpoint.0").write_text(sign_checkpoint(Checkpoint(ORIGIN, 0, EMPTY), LOG_KEY))
    os.mkfifo(wdir / "proof.0")
    code, _, err = _otaudit("witness", "run", "--state", str(state), "--from-dir", str(wdir))
    assert code == 2 and "consistency proof" in err and "not a regular file" in err, err


def test_cosign_refuses_a_checkpoint_that_is_not_a_regular_file(
    tmp_path: Path, state: Path
) -> None:
    os.mkfifo(tmp_path / "fifo")
    for path in (tmp_path / "fifo", Path("/dev/zero")):
        code, _, err = _otaudit("witness", "cosign", "--state", str(state), str(path))
        assert code == 2 and "is not a regular file" in err, err


def test_run_refuses_an_oversized_checkpoint_file(tmp_path: Path, state: Path) -> None:
    wdir = tmp_path / "wdir"
    wdir.mkdir()
    (wdir / "checkpoint.0").write_bytes(b"x" * (MAX_NOTE_BYTES + 1))
    with pytest.raises(ConfigError, match=f"larger than {MAX_NOTE_BYTES} bytes"):
        list(Witness(state).run(wdir))


# ------------------------------------------------------------------------------------------
# Size limits, checked before anything is stored


def test_a_5_mb_extension_line_is_refused_and_not_stored(state: Path) -> None:
    witness = Witness(state)
    witness.cosign(sign_checkpoint(Checkpoint(ORIGIN, 0, EMPTY), LOG_KEY), now=1)
    before = _logs(state)
    big = sign_checkpoint(Checkpoint(ORIGIN, 0, EMPTY, ("x" * 5_000_000,)), LOG_KEY)
    with pytest.raises(Refused, match=f"over {MAX_NOTE_BYTES} bytes"):
        witness.cosign(big)
    long_line = sign_checkpoint(Checkpoint(ORIGIN, 0, EMPTY, ("x" * 2000,)), LOG_KEY)
    with pytest.raises(Refused, match=r"line 4 .* is 2000 bytes; a line may have at most"):
        witness.cosign(long_line)
    many = tuple(f"ext {i}" for i in range(MAX_EXTENSION_LINES + 1))
    with pytest.raises(Refused, match=f"{MAX_EXTENSION_LINES + 1} extension lines"):
        witness.cosign(sign_checkpoint(Checkpoint(ORIGIN, 0, EMPTY, many), LOG_KEY))
    assert _logs(state) == before
    fits = tuple(f"ext {i}" for i in range(MAX_EXTENSION_LINES))
    witness.cosign(sign_checkpoint(Checkpoint(ORIGIN, 0, EMPTY, fits), LOG_KEY))


@pytest.mark.parametrize("size", [MAX_ORIGIN_BYTES + 1, MAX_LINE_BYTES + 1, 1_000_000])
def test_a_long_origin_is_refused_with_a_short_message(state: Path, size: int) -> None:
    origin = "o" * size
    note = sign_checkpoint(Checkpoint(origin, 0, EMPTY), SigningKey.generate("k"))
    with pytest.raises(Refused) as caught:
        Witness(state).cosign(note)
    message = str(caught.value)
    assert len(message) < 300, message
    assert "o" * 100 not in message


def test_an_unknown_origin_is_quoted_cut(state: Path) -> None:
    origin = "u" * MAX_ORIGIN_BYTES
    key = SigningKey.generate(origin)
    with pytest.raises(Refused, match=r"unknown log 'u{80}'\.\.\. \(256 characters\)"):
        Witness(state).cosign(sign_checkpoint(Checkpoint(origin, 0, EMPTY), key))


# ------------------------------------------------------------------------------------------
# Only verified signatures are carried into the output


def test_only_verified_signatures_are_carried(state: Path) -> None:
    note = sign_checkpoint(Checkpoint(ORIGIN, 0, EMPTY), LOG_KEY)
    text = note[: note.index("\n\n") + 1]
    other_witness = WitnessKey(SigningKey.generate("other.example/w2"))
    stranger = SigningKey.generate("stranger.example")
    impostor = SigningKey.generate(ORIGIN)  # the log's name, another key
    bogus_name_line = signature_line("made.up", b"\x01\x02\x03\x04", b"\x00" * 64)
    hostile = (
        note
        + other_witness.cosign(text.encode(), 5)
        + signature_line(stranger.name, stranger.key_id, stranger.sign(text.encode()))
        + signature_line(impostor.name, impostor.key_id, b"\x00" * 64)
        + bogus_name_line
    )
    done = Witness(state).witness(hostile, now=7)
    log_line = note[note.index("\n\n") + 2 :]
    mine = Witness(state).key
    assert done.note == text + "\n" + log_line + mine.cosign(text.encode(), 7)
    assert done.dropped == (
        f"'other.example/w2'+{other_witness.key_id.hex()}",
        f"'stranger.example'+{stranger.key_id.hex()}",
        f"{ORIGIN!r}+{impostor.key_id.hex()}",
        "'made.up'+01020304",
    )
    assert open_cosigned(done.note, mine.verifier(), log_key=LOG_KEY.verifier()).timestamp == 7


def test_cli_says_which_lines_it_dropped(tmp_path: Path, state: Path) -> None:
    note = sign_checkpoint(Checkpoint(ORIGIN, 0, EMPTY), LOG_KEY)
    text = note[: note.index("\n\n") + 1]
    other = WitnessKey(SigningKey.generate("other.example/w2"))
    path = tmp_path / "note"
    path.write_text(note + other.cosign(text.encode(), 5))
    code, out, err = _otaudit("witness", "cosign", "--state", str(state), str(path))
    assert code == 0, err
    assert "other.example/w2" not in out
    assert "dropped 1 signature line(s) this witness cannot verify" in err
    assert f"'other.example/w2'+{other.key_id.hex()}" in err
