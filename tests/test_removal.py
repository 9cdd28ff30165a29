"""Removing payloads under receipts, on both stores: what the database allows, what
``verify`` accepts, and what it calls tampering."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from otaudit.access import Reader
from otaudit.errors import StoreError, VerificationError
from otaudit.keys import SigningKey
from otaudit.ownrecords import DirectAppender
from otaudit.proofs import inclusion
from otaudit.retention import receipts
from otaudit.retention.removal import finish_pending, remove, subtract
from otaudit.store.base import Store
from otaudit.store.sqlite import SQLiteStore
from otaudit.verify import verify_ledger, verify_range
from sealing import entries, sign

KEY = SigningKey.generate("removal.test")
READER = Reader("tester")


def _filled(store: Store, n: int = 60) -> None:
    store.append(entries(n))
    sign(store, KEY, "removal.test")


def _verify_both(store: Store) -> None:
    """The core and the reference give the same report."""
    core, reference = (verify_ledger(store, KEY.verifier(), reference=r) for r in (False, True))
    assert (core.records, core.absent, core.tree_size) == (
        reference.records, reference.absent, reference.tree_size
    )  # fmt: skip
    assert core.absent == sum(r.count for r in core.receipts) - len(store.present_in_removals())


def test_ranges_round_trip_and_chunk() -> None:
    ranges = receipts.to_ranges([0, 1, 2, 5, 7, 8])
    assert ranges == [(0, 2), (5, 5), (7, 8)]
    assert receipts.ranges_text(ranges) == "0-2,5,7-8"
    assert receipts.parse_ranges("0-2,5,7-8") == tuple(ranges)
    for bad in ("5,3", "2-1", "1,1", "x", "-1"):
        with pytest.raises(ValueError, match=r"range|invalid literal"):
            receipts.parse_ranges(bad)
    many = [(i * 10, i * 10 + 3) for i in range(10_000)]
    groups = receipts.chunks(many, 1000)
    assert [r for g in groups for r in g] == many
    assert all(len(receipts.ranges_text(g)) <= 1000 for g in groups)
    assert subtract([(0, 10), (20, 30)], [(2, 3), (9, 21)]) == [(0, 1), (4, 8), (22, 30)]


def test_removed_payloads_verify_and_keep_the_tree(any_store: Store) -> None:
    _filled(any_store)
    root_before = [cp.root_hash for cp in any_store.checkpoints()]
    done = remove(
        any_store, DirectAppender(any_store), READER, [*range(0, 10), 20, 21, 40],
        kind="prune", policy="p" * 64,
    )  # fmt: skip
    assert done.records == done.deleted == 13 and len(done.receipts) == 1
    sign(any_store, KEY, "removal.test")
    assert [cp.root_hash for cp in any_store.checkpoints()][:1] == root_before
    assert any_store.present_seqs(0, 59) == [*range(10, 20), *range(22, 40), *range(41, 60)]
    _verify_both(any_store)
    report = verify_ledger(any_store, KEY.verifier())
    assert report.absent == 13 and report.removed("prune") == (13, 1)
    assert report.records == any_store.tree_size() - 13
    ranged = verify_range(any_store, KEY.verifier(), 5, 25)
    assert ranged.absent == 7


def test_the_database_refuses_removal_without_a_receipt(any_store: Store) -> None:
    _filled(any_store, 10)
    with pytest.raises(StoreError, match="append-only"):
        any_store.remove_payloads(3, 3)
    with pytest.raises(StoreError, match="removals"):
        any_store.add_removals(5, [(1, 2)])  # seq 5 is a client record, not a receipt
    done = remove(any_store, DirectAppender(any_store), READER, [2], kind="erase", reason="r")
    (receipt,) = done.receipts
    with pytest.raises(StoreError, match="removals"):
        any_store.add_removals(receipt, [(2, 3)])  # overlaps the receipt's range
    with pytest.raises(StoreError, match="removals"):
        any_store.add_removals(receipt, [(receipt, receipt)])  # a receipt covers earlier seqs
    with pytest.raises(StoreError, match="append-only"):
        any_store.remove_payloads(4, 4)


def test_a_removal_stopped_halfway_verifies_and_is_finished(any_store: Store) -> None:
    _filled(any_store, 30)
    chunk = [(3, 12)]
    entry = receipts.receipt_entry(
        READER, "prune", chunk, receipts.leaf_digest(any_store, chunk), policy="p"
    )
    (receipt,) = DirectAppender(any_store).append([entry])
    assert receipt is not None
    any_store.add_removals(receipt, chunk)
    any_store.remove_payloads(3, 5)  # ... and the process died here
    sign(any_store, KEY, "removal.test")
    assert verify_ledger(any_store, KEY.verifier()).absent == 3
    assert finish_pending(any_store) == 7
    assert verify_ledger(any_store, KEY.verifier()).absent == 10
    assert finish_pending(any_store) == 0


def _raw(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    for trigger in ("records_no_delete", "removals_receipt"):
        conn.execute(f"DROP TRIGGER {trigger}")
    return conn


def test_tampering_around_receipts_is_found(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    store = SQLiteStore(path)
    _filled(store, 40)
    remove(store, DirectAppender(store), READER, [1, 2], kind="prune", policy="p")
    sign(store, KEY, "removal.test")
    verify_ledger(store, KEY.verifier())
    conn = _raw(path)
    conn.execute("DELETE FROM records WHERE seq = 7")  # a payload no receipt names
    for reference in (False, True):
        with pytest.raises(VerificationError, match="seq 7 is missing") as found:
            verify_ledger(store, KEY.verifier(), reference=reference)
        assert found.value.seq == 7
    # A removals row the receipts do not back, to let the database delete seq 7:
    conn.execute("INSERT INTO removals VALUES (7, 7, 40)")
    with pytest.raises(VerificationError, match="removals table was altered"):
        verify_ledger(store, KEY.verifier())
    conn.close()
    store.close()


def test_a_receipt_that_names_other_leaves_is_found(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    store = SQLiteStore(path)
    _filled(store, 20)
    chunk = [(4, 4)]
    wrong = receipts.leaf_digest(store, [(5, 5)])
    entry = receipts.receipt_entry(READER, "prune", chunk, wrong, policy="p")
    (receipt,) = DirectAppender(store).append([entry])
    assert receipt is not None
    store.add_removals(receipt, chunk)
    store.remove_payloads(4, 4)
    sign(store, KEY, "removal.test")
    with pytest.raises(VerificationError, match="does not name what went") as found:
        verify_ledger(store, KEY.verifier())
    assert found.value.seq == receipt
    store.close()


def test_a_removed_record_is_still_proven_by_its_leaf(any_store: Store) -> None:
    _filled(any_store, 16)
    done = remove(any_store, DirectAppender(any_store), READER, [3], kind="erase", reason="r")
    sign(any_store, KEY, "removal.test")
    proof = inclusion(any_store, 3)
    assert proof["payload"] == "erased" and proof["receipt_seq"] == done.receipts[0]
    assert "leaf_input_b64" not in proof
    assert proof["leaf_hash"] == any_store.nodes([(0, 3)])[0].hex()
    assert "leaf_input_b64" in inclusion(any_store, 4)


def test_a_receipt_forged_in_the_database_is_found(tmp_path: Path) -> None:
    """With every trigger in place, a database writer inserts a row that looks like a
    receipt after the tree's end, lets a range be deleted under it and deletes a record:
    the database allows it, verify does not."""
    path = tmp_path / "ledger.db"
    store = SQLiteStore(path)
    _filled(store, 20)
    fake = receipts.receipt_entry(READER, "prune", [(5, 5)], "0" * 64, policy="p")
    conn = sqlite3.connect(path, isolation_level=None)
    size = store.tree_size()
    columns = ", ".join(("seq", "sealed", "dedup_key", *fake.columns._fields))
    marks = ", ".join("?" * (3 + len(fake.columns)))
    conn.execute(
        f"INSERT INTO records ({columns}) VALUES ({marks})",
        (size, fake.sealed, fake.dedup_key, *fake.columns),
    )
    conn.execute("INSERT INTO removals VALUES (5, 5, ?)", (size,))
    conn.execute("DELETE FROM records WHERE seq = 5")
    conn.close()
    for reference in (False, True):
        with pytest.raises(VerificationError) as found:
            verify_ledger(store, KEY.verifier(), reference=reference)
        assert found.value.seq in (5, size), str(found.value)
    store.close()
