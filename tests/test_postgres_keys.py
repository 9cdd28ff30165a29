"""Keys beside a PostgreSQL ledger: a signing key of another log in ./otaudit-data is
passed over instead of failing as a mismatch, and a node's data directory answers
``key show`` with its own key (issue: day-to-day use, "PostgreSQL and keys")."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from otaudit.keys import SigningKey
from pgcluster import PgServer
from support import Server, otaudit


def _in(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "otaudit", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_a_key_of_another_log_beside_a_postgres_ledger_is_passed_over(
    pg: PgServer, tmp_path: Path
) -> None:
    url = pg.database()
    node = tmp_path / "node"
    server = Server(node, extra_args=["--store", url]).start()
    server.stop()
    node_key = SigningKey.load(node / "signing.key").verifier()
    # An earlier SQLite ledger's data directory where the user runs commands.
    work = tmp_path / "work"
    (work / "otaudit-data").mkdir(parents=True)
    SigningKey.generate("otaudit/earlier").save(work / "otaudit-data" / "signing.key")

    unconfirmed = _in(work, "verify", "--store", url)
    assert unconfirmed.returncode == 1
    assert "cannot be confirmed" in unconfirmed.stdout + unconfirmed.stderr
    assert "replaced" not in unconfirmed.stdout + unconfirmed.stderr
    given = _in(work, "verify", "--store", url, "--key", str(node_key))
    assert given.returncode == 0, given.stdout + given.stderr
    confirmed = _in(work, "verify", "--store", url, "--data", str(node))
    assert confirmed.returncode == 0, confirmed.stdout + confirmed.stderr

    shown = otaudit("key", "show", "--data", str(node))
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == str(node_key)
    assert "holds no ledger, only the signing key" in shown.stderr


def test_another_key_in_the_data_directory_of_its_own_ledger_is_still_a_swap(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    server = Server(data).start()
    server.stop()
    (data / "signing.key").unlink()
    SigningKey.generate("otaudit/other").save(data / "signing.key")
    result = otaudit("verify", "--data", str(data))
    assert result.returncode == 1
    assert "is not the key of the signing key" in result.stdout + result.stderr
