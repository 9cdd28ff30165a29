"""Tampering with a signed ledger is found and located by ``verify``, on every store.

A ledger of 20 records in two resources (records 0-9 share one, records 10-19
the other, each kept once) is signed; then someone with the database owner's
rights switches off the append-only triggers and changes one thing, in their
database's own SQL (:mod:`tamper_sql`): a record's bytes or columns, its
flattened attributes, a row deleted, added or swapped, a tree node, a
checkpoint, a resource kept once or how a row refers to it. ``verify`` must
fail naming the place (the first record the change affects, the tree node,
the checkpoint), and ``otaudit verify`` must exit 1 printing exactly that.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from tamper_sql import Tamperer, tamperer

from otaudit.errors import VerificationError
from otaudit.keys import SigningKey, VerifierKey
from otaudit.record import COLUMN_NAMES
from otaudit.store.base import Store
from otaudit.store.codec import StoredBytes
from otaudit.verify import verify_ledger
from sealing import big_request, sealed_entries, sign
from support import otaudit

RECORDS = 20
ORIGIN = "example.com/contract-tamper"
OTHER = {"service.name": "other"}  # flattened attributes that no record of the ledger has


@dataclass
class Ledger:
    """A signed ledger of two resources, and its database's way to change it."""

    store: Store
    key: SigningKey
    db: Tamperer
    hashes: tuple[bytes, bytes]
    bodies: tuple[bytes, bytes]

    def verifier(self) -> VerifierKey:
        """The log's verifier key."""
        return VerifierKey.parse(self.key.verifier_key())

    def stored(self, seq: int) -> bytes:
        """Record ``seq``'s sealed bytes as its row keeps them (its resource cut out),
        decompressed: a forger writes them back as they are, which a row may hold."""
        raw = bytes(self.db.sql("SELECT sealed FROM records WHERE seq = ?", (seq,))[0][0])

        def dictionary(dictionary_id: int) -> bytes | None:
            rows = self.db.sql("SELECT body FROM dictionaries WHERE id = ?", (dictionary_id,))
            return bytes(rows[0][0]) if rows else None

        return StoredBytes(dictionary).decode(raw)


@pytest.fixture
def ledger(any_store: Store) -> Ledger:
    entries = sealed_entries(big_request("a", 10)) + sealed_entries(big_request("b", 10))
    any_store.append(entries)
    any_store.set_meta("origin", ORIGIN)
    key = SigningKey.generate(ORIGIN)
    any_store.set_meta("verifier_key", key.verifier_key())
    sign(any_store, key, ORIGIN)
    parts = (entries[0].resource, entries[10].resource)
    assert parts[0] is not None and parts[1] is not None
    assert verify_ledger(any_store, VerifierKey.parse(key.verifier_key())).records == RECORDS
    return Ledger(any_store, key, tamperer(any_store), (parts[0].hash, parts[1].hash),
                  (parts[0].body, parts[1].body))  # fmt: skip


def _flip_bit(blob: bytes, at: int = 0) -> bytes:
    return blob[:at] + bytes([blob[at] ^ 0x01]) + blob[at + 1 :]


# -- the tampering ---------------------------------------------------------------


def record_byte_flipped(t: Ledger) -> None:
    (whole,) = [r.sealed for r in t.store.iter_records(17, 18)]
    stored = t.stored(17)
    name = b'"alice"'
    assert stored.count(name) == 1
    forged = stored.replace(name, b'"mlice"')  # still JSON, same length
    assert len(forged) == len(stored)
    json.loads(whole.replace(name, b'"mlice"'))
    t.db.sql("UPDATE records SET sealed = ? WHERE seq = 17", (forged,))


def sealed_bytes_changed(t: Ledger) -> None:
    stored = t.stored(11)
    t.db.sql("UPDATE records SET sealed = ? WHERE seq = 11", (stored[:39] + b"X" + stored[40:],))


def cut_bytes_changed(t: Ledger) -> None:
    stored = t.stored(7)
    changed = stored.replace(b'"name":"login"', b'"name":"logon"')
    assert changed != stored
    t.db.sql("UPDATE records SET sealed = ? WHERE seq = 7", (changed,))


def forged_row_appended(t: Ledger) -> None:
    rest = ", ".join(["sealed", *(f'"{c}"' for c in COLUMN_NAMES), "resource_hash",
                      "resource_at"])  # fmt: skip
    t.db.sql(
        f"INSERT INTO records (seq, dedup_key, {rest}) SELECT ?, ?, {rest} FROM records"
        " WHERE seq = 5",
        (RECORDS, hashlib.sha256(b"forged").digest()[:16]),
    )


def rows_swapped(t: Ledger) -> None:
    # Give seq 3 and seq 4 each other's content: sealed bytes, dedup key, every column.
    t.db.sql("UPDATE records SET seq = -1 WHERE seq = 3")
    t.db.sql("UPDATE records SET seq = 3 WHERE seq = 4")
    t.db.sql("UPDATE records SET seq = 4 WHERE seq = -1")


