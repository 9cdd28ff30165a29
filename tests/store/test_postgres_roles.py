"""The PostgreSQL roles: ``serve`` as a writer login, ``verify`` and ``sql`` as a reader login.

The writer can insert and read; the reader can only read; neither can change
or remove ledger rows, and the query role sees the audit views and nothing else.
"""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import pytest

from pgcluster import PgServer
from support import Server, audit_request, otaudit, post


def _login(url: str, role: str) -> str:
    """The URL with another user (no password: the throwaway server trusts local logins)."""
    return re.sub(r"^postgresql://[^@/]*@", f"postgresql://{role}@", url)


@pytest.fixture
def ledger_url(pg: PgServer, tmp_path: Path) -> str:
    """A migrated ledger database with two logins: app (writer) and auditor (reader)."""
    url = pg.database()
    done = otaudit("migrate", "--store", url, "--data", str(tmp_path / "owner"))
    assert done.returncode == 0, done.stderr
    with psycopg.connect(url, autocommit=True) as conn:
        for login, group in (("app", "otaudit_writer"), ("auditor", "otaudit_reader")):
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (login,)).fetchone()
            if not exists:
                conn.execute(f"CREATE ROLE {login} LOGIN")
            conn.execute(f"GRANT {group} TO {login}")
    return url


def test_writer_and_reader_logins(pg: PgServer, ledger_url: str, tmp_path: Path) -> None:
    app, auditor = _login(ledger_url, "app"), _login(ledger_url, "auditor")
    server = Server(tmp_path / "data", extra_args=["--store", app]).start()
    assert post(server, audit_request(4)).status_code == 200
    assert server.stop() == 0

    verified = otaudit("verify", "--store", auditor, "--data", str(tmp_path / "data"))
    assert verified.returncode == 0, verified.stderr
    # User SQL runs as a login that can only read the views; the reader login is refused.
    refused = otaudit("sql", "--store", auditor, "SELECT 1")
    assert refused.returncode == 2
    assert "refusing to run user SQL as 'auditor'" in refused.stderr
    rows = otaudit("sql", "--store", auditor, "--query-store", pg.query_url(ledger_url),
                   "--format", "csv", "SELECT count(*) AS n FROM audit_spans")  # fmt: skip
    assert rows.stdout.splitlines() == ["n", "4"]
    # A login that may only read cannot append the record of its read, and is told so.
    assert "this read is not recorded in the ledger" in rows.stderr
    assert "permission denied for table records" in rows.stderr
    bundle = tmp_path / "bundle"
    exported = otaudit("export", "--store", auditor, "--data", str(tmp_path / "data"),
                       "--out", str(bundle))  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    checked = otaudit("verify-bundle", str(bundle))
    assert checked.returncode == 0, checked.stderr

    for login, statement, message in (
        (app, "UPDATE otaudit.records SET actor = 'x'", "permission denied"),
        (app, "DELETE FROM otaudit.checkpoints", "permission denied"),
        (app, "TRUNCATE otaudit.records", "permission denied"),
        (app, "DROP TABLE otaudit.records", "must be owner"),
        (auditor, "INSERT INTO otaudit.meta VALUES ('k', 'v')", "permission denied"),
        (auditor, "UPDATE otaudit.meta SET value = 'x'", "permission denied"),
    ):
        with psycopg.connect(login, autocommit=True) as conn, pytest.raises(psycopg.Error) as info:
            conn.execute(statement)
        assert message in str(info.value), (statement, info.value)
    # Even the owner is stopped by the triggers.
    with psycopg.connect(ledger_url, autocommit=True) as conn, pytest.raises(psycopg.Error) as info:
        conn.execute("DELETE FROM otaudit.records")
    assert "append-only" in str(info.value)
