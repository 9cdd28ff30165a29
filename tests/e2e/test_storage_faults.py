"""Storage faults: read-only media, a full disk, unusable settings. Clear errors, nothing lost.

The mounts use tmpfs, which needs root (the test machines and CI run as root).
"""

from __future__ import annotations

import shutil
import socket
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import Server, audit_request, otaudit, post


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "mnt"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def remount(mount: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(mount)], check=True)


def test_full_disk_answers_503_keeps_the_ledger_and_recovers(tmpfs: Path) -> None:
    server = Server(tmpfs / "data").start()
    try:
        statuses = []
        for _ in range(200):
            response = post(server, audit_request(50, payload_bytes=400))
            statuses.append(response.status_code)
            if response.status_code != 200:
                break
        assert statuses[-1] == 503, statuses
        assert statuses.count(200) >= 1
        assert response.headers["Retry-After"].isdigit()
        assert "full" in response.text
        acknowledged = 50 * statuses.count(200)

        remount(tmpfs, "size=64m")  # space returns
        assert post(server, audit_request(50)).status_code == 200
        acknowledged += 50
    finally:
        server.stop()
    rows = otaudit("sql", "--data", str(server.data), "--format", "csv",
                   "SELECT count(*) FROM audit_records")  # fmt: skip
    assert rows.stdout.splitlines()[1] == str(acknowledged)
    result = otaudit("verify", "--data", str(server.data))
    assert result.returncode == 0, result.stderr


def test_verify_and_sql_work_on_read_only_media(tmpfs: Path, tmp_path: Path) -> None:
    server = Server(tmp_path / "data").start()
    assert post(server, audit_request(10)).status_code == 200
    server.stop()
    copy = tmpfs / "copy"
    copy.mkdir()
    shutil.copy(server.data / "ledger.db", copy)  # the database file alone, as handed over
    remount(tmpfs, "ro")
    result = otaudit("verify", "--data", str(copy), "--key", verifier_key(server.data))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK: 10 records verified")
    rows = otaudit(
        "sql", "--data", str(copy), "--format", "csv", "SELECT count(*) FROM audit_spans"
    )
    assert rows.stdout.splitlines() == ["count(*)", "10"]
    # A copy on read-only media is still read; the read cannot be recorded in it, and says so.
    assert rows.stderr.startswith("otaudit: warning: this read is not recorded in the ledger: ")


def verifier_key(data: Path) -> str:
    """The log's verifier key, as the operator would have kept it from the first start."""
    with sqlite3.connect(data / "ledger.db") as conn:
        return str(conn.execute("SELECT value FROM meta WHERE key = 'verifier_key'").fetchone()[0])


def test_serve_refuses_a_read_only_data_directory(tmpfs: Path) -> None:
    remount(tmpfs, "ro")
    result = otaudit("serve", "--data", str(tmpfs / "data"), "--http", "127.0.0.1:0",
                     "--grpc", "127.0.0.1:0")  # fmt: skip
    assert result.returncode == 2
    assert "cannot create data directory" in result.stderr
    assert "Read-only file system" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["verify", "--data", "/nonexistent/otaudit"], "does not exist"),
        (["sql", "--data", "/nonexistent/otaudit", "SELECT 1"], "does not exist"),
        (["serve", "--http", "localhost"], "--http expects HOST:PORT, got 'localhost'"),
        (["serve", "--grpc", "127.0.0.1:99999"], "--grpc expects HOST:PORT"),
        (["verify", "--store", "mysql://x"], "is not a store URL"),
        (["verify", "--data", "/etc/hostname"], "'/etc/hostname' is a file"),
    ],
    ids=[
        "verify-missing-dir",
        "sql-missing-dir",
        "http-no-port",
        "grpc-bad-port",
        "unknown-store",
        "data-is-a-file",
    ],
)
def test_usage_errors_exit_2_with_a_message(args: list[str], message: str) -> None:
    result = otaudit(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = otaudit("serve", "--data", str(tmp_path / "d"), "--http", f"127.0.0.1:{port}",
                         "--grpc", "127.0.0.1:0")  # fmt: skip
    assert result.returncode == 2
    assert f"cannot listen for HTTP on 127.0.0.1:{port}" in result.stderr


def test_a_ledger_with_someone_elses_key_is_refused(tmp_path: Path) -> None:
    one, two = Server(tmp_path / "one").start(), Server(tmp_path / "two").start()
    one.stop()
    two.stop()
    shutil.copy(two.data / "signing.key", one.data / "signing.key")
    result = otaudit("serve", "--data", str(one.data), "--http", "127.0.0.1:0",
                     "--grpc", "127.0.0.1:0")  # fmt: skip
    assert result.returncode == 2
    assert "is not the key of this ledger" in result.stderr
