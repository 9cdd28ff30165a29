"""``otaudit backup``: a consistent, verified copy of a SQLite ledger, taken while the server
writes, holding the keys' public halves and never the signing key; refusals leave nothing.

A real ``otaudit serve`` process and the real CLI throughout.
"""

from __future__ import annotations

import resource
import sqlite3
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import Server, audit_request, otaudit, post

COPY_FILES = {"ledger.db", "verifier.key", "signing.key.checkpoint"}


def client_records(ledger: Path) -> int:
    """The number of client records (not otaudit's own) in a ledger file."""
    with sqlite3.connect(f"file:{ledger}?mode=ro", uri=True) as conn:
        (count,) = conn.execute(
            "SELECT count(*) FROM records WHERE pipeline != 'otaudit'"
        ).fetchone()
    return int(count)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = Server(tmp_path / "data").start()
    try:
        yield running
    finally:
        if running.proc is not None:
            running.stop()


def test_a_backup_taken_while_the_server_writes_verifies_and_holds_every_acknowledged_record(
    server: Server, tmp_path: Path
) -> None:
    acknowledged = 0
    for _ in range(10):
        assert post(server, audit_request(50)).status_code == 200
        acknowledged += 50
    stop = threading.Event()
    sent_during: list[int] = []

    def send() -> None:
        while not stop.is_set():
            assert post(server, audit_request(20)).status_code == 200
            sent_during.append(20)

    sender = threading.Thread(target=send)
    sender.start()
    try:
        out = tmp_path / "copy"
        result = otaudit("backup", "--data", str(server.data), "--out", str(out))
    finally:
        stop.set()
        sender.join()
    assert result.returncode == 0, result.stderr
    assert sent_during, "no export arrived while the backup ran"
    assert "OK: the copy verifies" in result.stdout
    assert "never for serving" in result.stdout

    # 1. the copy holds the public halves only, privately
    assert {p.name for p in out.iterdir()} == COPY_FILES
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    for path in out.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    # The key field whole (PRIVATE+KEY+name+id+base64): base64 holds '+' itself, and the
    # text after its last '+' can be a few characters that any large file may contain.
    secret = (server.data / "signing.key").read_bytes().strip().split(b"+", 4)[4]
    assert all(secret not in path.read_bytes() for path in out.iterdir())
    assert "PRIVATE" not in (out / "verifier.key").read_text()

    # 2. every record acknowledged before the backup started is in it, and it verifies
    assert client_records(out / "ledger.db") >= acknowledged
    verified = otaudit("verify", "--data", str(out))
    assert verified.returncode == 0, verified.stderr
    assert "extends the checkpoint the server saved" in verified.stdout

    # 3. the backup is a recorded read of the original ledger
    with sqlite3.connect(f"file:{server.data / 'ledger.db'}?mode=ro", uri=True) as conn:
        kinds = conn.execute(
            "SELECT json_extract(attributes, '$.\"audit.query.kind\"') FROM records"
            " WHERE pipeline = 'otaudit'"
        ).fetchall()
    assert ("backup",) in kinds


def test_a_copy_that_cannot_be_written_leaves_nothing(server: Server, tmp_path: Path) -> None:
    """A full disk (here a file size limit) gives a precise message and no half copy."""
    assert post(server, audit_request(400, payload_bytes=400)).status_code == 200
    out = tmp_path / "copy"

    def small_files() -> None:  # Python ignores SIGXFSZ: writes past the limit fail (EFBIG)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))

    result = subprocess.run(
        [sys.executable, "-m", "otaudit", "backup", "--data", str(server.data), "--out", str(out)],
        capture_output=True, text=True, timeout=60, preexec_fn=small_files,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"cannot write the copy {out}/ledger.db.partial" in result.stderr
    assert not out.exists()


def test_refusals(server: Server, tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.mkdir(mode=0o700)
    (taken / "old").write_text("keep me")
    result = otaudit("backup", "--data", str(server.data), "--out", str(taken))
    assert result.returncode == 2
    assert "it is not empty" in result.stderr
    assert [p.name for p in taken.iterdir()] == ["old"]

    out = tmp_path / "copy"
    result = otaudit("backup", "--store", "postgresql://nobody@localhost/none", "--out", str(out))
    assert result.returncode == 2
    assert "pg_basebackup" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1

    empty = tmp_path / "empty"
    empty.mkdir()
    result = otaudit("backup", "--data", str(empty), "--out", str(out))
    assert result.returncode == 2
    assert "no ledger" in result.stderr
    assert not out.exists()


def test_a_copy_that_does_not_verify_is_not_kept(server: Server, tmp_path: Path) -> None:
    assert post(server, audit_request(30)).status_code == 200
    server.stop()
    with sqlite3.connect(server.data / "ledger.db") as conn:  # the owner edits a column
        conn.execute("DROP TRIGGER records_no_update")
        conn.execute("UPDATE records SET actor = 'mallory' WHERE seq = 7")
    out = tmp_path / "copy"
    result = otaudit("backup", "--data", str(server.data), "--out", str(out))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAILED: nothing was kept: the copy does not verify: seq 7" in result.stderr
    assert not out.exists()


def test_the_saved_checkpoint_beside_a_key_file_elsewhere_is_copied(
    server: Server, tmp_path: Path
) -> None:
    assert post(server, audit_request(10)).status_code == 200
    server.stop()
    keys = tmp_path / "keys"
    keys.mkdir()
    (server.data / "signing.key.checkpoint").rename(keys / "log.key.checkpoint")
    out = tmp_path / "copy"
    result = otaudit("backup", "--data", str(server.data), "--out", str(out),
                     "--key-file", str(keys / "log.key"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"saved checkpoint {keys / 'log.key.checkpoint'}, tree size" in result.stdout
    assert (out / "signing.key.checkpoint").read_bytes() == (
        keys / "log.key.checkpoint"
    ).read_bytes()
    assert otaudit("verify", "--data", str(out)).returncode == 0
