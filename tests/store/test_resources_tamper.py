"""Tampering with a resource kept once, or with how a row refers to it, fails ``verify``.

A ledger of two resources (records 0-9 share one, records 10-19 the other) is
signed; then someone with database access switches off the append-only
triggers and changes one thing. ``verify`` must name the first record whose
sealed bytes or columns that changes.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from test_resources_once import ORIGIN, big_request, sealed_entries

from otaudit import tree
from otaudit.checkpoint import Checkpoint, sign_checkpoint
from otaudit.errors import VerificationError
from otaudit.keys import SigningKey, VerifierKey
from otaudit.store.base import Store, StoredCheckpoint
from otaudit.store.postgres import PostgresStore
from otaudit.store.sqlite import SQLiteStore
from otaudit.verify import verify_ledger


@dataclass
class Ledger:
    """A signed ledger of two resources and a way to change it behind otaudit's back."""

    store: Store
    key: VerifierKey
    hashes: tuple[bytes, bytes]
    bodies: tuple[bytes, bytes]

    def sql(self, statement: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """Run ``statement`` (``?`` placeholders) with every trigger off."""
        store = self.store
        if isinstance(store, SQLiteStore):
            conn = sqlite3.connect(store.path, isolation_level=None)
            try:
                for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'"):
                    conn.execute(f"DROP TRIGGER {name}")
                return conn.execute(statement, params).fetchall()
            finally:
                conn.close()
        assert isinstance(store, PostgresStore)
        with psycopg.connect(store.dsn, autocommit=True) as pg:
            pg.execute("SET search_path = otaudit")
            pg.execute("ALTER TABLE records DISABLE TRIGGER USER")
            pg.execute("ALTER TABLE resources DISABLE TRIGGER USER")
            cur = pg.execute(statement.replace("?", "%s"), params)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []

    def hstore(self, text: str) -> str:
        """A flattened-resource value in the store's own type, as an SQL expression."""
        return f"'{text}'::hstore" if isinstance(self.store, PostgresStore) else f"'{{{text}}}'"


@pytest.fixture
def ledger(any_store: Store) -> Iterator[Ledger]:
    entries = sealed_entries(big_request("a", 10)) + sealed_entries(big_request("b", 10))
    any_store.append(entries)
    any_store.set_meta("origin", ORIGIN)
    key = SigningKey.generate(ORIGIN)
    size = any_store.tree_size()
    root = tree.root_at(any_store, size)
    note = sign_checkpoint(Checkpoint(ORIGIN, size, root), key)
    any_store.add_checkpoint(StoredCheckpoint(size, root, time.time_ns(), note))
    parts = (entries[0].resource, entries[10].resource)
    assert parts[0] is not None and parts[1] is not None
    verifier = VerifierKey.parse(key.verifier_key())
    assert verify_ledger(any_store, verifier).records == 20
    yield Ledger(any_store, verifier, (parts[0].hash, parts[1].hash),
                 (parts[0].body, parts[1].body))  # fmt: skip


def _cut_bytes_changed(ledger: Ledger) -> None:
    (stored,) = ledger.sql("SELECT sealed FROM records WHERE seq = 7")[0]
    changed = bytes(stored).replace(b'"name":"login"', b'"name":"logon"')
    assert changed != bytes(stored)
    ledger.sql("UPDATE records SET sealed = ? WHERE seq = 7", (changed,))


TAMPERING: dict[str, tuple[Callable[[Ledger], object], int, str]] = {
    "resource-body-changed": (
        lambda t: t.sql(
            "UPDATE resources SET body = ? WHERE hash = ?",
            (t.bodies[1].replace(b'"svc-b"', b'"svc-x"'), t.hashes[1]),
        ),
        10, "the resource was altered",
    ),
    "resource-body-and-hash-changed": (
        lambda t: t.sql(
            "UPDATE resources SET body = ?, hash = ? WHERE hash = ?",
            (t.bodies[1].replace(b'"svc-b"', b'"svc-x"'),
             hashlib.sha256(t.bodies[1].replace(b'"svc-b"', b'"svc-x"')).digest(), t.hashes[1]),
        ),
        10, "is not in the resources table",
    ),
    "resource-flat-changed": (
        lambda t: t.sql(
            f"UPDATE resources SET flat = {t.hstore('service.name=>other')} WHERE hash = ?"
            if isinstance(t.store, PostgresStore)
            else "UPDATE resources SET flat = '{\"service.name\":\"other\"}' WHERE hash = ?",
            (t.hashes[0],),
        ),
        0, "column resource",
    ),
    "resource-row-deleted": (
        lambda t: t.sql("DELETE FROM resources WHERE hash = ?", (t.hashes[1],)),
        10, "is not in the resources table",
    ),
    "resource-hash-swapped": (
        lambda t: t.sql("UPDATE records SET resource_hash = ? WHERE seq = 15", (t.hashes[0],)),
        15, "seq 15",
    ),
    "resource-hash-unknown": (
        lambda t: t.sql("UPDATE records SET resource_hash = ? WHERE seq = 12", (bytes(32),)),
        12, "is not in the resources table",
    ),
    "resource-hash-removed": (
        lambda t: t.sql("UPDATE records SET resource_hash = NULL, resource_at = NULL"
                        " WHERE seq = 5"),
        5, "seq 5",
    ),
    "resource-at-moved": (
        lambda t: t.sql("UPDATE records SET resource_at = resource_at + 1 WHERE seq = 3"),
        3, "seq 3",
    ),
    "resource-at-out-of-range": (
        lambda t: t.sql("UPDATE records SET resource_at = 1000000 WHERE seq = 4"),
        4, "seq 4",
    ),
    "cut-sealed-bytes-changed": (_cut_bytes_changed, 7, "seq 7"),
    "own-resource-column-set": (
        lambda t: t.sql(
            f"UPDATE records SET resource = {t.hstore('service.name=>other')} WHERE seq = 16"
            if isinstance(t.store, PostgresStore)
            else "UPDATE records SET resource = '{\"service.name\":\"other\"}' WHERE seq = 16"
        ),
        16, "column resource",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(TAMPERING))
def test_tampering_with_a_kept_resource_is_found(ledger: Ledger, case: str) -> None:
    tamper, seq, words = TAMPERING[case]
    tamper(ledger)
    with pytest.raises(VerificationError) as found:
        verify_ledger(ledger.store, ledger.key)
    error = found.value
    assert error.seq == seq, str(error)
    assert f"seq {seq}" in str(error)
    assert words in str(error)


def test_a_resource_is_inserted_once_and_never_changed(ledger: Ledger) -> None:
    """A re-insert of a held resource is a no-op; UPDATE and DELETE are refused."""
    store = ledger.store
    again = sealed_entries(big_request("b", 3))
    store.append(again)
    assert _count(store, "SELECT count(*) FROM {schema}resources") == 2
    for statement in ("UPDATE {schema}resources SET flat = flat", "DELETE FROM {schema}resources"):
        with pytest.raises((sqlite3.Error, psycopg.Error), match="append-only"):
            _count(store, statement)


def _count(store: Store, statement: str) -> int:
    if isinstance(store, SQLiteStore):
        conn = sqlite3.connect(store.path, isolation_level=None)
        try:
            rows = conn.execute(statement.format(schema="")).fetchall()
        finally:
            conn.close()
    else:
        assert isinstance(store, PostgresStore)
        with psycopg.connect(store.dsn, autocommit=True) as pg:
            cur = pg.execute(statement.format(schema="otaudit."))  # type: ignore[arg-type]
            rows = cur.fetchall() if cur.description else []
    return int(rows[0][0]) if rows else 0
