"""Steps 1 and 2 in the compiled core over a ledger whose payloads were partly removed.

A seq whose row was deleted inside a range of ``removals`` (under a receipt on the
ledger) is absent: the core passes it, counts it, and still requires its leaf; a row
deleted outside every range is missing at its seq. Both ways into the core are run: the
SQLite ledger read by the core itself, and its rows read by Python and fed to
``RecordStream`` (as on PostgreSQL), in small batches so that absent runs meet their
edges.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otaudit import _core, tree, verify
from otaudit.access import Reader, log_request, seal_request
from otaudit.keys import SigningKey
from otaudit.otlp.convert import select_spans
from otaudit.record import seal
from otaudit.store.sqlite import SQLiteStore
from sealing import sign
from support import audit_request

RECORDS = 30  # client records 0..29; the receipt is seq 30
RECEIPT = RECORDS
SIZE = RECORDS + 1
T0 = 1_764_288_000 * 1_000_000_000


@pytest.fixture(params=["core", "stream"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[SQLiteStore]:
    """A signed SQLite ledger of ``RECORDS`` client records and a prune receipt; with
    "stream", its rows are read by Python and fed to the core 4 at a time."""
    if request.param == "stream":
        monkeypatch.setattr(verify, "one_sqlite", lambda: False)
        monkeypatch.setattr(verify, "_FEED_BATCH", 4)
    export = ExportTraceServiceRequest.FromString(audit_request(RECORDS, payload_bytes=8))
    entries = [
        seal(obj, content, "otlp", T0 + i)
        for i, (obj, content) in enumerate(select_spans(export, "audit.action").records)
    ]
    receipt = seal_request(log_request(Reader("t"), "otaudit.prune", "ledger", "receipt", {}))
    ledger = SQLiteStore(tmp_path / "ledger.db")
    ledger.set_meta("origin", "example.com/removed")
    ledger.append(entries)
    ledger.append([receipt])
    sign(ledger, SigningKey.generate("example.com/removed"), "example.com/removed")
    try:
        yield ledger
    finally:
        ledger.close()


def _remove(store: SQLiteStore, ranges: list[tuple[int, int]], rows: list[tuple[int, int]]) -> int:
    """Store ``ranges`` under the receipt and delete the rows of ``rows`` (inside them);
    the sealed bytes of the rows deleted."""
    store.add_removals(RECEIPT, ranges)
    gone = 0
    for first, last in rows:
        gone += sum(len(rec.sealed) for rec in store.iter_records(first, last + 1))
        assert store.remove_payloads(first, last) == last - first + 1
    return gone


def _delete_uncovered(store: SQLiteStore, first: int, last: int) -> None:
    """Delete rows outside every range, as only tampering can (the trigger dropped)."""
    with sqlite3.connect(store.path) as conn:
        conn.execute("DROP TRIGGER IF EXISTS records_no_delete")
        conn.execute("DELETE FROM records WHERE seq BETWEEN ? AND ?", (first, last))
    conn.close()


def _all_bytes(store: SQLiteStore) -> int:
    return sum(len(rec.sealed) for rec in store.iter_records(0, None))


@pytest.mark.parametrize(
    ("ranges", "rows", "absent"),
    [
        ([(5, 12)], [(5, 12)], 8),  # a run longer than a batch
        ([(0, 3), (9, 9), (10, 17)], [(0, 3), (9, 17)], 13),  # at the start; adjacent ranges
        ([(5, 12)], [(5, 7), (10, 12)], 6),  # rows 8 and 9 still there, checked
        ([(26, 29)], [(26, 29)], 4),  # just before the receipt
        ([(5, 12)], [], 0),  # a range whose rows are all there
    ],
)
def test_removed_rows_are_absent_not_missing(
    store: SQLiteStore,
    ranges: list[tuple[int, int]],
    rows: list[tuple[int, int]],
    absent: int,
) -> None:
    before = _all_bytes(store)
    gone = _remove(store, ranges, rows)
    sizes = [SIZE]
    run = verify._core_run(store, 0, None, sizes, 0, None, removed=ranges)
    assert run is not None
    assert (run.records, run.absent, run.fault, run.tree_fault) == (SIZE, absent, None, None)
    assert run.bytes == before - gone
    # A range of seqs, from inside a removed run to past it.
    run = verify._core_run(store, 2, 28, None, 0, None, removed=ranges)
    assert run is not None
    inside = sum(max(0, min(b, 27) - max(a, 2) + 1) for a, b in rows)
    assert (run.records, run.absent, run.fault) == (26, inside, None)
    # The present leaves of the range proven into the signed root, the absent ones not.
    root = tree.stored_root(store, SIZE)
    run = verify._core_run(store, 2, 28, None, 0, None, (SIZE, root), removed=ranges)
    assert run is not None
    assert (run.fault, run.excluded) == (None, None)
    if rows:
        # Without the ranges, the first removed row is missing.
        run = verify._core_run(store, 0, None, sizes, 0, None)
        assert run is not None
        assert run.fault == (rows[0][0], "missing")


def test_a_row_gone_outside_every_range_is_missing_at_its_seq(store: SQLiteStore) -> None:
    _remove(store, [(5, 12)], [(5, 12)])
    _delete_uncovered(store, 20, 22)
    for begin, end in ((0, None), (3, 25)):
        run = verify._core_run(store, begin, end, None, 0, None, removed=[(5, 12)])
        assert run is not None
        assert run.fault == (20, "missing"), (begin, end)
    # A range that covers part of the gap only: the first seq past it.
    run = verify._core_run(store, 0, None, None, 0, None, removed=[(5, 12), (20, 20)])
    assert run is not None
    assert run.fault == (21, "missing")
    # Right after a removed run.
    _delete_uncovered(store, 13, 13)
    run = verify._core_run(store, 0, None, None, 0, None, removed=[(5, 12)])
    assert run is not None
    assert run.fault == (13, "missing")


def test_a_removed_seq_keeps_its_leaf(store: SQLiteStore) -> None:
    _remove(store, [(5, 12)], [(5, 12)])
    with sqlite3.connect(store.path) as conn:
        conn.execute("DROP TRIGGER tree_nodes_no_delete")
        conn.execute("DELETE FROM tree_nodes WHERE level = 0 AND idx = 9")
    conn.close()
    run = verify._core_run(store, 0, None, None, 0, None, removed=[(5, 12)])
    assert run is not None
    assert run.fault == (9, "no-leaf")


@pytest.mark.parametrize("removed", [[(5, 3)], [(5, 9), (9, 12)], [(10, 12), (0, 3)]])
def test_ranges_that_are_not_sorted_and_apart_are_refused(removed: list[tuple[int, int]]) -> None:
    with pytest.raises(ValueError, match="removed range"):
        _core.RecordStream(0, None, 0, removed)
