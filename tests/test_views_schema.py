"""What user SQL can read, said in one place: ``otaudit.views`` agrees with both stores'
real views and with docs/querying.md, and ``sql --schema`` and ``GET /api/v1/schema``
answer from it (readers cannot list tables themselves)."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import httpx
import psycopg

from minilog import run_cli, sealed_ledger
from otaudit import datadir, views
from otaudit.demo import free_port
from otaudit.store.sqlite import SQLiteStore
from pgcluster import PgServer
from support import Server, audit_request

DOCS = Path(__file__).resolve().parents[1] / "docs" / "querying.md"


def test_the_table_is_the_sqlite_views(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "ledger.db")
    store.close()
    conn = sqlite3.connect(tmp_path / "ledger.db")
    try:
        for view in views.VIEWS:
            info = conn.execute(f"PRAGMA table_info({view})").fetchall()
            assert [row[1] for row in info] == [c.name for c in views.COLUMNS], view
    finally:
        conn.close()


def test_the_table_is_the_postgres_views(pg: PgServer, tmp_path: Path) -> None:
    url = pg.database()
    datadir.open_store(tmp_path, url, readonly=False).close()
    with psycopg.connect(url) as conn:
        for view in views.VIEWS:
            rows = conn.execute(
                "SELECT column_name, udt_name FROM information_schema.columns"
                " WHERE table_schema = 'otaudit' AND table_name = %s ORDER BY ordinal_position",
                (view,),
            ).fetchall()
            assert [r[0] for r in rows] == [c.name for c in views.COLUMNS], view
            types = {"int8": "bigint", "timestamptz": "timestamptz", "text": "text"}
            assert [types.get(r[1], r[1]) for r in rows] == [c.postgres for c in views.COLUMNS]


def test_the_docs_list_the_same_columns() -> None:
    table = DOCS.read_text().split("## Columns", 1)[1].split("\n## ", 1)[0]
    documented = [
        name for cells in re.findall(r"^\| (`[^|]+`) \|", table, re.M)
        for name in re.findall(r"`([a-z_]+)`", cells)
    ]  # fmt: skip
    assert documented == [c.name for c in views.COLUMNS]
    for view in views.VIEWS:
        assert f"`{view}`" in DOCS.read_text()


def test_sql_schema_lists_views_and_columns(tmp_path: Path) -> None:
    data = tmp_path / "data"
    sealed_ledger(data, audit_request(2))
    shown = run_cli("sql", "--schema", "--data", data, "--format", "json")
    assert shown.exit_code == 0, shown.stderr
    document = json.loads(shown.stdout)
    assert document["views"] == views.VIEWS
    assert [c["name"] for c in document["columns"]] == [c.name for c in views.COLUMNS]
    table = run_cli("sql", "--schema", "--data", data)
    assert "views: audit_records (every audit record)" in table.stdout
    assert "22 column(s)" in table.stdout
    missing = run_cli("sql", "--data", data)
    assert missing.exit_code == 2 and "or --schema" in missing.stderr


def test_the_read_api_serves_the_schema(tmp_path: Path) -> None:
    port = free_port()
    server = Server(tmp_path / "data", extra_args=["--read-api", f"127.0.0.1:{port}"]).start()
    try:
        got = httpx.get(f"http://127.0.0.1:{port}/api/v1/schema", timeout=10)
    finally:
        server.stop()
    assert got.status_code == 200, got.text
    document = got.json()
    assert document["views"] == views.VIEWS
    assert document["columns"][0] == {
        "name": "seq", "sqlite": "integer", "postgresql": "bigint",
        "meaning": views.COLUMNS[0].meaning,
    }  # fmt: skip
