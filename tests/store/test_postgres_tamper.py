"""A database administrator without the signing key rewrites the PostgreSQL ledger.

The administrator switches off the append-only triggers (an owner can) and
rebuilds a consistent forged history, or signs it with a key of their own:
only what they cannot reach (the checkpoint the server saved next to its
key, a pinned verifier key) tells. Changes to single rows, columns (the
``hstore`` attributes too) and tree nodes are found on every store by the
contract suite (``tests/contract/test_contract_tamper.py``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest

from forgery import DELETE_FROM_SEQ, forged_tail
from otaudit import tree
from otaudit.checkpoint import Checkpoint, sign_checkpoint
from otaudit.keys import SigningKey
from otaudit.store.postgres import open_postgres
from pgcluster import PgServer
from support import Server, audit_request, otaudit, post

RECORDS = 30


@pytest.fixture(scope="module")
def ledger(pg: PgServer, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A PostgreSQL ledger of RECORDS records (its template database) and the node's data dir."""
    url = pg.database()
    server = Server(tmp_path_factory.mktemp("pg-tamper") / "data", extra_args=["--store", url])
    server.start()
    assert post(server, audit_request(RECORDS)).status_code == 200
    assert server.stop() == 0
    return url, server.data


def _clone(pg: PgServer, ledger: tuple[str, Path], tmp_path: Path) -> tuple[str, Path]:
    """A new database holding the ledger, and a copy of the server's data directory (its
    saved checkpoint changes when a command signs what it records there)."""
    template_url, data = ledger
    url = pg.database()
    name = url.rsplit("/", 1)[1]
    template = template_url.rsplit("/", 1)[1]
    with psycopg.connect(pg.dsn, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE "{name}"')
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    return url, copy


# -- a database administrator without the signing key (issue 13, findings 3 and 4) ---------


def _rewrite_history(url: str, seq: int) -> None:
    """Rewrite seq's actor and append everything from it again through otaudit's own store
    code, deleting the checkpoints above size 0, the triggers switched off first."""
    store = open_postgres(url, readonly=True)
    try:
        tail = forged_tail(store, seq, b'"alice"', b'"mallory"')
    finally:
        store.close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET search_path = otaudit")
        for table in ("records", "tree_nodes", "checkpoints", "meta"):
            conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        for statement in DELETE_FROM_SEQ:
            conn.execute(statement.format(seq=seq, keep=0))
    store = open_postgres(url, readonly=False)
    try:
        store.append(tail)
    finally:
        store.close()


def _checkpoint_sizes(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT tree_size FROM otaudit.checkpoints ORDER BY 1").fetchall()
    return [r[0] for r in rows]


def test_a_rewritten_history_is_not_signed_again(
    pg: PgServer, ledger: tuple[str, Path], tmp_path: Path
) -> None:
    url, data = _clone(pg, ledger, tmp_path)
    size = _checkpoint_sizes(url)[-1]
    _rewrite_history(url, 5)
    assert _checkpoint_sizes(url) == [0]
    result = otaudit("verify", "--store", url, "--data", str(data))
    assert result.returncode == 1, result.stdout
    assert result.stderr.startswith(f"FAILED: saved checkpoint at tree size {size}: signed root")
    assert "the ledger was rewritten" in result.stderr

    server = Server(data, extra_args=["--store", url]).start()
    assert server.stop() == 0
    assert _checkpoint_sizes(url) == [0]  # refused at start and at stop
    with psycopg.connect(url) as conn:
        conn.execute("SET search_path = otaudit")
        (error,) = conn.execute(
            "SELECT attributes -> 'audit.query.error' FROM records "
            "WHERE pipeline = 'otaudit' AND action = 'otaudit.verify'"
        ).fetchone() or (None,)
    assert error is not None and " not consistent with the checkpoint at size " in error
    assert f"saved in {data / 'signing.key.checkpoint'}" in error


def test_a_swapped_verifier_key_is_not_trusted(
    pg: PgServer, ledger: tuple[str, Path], tmp_path: Path
) -> None:
    """An auditor with a data directory of their own (no signing key) and a reader's view
    of the database: only a key obtained from the operator and pinned tells."""
    url, data = _clone(pg, ledger, tmp_path)
    operator_key = SigningKey.load(data / "signing.key").verifier_key()
    auditor = tmp_path / "auditor"
    unpinned = otaudit("verify", "--store", url, "--data", str(auditor))
    assert unpinned.returncode == 1
    assert unpinned.stderr.startswith("FAILED: the log's verifier key cannot be confirmed: ")
    pinned = otaudit("key", "pin", "--store", url, "--data", str(auditor), "--key", operator_key)
    assert pinned.returncode == 0, pinned.stderr
    assert (auditor / "verifier.key").read_text() == operator_key + "\n"
    intact = otaudit("verify", "--store", url, "--data", str(auditor))
    assert intact.returncode == 0, intact.stderr

    # The administrator rewrites a record, replaces the key the ledger records with their
    # own, and signs the forged tree with it.
    _rewrite_history(url, 5)
    store = open_postgres(url, readonly=True)
    try:
        origin, size = store.meta("origin"), store.tree_size()
        assert origin is not None
        root = tree.stored_root(store, size)
    finally:
        store.close()
    forger = SigningKey.generate(origin)
    note = sign_checkpoint(Checkpoint(origin, size, root), forger)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE otaudit.meta SET value = %s WHERE key = 'verifier_key'",
                     (forger.verifier_key(),))  # fmt: skip
        conn.execute("DELETE FROM otaudit.checkpoints")
        conn.execute("INSERT INTO otaudit.checkpoints VALUES (%s, %s, 0, %s)", (size, root, note))

    for args in (("verify",), ("key", "show"), ("verify", "--trust-stored-key")):
        result = otaudit(*args, "--store", url, "--data", str(auditor))
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert result.stdout == ""
        assert f"is not the key pinned in {auditor / 'verifier.key'}" in result.stderr
    # Without a pin, verify and key show say so and fail rather than take the forger's key.
    for args in (("verify",), ("key", "show")):
        result = otaudit(*args, "--store", url, "--data", str(tmp_path / "someone-else"))
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert result.stdout == ""
        assert "the log's verifier key cannot be confirmed" in result.stderr
    trusted = otaudit("verify", "--store", url, "--data", str(tmp_path / "someone-else"),
                      "--trust-stored-key")  # fmt: skip
    assert trusted.returncode == 0, trusted.stderr  # the forgery is consistent with itself
    assert f"otaudit: warning: {forger.verifier_key()} is the verifier key" in trusted.stderr