def tree_node_changed(t: Ledger) -> None:
    (node,) = t.db.sql("SELECT hash FROM tree_nodes WHERE level = 2 AND idx = 1")[0]
    t.db.sql("UPDATE tree_nodes SET hash = ? WHERE level = 2 AND idx = 1",
             (_flip_bit(bytes(node), 5),))  # fmt: skip


def leaf_hash_changed(t: Ledger) -> None:
    (leaf,) = t.db.sql("SELECT hash FROM tree_nodes WHERE level = 0 AND idx = 11")[0]
    t.db.sql("UPDATE tree_nodes SET hash = ? WHERE level = 0 AND idx = 11",
             (_flip_bit(bytes(leaf), 31),))  # fmt: skip


def checkpoint_note_altered(t: Ledger) -> None:
    size, note = t.db.sql(
        "SELECT tree_size, note FROM checkpoints ORDER BY tree_size DESC LIMIT 1"
    )[0]
    assert size == RECORDS
    lines = note.split("\n")
    root = base64.b64decode(lines[2], validate=True)
    assert len(root) == 32
    lines[2] = base64.b64encode(_flip_bit(root)).decode()
    t.db.sql("UPDATE checkpoints SET note = ? WHERE tree_size = ?", ("\n".join(lines), size))


def _changed_body(t: Ledger) -> bytes:
    return t.bodies[1].replace(b'"svc-b"', b'"svc-x"')


Tamper = Callable[[Ledger], object]
#: Each case: the change, the seq verify must name (None: not a record's), words it says.
CASES: dict[str, tuple[Tamper, int | None, list[str]]] = {
    "record-byte-flipped": (record_byte_flipped, 17, ["seq 17"]),
    "sealed-bytes-changed": (sealed_bytes_changed, 11, ["seq 11"]),
    "cut-sealed-bytes-changed": (cut_bytes_changed, 7, ["seq 7"]),
    "actor-changed": (
        lambda t: t.db.sql("UPDATE records SET actor = 'mallory' WHERE seq = 9"),
        9, ["seq 9", "actor"],
    ),
    "attribute-value-changed": (
        lambda t: t.db.sql("UPDATE records SET attributes = "
                           f"{t.db.set_attribute('attributes', 'audit.action', 'read')}"
                           " WHERE seq = 7"),
        7, ["seq 7", "attributes"],
    ),
    "attribute-removed": (
        lambda t: t.db.sql("UPDATE records SET attributes = "
                           f"{t.db.remove_attribute('attributes', 'user.id')} WHERE seq = 8"),
        8, ["seq 8", "attributes"],
    ),
    "own-resource-column-set": (
        lambda t: t.db.sql(f"UPDATE records SET resource = {t.db.flat(OTHER)} WHERE seq = 16"),
        16, ["seq 16", "column resource"],
    ),
    "middle-row-deleted": (
        lambda t: t.db.sql("DELETE FROM records WHERE seq = 13"), 13, ["seq 13"],
    ),
    "tail-truncated": (
        lambda t: t.db.sql(f"DELETE FROM records WHERE seq >= {RECORDS - 4}"),
        None, [f"seq {RECORDS - 4} is missing"],
    ),
    "last-rows-deleted": (
        lambda t: (t.db.sql(f"DELETE FROM records WHERE seq >= {RECORDS - 3}"),
                   t.db.sql(f"DELETE FROM tree_nodes WHERE level = 0 AND idx >= {RECORDS - 3}")),
        None, [f"checkpoint at tree size {RECORDS}", f"seq {RECORDS - 3} onwards"],
    ),
    "last-rows-and-their-nodes-deleted": (  # a tree of 17 leaves
        lambda t: (t.db.sql(f"DELETE FROM records WHERE seq >= {RECORDS - 3}"),
                   t.db.sql(f"DELETE FROM tree_nodes WHERE ((idx + 1) << level) > {RECORDS - 3}")),
        None, [f"seq {RECORDS - 3}"],
    ),
    "forged-row-appended": (forged_row_appended, None, [f"seq {RECORDS}"]),
    "rows-swapped": (rows_swapped, None, ["seq 3"]),
    "tree-node-changed": (tree_node_changed, None, ["level 2", "index 1"]),
    "leaf-hash-changed": (leaf_hash_changed, None, ["seq 11"]),
    "checkpoint-note-altered": (
        checkpoint_note_altered, None, [f"checkpoint at tree size {RECORDS}"],
    ),
    "resource-body-changed": (
        lambda t: t.db.sql("UPDATE resources SET body = ? WHERE hash = ?",
                           (_changed_body(t), t.hashes[1])),
        10, ["the resource was altered"],
    ),
    "resource-body-and-hash-changed": (
        lambda t: t.db.sql("UPDATE resources SET body = ?, hash = ? WHERE hash = ?",
                           (_changed_body(t), hashlib.sha256(_changed_body(t)).digest(),
                            t.hashes[1])),
        10, ["is not in the resources table"],
    ),
    "resource-flat-changed": (
        lambda t: t.db.sql(f"UPDATE resources SET flat = {t.db.flat(OTHER)} WHERE hash = ?",
                           (t.hashes[0],)),
        0, ["column resource"],
    ),
    "resource-row-deleted": (
        lambda t: t.db.sql("DELETE FROM resources WHERE hash = ?", (t.hashes[1],)),
        10, ["is not in the resources table"],
    ),
    "resource-hash-swapped": (
        lambda t: t.db.sql("UPDATE records SET resource_hash = ? WHERE seq = 15", (t.hashes[0],)),
        15, ["seq 15"],
    ),
    "resource-hash-unknown": (
        lambda t: t.db.sql("UPDATE records SET resource_hash = ? WHERE seq = 12", (bytes(32),)),
        12, ["is not in the resources table"],
    ),
    "resource-hash-removed": (
        lambda t: t.db.sql("UPDATE records SET resource_hash = NULL, resource_at = NULL"
                           " WHERE seq = 5"),
        5, ["seq 5"],
    ),
    "resource-at-moved": (
        lambda t: t.db.sql("UPDATE records SET resource_at = resource_at + 1 WHERE seq = 3"),
        3, ["seq 3"],
    ),
    "resource-at-out-of-range": (
        lambda t: t.db.sql("UPDATE records SET resource_at = 1000000 WHERE seq = 4"),
        4, ["seq 4"],
    ),
}  # fmt: skip


