"""One contract, both stores: every test here runs on SQLite and on PostgreSQL.

What a store must do is in ``otaudit.store.base.Store``: dense numbering,
idempotent appends, stored tree nodes that give RFC 9162 roots, insert-once
checkpoints and metadata, append-only enforced by the database itself,
and versioned migrations. User SQL has a contract of its own
(``tests/store/test_user_sql.py``).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest
from tamper_sql import tamperer

from otaudit import datadir, merkle, tree
from otaudit.errors import ConfigError, StoreError
from otaudit.store.base import Store, StoredCheckpoint
from sealing import entries


def test_append_numbers_densely_and_skips_what_it_holds(any_store: Store) -> None:
    batch = entries(10)
    assert any_store.append(batch[:4]).seqs == [0, 1, 2, 3]
    # A retried batch with new records: held ones get None, new ones follow on.
    again = any_store.append([batch[2], batch[4], batch[3], batch[4], batch[5]])
    assert again.seqs == [None, 4, None, None, 5]
    assert again.tree_size == 6
    assert any_store.append([]).seqs == []
    assert any_store.tree_size() == 6
    stored = list(any_store.iter_records())
    assert [r.seq for r in stored] == list(range(6))
    for record, entry in zip(stored, batch[:6], strict=True):
        assert (record.sealed, record.dedup_key, record.columns) == (
            entry.sealed, entry.dedup_key, entry.columns,
        )  # fmt: skip
    assert [r.seq for r in any_store.iter_records(2, 4)] == [2, 3]
    assert list(any_store.iter_level(0, 4)) == [(4, batch[4].leaf), (5, batch[5].leaf)]


def test_tree_nodes_give_the_rfc9162_tree(any_store: Store) -> None:
    batch = entries(37)
    at = 0
    for size in (1, 2, 3, 8, 7, 16):  # uneven batches cross every subtree boundary
        any_store.append(batch[at : at + size])
        at += size
    leaves = [e.leaf for e in batch]
    for size in range(1, 38):
        assert tree.stored_root(any_store, size) == merkle.root_hash(leaves[:size])
    proof = tree.stored_inclusion_proof(any_store, 11, 37)
    merkle.verify_inclusion(leaves[11], 11, 37, proof, merkle.root_hash(leaves))
    proof = tree.stored_consistency_proof(any_store, 13, 37)
    merkle.verify_consistency(
        13, 37, proof, merkle.root_hash(leaves[:13]), merkle.root_hash(leaves)
    )
    with pytest.raises(StoreError, match="level 0 idx 99 is missing"):
        any_store.nodes([(0, 1), (0, 99)])


def test_checkpoints_and_metadata_are_written_once(any_store: Store) -> None:
    assert any_store.latest_checkpoint() is None
    first = StoredCheckpoint(1, b"\x01" * 32, 10, "note 1\n")
    second = StoredCheckpoint(5, b"\x05" * 32, 20, "note 5\n")
    any_store.add_checkpoint(second)
    any_store.add_checkpoint(first)
    assert any_store.checkpoints() == [first, second]
    assert any_store.latest_checkpoint() == second
    with pytest.raises(StoreError):
        any_store.add_checkpoint(StoredCheckpoint(5, b"\x06" * 32, 30, "other\n"))
    assert any_store.checkpoints() == [first, second]
    any_store.set_meta("origin", "example.com/log")
    with pytest.raises(StoreError):
        any_store.set_meta("origin", "attacker/log")
    assert any_store.meta("origin") == "example.com/log"
    assert any_store.meta("absent") is None


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE records SET actor = 'mallory'",
        "DELETE FROM records",
        "UPDATE tree_nodes SET idx = idx + 1",
        "DELETE FROM checkpoints",
        "UPDATE meta SET value = 'x'",
    ],
)
def test_the_database_refuses_changes(any_store: Store, statement: str) -> None:
    any_store.append(entries(3))
    any_store.add_checkpoint(StoredCheckpoint(3, b"\x03" * 32, 1, "n\n"))
    any_store.set_meta("k", "v")
    with pytest.raises((sqlite3.Error, psycopg.Error), match="append-only"):
        tamperer(any_store).guarded(statement)
    assert any_store.tree_size() == 3


def test_truncate_is_refused(any_store: Store, store_url: str) -> None:
    db = tamperer(any_store)
    if store_url.startswith("sqlite"):
        # SQLite has no TRUNCATE; its DELETE without WHERE is refused above.
        with pytest.raises(sqlite3.Error):
            db.guarded("TRUNCATE records")
        return
    any_store.append(entries(2))
    for table in ("records", "tree_nodes", "checkpoints", "meta", "schema_migrations"):
        with pytest.raises(psycopg.Error, match="append-only: TRUNCATE"):
            db.guarded(f"TRUNCATE {table}")
    assert any_store.tree_size() == 2


def test_a_new_ledger_is_at_the_latest_schema_version(
    any_store: Store, store_url: str, tmp_path: Path
) -> None:
    latest = any_store.migrations[-1].version
    assert latest >= 2
    assert any_store.schema_version() == latest
    assert any_store.migrate(online_only=True) == []
    # A ledger written by a newer otaudit is refused, not misread.
    tamperer(any_store).guarded(
        "INSERT INTO schema_migrations VALUES (99, 'from the future', '2030-01-01T00:00:00Z')"
    )
    with pytest.raises(ConfigError, match="schema version 99 is newer than this otaudit"):
        datadir.open_store(tmp_path, store_url, readonly=True)
