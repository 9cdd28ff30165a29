"""A database administrator edits the PostgreSQL ledger behind otaudit's back: ``verify`` finds it.

The administrator first switches off the append-only triggers (an owner can),
then changes what queries read. Every change is found and located, including
changes to the ``hstore`` attribute columns that the SQL views expose.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from pgcluster import PgServer
from support import Server, audit_request, otaudit, post

RECORDS = 30
TAMPERING = {
    "attribute-value-changed": (
        "UPDATE records SET attributes = attributes || 'audit.action=>read'::hstore WHERE seq = 7",
        ["seq 7", "attributes"],
    ),
    "attribute-removed": (
        "UPDATE records SET attributes = delete(attributes, 'user.id') WHERE seq = 8",
        ["seq 8", "attributes"],
    ),
    "resource-changed": (
        "UPDATE records SET resource = 'service.name=>other'::hstore WHERE seq = 9",
        ["seq 9", "resource"],
    ),
    "actor-changed": ("UPDATE records SET actor = 'mallory' WHERE seq = 3", ["seq 3", "actor"]),
    "sealed-bytes-changed": (
        "UPDATE records SET sealed = overlay(sealed placing 'X' from 40 for 1) WHERE seq = 11",
        ["seq 11"],
    ),
    "middle-row-deleted": ("DELETE FROM records WHERE seq = 20", ["seq 20"]),
    "tail-truncated": (
        f"DELETE FROM records WHERE seq >= {RECORDS - 4}",
        [f"seq {RECORDS - 4} is missing"],
    ),
}


@pytest.fixture(scope="module")
def ledger(pg: PgServer, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A PostgreSQL ledger of RECORDS records (its template database) and the node's data dir."""
    url = pg.database()
    server = Server(tmp_path_factory.mktemp("pg-tamper") / "data", extra_args=["--store", url])
    server.start()
    assert post(server, audit_request(RECORDS)).status_code == 200
    assert server.stop() == 0
    return url, server.data


@pytest.mark.parametrize("case", list(TAMPERING))
def test_tampering_is_found(pg: PgServer, ledger: tuple[str, Path], case: str) -> None:
    template_url, data = ledger
    url = pg.database()
    name = url.rsplit("/", 1)[1]
    template = template_url.rsplit("/", 1)[1]
    with psycopg.connect(pg.dsn, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE "{name}"')  # type: ignore[arg-type]
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')  # type: ignore[arg-type]
    statement, named = TAMPERING[case]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET search_path = otaudit")
        conn.execute("ALTER TABLE records DISABLE TRIGGER USER")
        conn.execute(statement)  # type: ignore[arg-type]
    result = otaudit("verify", "--store", url, "--data", str(data))
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stderr.startswith("FAILED: ")
    for words in named:
        assert words in result.stderr, result.stderr