def _found(ledger: Ledger) -> VerificationError:
    with pytest.raises(VerificationError) as found:
        verify_ledger(ledger.store, ledger.verifier())
    return found.value


@pytest.mark.parametrize("case", list(CASES))
def test_tampering_is_found(ledger: Ledger, store_url: str, tmp_path: Path, case: str) -> None:
    tamper, seq, words = CASES[case]
    tamper(ledger)
    error = _found(ledger)
    if seq is not None:
        assert error.seq == seq, str(error)
        assert f"seq {seq}" in str(error)
    for word in words:
        assert word in str(error), str(error)
    # The command says just that, on stderr, and records the failed read (unless the damage
    # leaves the ledger unable to take records; then it says so).
    data = tmp_path / "data"
    data.mkdir()
    (data / "verifier.key").write_text(ledger.key.verifier_key() + "\n")
    result = otaudit("verify", "--store", store_url, "--data", str(data))
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stdout == ""
    failed, *rest = result.stderr.splitlines()
    assert failed == f"FAILED: {error}"
    assert len(rest) <= 1 and all("this read is not recorded" in line for line in rest), rest


# -- the append-only triggers ----------------------------------------------------

#: An UPDATE and a DELETE of rows that exist, per ledger table.
TRIGGERED: dict[str, tuple[str, str]] = {
    "records": (
        "UPDATE records SET actor = 'mallory' WHERE seq = 9",
        f"DELETE FROM records WHERE seq = {RECORDS - 1}",
    ),
    "resources": ("UPDATE resources SET flat = flat", "DELETE FROM resources"),
    "tree_nodes": (
        "UPDATE tree_nodes SET hash = ? WHERE level = 0 AND idx = 11",
        f"DELETE FROM tree_nodes WHERE level = 0 AND idx = {RECORDS - 1}",
    ),
    "checkpoints": (
        f"UPDATE checkpoints SET note = 'forged' WHERE tree_size = {RECORDS}",
        f"DELETE FROM checkpoints WHERE tree_size = {RECORDS}",
    ),
    "meta": (
        "UPDATE meta SET value = 'evil' WHERE key = 'origin'",
        "DELETE FROM meta WHERE key = 'verifier_key'",
    ),
    "schema_migrations": (
        "UPDATE schema_migrations SET version = 3 WHERE version = 2",
        "DELETE FROM schema_migrations WHERE version = 2",
    ),
}


@pytest.mark.parametrize("op", ["update", "delete"])
@pytest.mark.parametrize("table", list(TRIGGERED))
def test_triggers_refuse_update_and_delete(ledger: Ledger, table: str, op: str) -> None:
    statement = TRIGGERED[table][op == "delete"]
    params = (bytes(32),) if "?" in statement else ()
    before = ledger.db.guarded(f"SELECT * FROM {table} ORDER BY 1, 2")
    assert before
    with pytest.raises((sqlite3.Error, psycopg.Error), match="append-only") as info:
        ledger.db.guarded(statement, params)
    assert f"{op.upper()} on {table}" in str(info.value)
    assert ledger.db.guarded(f"SELECT * FROM {table} ORDER BY 1, 2") == before


def test_a_resource_is_inserted_once_and_never_changed(ledger: Ledger) -> None:
    """A re-insert of a held resource is a no-op; UPDATE and DELETE are refused."""
    ledger.store.append(sealed_entries(big_request("b", 3)))
    assert ledger.db.guarded("SELECT count(*) FROM resources") == [(2,)]
    for statement in ("UPDATE resources SET flat = flat", "DELETE FROM resources"):
        with pytest.raises((sqlite3.Error, psycopg.Error), match="append-only"):
            ledger.db.guarded(statement)
