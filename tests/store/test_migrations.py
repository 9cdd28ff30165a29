"""Versioned migrations: ``otaudit migrate``, and what ``serve`` and readers do with old schemas."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg

from otaudit.store.postgres import PostgresStore
from otaudit.store.postgres_schema import MIGRATIONS as PG_MIGRATIONS
from otaudit.store.sqlite_schema import MIGRATIONS as SQLITE_MIGRATIONS
from pgcluster import PgServer
from support import Server, audit_request, otaudit, post


def test_migrate_reports_and_is_repeatable(store_url: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    latest = (SQLITE_MIGRATIONS if store_url.startswith("sqlite") else PG_MIGRATIONS)[-1].version
    dry = otaudit("migrate", "--dry-run", "--store", store_url, "--data", str(data))
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines()[-1] == f"schema version 0; {latest} migration(s) pending"
    first = otaudit("migrate", "--store", store_url, "--data", str(data))
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines()[0].startswith("applied: 1 ")
    assert first.stdout.splitlines()[-1] == f"schema version {latest} (current)"
    again = otaudit("migrate", "--store", store_url, "--data", str(data))
    assert again.stdout == f"schema version {latest} (current)\n"


def _version_1_ledger(path: Path) -> None:
    """A ledger as the first release wrote it: migration 1 only, no history table."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.executescript("BEGIN;" + SQLITE_MIGRATIONS[0].script + "COMMIT;")
    finally:
        conn.close()


def test_an_old_sqlite_ledger_is_migrated_and_keeps_verifying(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    _version_1_ledger(data / "ledger.db")
    # Readers never migrate: they say what to do.
    latest = SQLITE_MIGRATIONS[-1].version
    old = otaudit("sql", "--data", str(data), "SELECT count(*) FROM audit_records")
    assert old.returncode == 2
    assert f"schema version 1, this otaudit needs {latest}: run `otaudit migrate`" in old.stderr
    # serve leaves the migration that copies the records table to `otaudit migrate`.
    refused = otaudit("serve", "--data", str(data))
    assert refused.returncode == 2
    assert "migration 6 (compressed records, dedup keys found in time order) must run" \
        in refused.stderr  # fmt: skip
    done = otaudit("migrate", "--data", str(data))
    assert done.returncode == 0, done.stderr
    server = Server(data).start()
    assert post(server, audit_request(5)).status_code == 200
    assert server.stop() == 0
    conn = sqlite3.connect(data / "ledger.db")
    try:
        history = conn.execute("SELECT version, description FROM schema_migrations").fetchall()
    finally:
        conn.close()
    assert [v for v, _ in history] == list(range(1, latest + 1))
    result = otaudit("verify", "--data", str(data))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK: 5 records verified")


def test_a_ledger_from_a_newer_otaudit_is_refused(tmp_path: Path) -> None:
    future = SQLITE_MIGRATIONS[-1].version + 1
    server = Server(tmp_path / "data").start()
    assert server.stop() == 0
    conn = sqlite3.connect(server.data / "ledger.db", isolation_level=None)
    try:
        conn.execute("INSERT INTO schema_migrations VALUES (?, 'from the future', 'x')", (future,))
    finally:
        conn.close()
    result = otaudit("serve", "--data", str(server.data))
    assert result.returncode == 2
    assert (
        f"ledger schema version {future} is newer than this otaudit understands ({future - 1})"
        in result.stderr
    )


def test_serve_leaves_a_blocking_migration_to_otaudit_migrate(pg: PgServer, tmp_path: Path) -> None:
    """PostgreSQL migration 3 builds an index that blocks appends while it runs: on a ledger in
    use, serve stops and asks for `otaudit migrate`; on a new ledger it applies everything."""
    url = pg.database()
    store = PostgresStore(url)
    try:
        for m in store.migrations[:2]:  # a ledger migrated by an otaudit that knew 2
            with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
                conn.execute(m.script)
                conn.execute(
                    "INSERT INTO otaudit.schema_migrations VALUES (%s, %s, now())",
                    (m.version, m.description),
                )
    finally:
        store.close()
    refused = otaudit("serve", "--data", str(tmp_path / "data"), "--store", url)
    assert refused.returncode == 2
    assert "migration 3 (index for attributes['audit.action']), 6 (dedup keys found in time" \
        " order) must run with every otaudit process stopped" in refused.stderr  # fmt: skip
    done = otaudit("migrate", "--store", url, "--data", str(tmp_path / "data"))
    assert done.stdout.splitlines() == [
        "applied: 3 index for attributes['audit.action']",
        "applied: 4 API tokens",
        "applied: 5 resources kept once",
        "applied: 6 dedup keys found in time order",
        "applied: 7 removals covered by receipts",
        "schema version 7 (current)",
    ]
    server = Server(tmp_path / "data", extra_args=["--store", url]).start()
    assert post(server, audit_request(2)).status_code == 200
    assert server.stop() == 0
