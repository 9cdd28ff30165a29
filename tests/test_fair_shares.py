"""Fair shares of the single writer: a client flooding it with large requests adds at most
a slice of commit work to another client's wait, and a lone client keeps whole batches
(issue: hostile but well-formed traffic, the flood of valid records)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pytest

from otaudit import ingest
from otaudit.checkpointer import Checkpointer
from otaudit.errors import UnstorableRecords
from otaudit.fairqueue import MAX_SOURCES, FairQueue, SourceRates
from otaudit.keys import SigningKey
from otaudit.ledger import Sequencer
from otaudit.metrics import Metrics
from otaudit.otlp.body import PROTOBUF
from otaudit.record import Entry
from otaudit.store.base import AppendResult, Store
from support import audit_request

_SETTINGS = ingest.IngestSettings(workers=0)


@dataclass
class _Job:
    name: str
    size: int


def _take(q: FairQueue[_Job], limit: int) -> list[tuple[str, int, int]]:
    return [(p.work.name, p.start, p.end) for p in q.take(limit)]


def test_a_lone_source_gets_everything_up_to_the_limit() -> None:
    q: FairQueue[_Job] = FairQueue()
    q.put("a", _Job("a1", 300), 1.0)
    q.put("a", _Job("a2", 300), 2.0)
    assert len(q) == 600 and q.sources == 1 and q.oldest() == 1.0
    assert _take(q, 1000) == [("a1", 0, 300), ("a2", 0, 300)]
    assert len(q) == 0 and q.sources == 0 and q.oldest() is None


def test_sources_share_a_slice_and_a_large_request_is_split() -> None:
    q: FairQueue[_Job] = FairQueue()
    big, small = _Job("big", 1000), _Job("small", 100)
    q.put("flood", big, 1.0)
    q.put("honest", small, 2.0)
    first = q.take(300)
    # Neither was served yet: in order of arrival, a share of 150 each, then what is left.
    assert [(p.work.name, p.start, p.end, p.last) for p in first] == [
        ("big", 0, 150, False),
        ("small", 0, 100, True),
        ("big", 150, 200, False),
    ]
    assert len(q) == 800 and q.oldest() == 1.0
    assert _take(q, 10_000) == [("big", 200, 1000)]
    assert len(q) == 0


def test_the_least_recently_served_source_goes_first() -> None:
    q: FairQueue[_Job] = FairQueue()
    q.put("a", _Job("a1", 500), 1.0)
    assert _take(q, 100) == [("a1", 0, 100)]
    q.put("b", _Job("b1", 50), 2.0)
    # a was just served: b is first in line, and gets its whole request within its share.
    assert _take(q, 100) == [("b1", 0, 50), ("a1", 100, 150)]


def test_every_take_makes_progress_even_with_a_limit_below_the_sources() -> None:
    q: FairQueue[_Job] = FairQueue()
    for name in "abc":
        q.put(name, _Job(name, 2), 0.0)
    assert _take(q, 1) == [("a", 0, 1)]
    assert _take(q, 0) == [("b", 0, 1)]


def _entries(count: int) -> list[Entry]:
    body = audit_request(count, payload_bytes=20)
    return ingest.prepare("traces", PROTOBUF, body, False, "otlp", 1, _SETTINGS).entries


class _Recording:
    """A store that records the size of every append (and can refuse one entry)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.appends: list[int] = []
        self.poison: bytes | None = None

    def append(self, entries: list[Entry]) -> AppendResult:
        self.appends.append(len(entries))
        if any(e.leaf == self.poison for e in entries):
            raise UnstorableRecords("cannot store a value of this record")
        return self.store.append(entries)

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)


def _sequencer(store: _Recording, tmp_path: Path, **kwargs: float) -> Sequencer:
    key = SigningKey.generate("fair")
    real = store.store
    checkpointer = Checkpointer(real, key, key.name, saved_path=tmp_path / "cp")
    return Sequencer(store, checkpointer, Metrics(), **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def recording(any_store: Store) -> _Recording:
    return _Recording(any_store)


def test_a_small_request_is_not_held_behind_a_flood_from_another_source(
    recording: _Recording, tmp_path: Path
) -> None:
    # A slice of 64 records: the flood's 2,000 go in many commits, the honest 10 in the first.
    sequencer = _sequencer(recording, tmp_path, commit_slice_s=1e-9)
    flood = sequencer.submit(_entries(2000), "token:flood")
    honest = sequencer.submit(_entries(10), "token:honest")
    order: list[str] = []
    lock = threading.Lock()

    def done(name: str) -> Callable[[object], None]:
        def record(_future: object) -> None:
            with lock:
                order.append(name)

        return record

    flood.add_done_callback(done("flood"))
    honest.add_done_callback(done("honest"))
    sequencer.start()
    try:
        seqs = flood.result(timeout=60)
        honest_seqs = honest.result(timeout=60)
    finally:
        sequencer.stop()
    assert order == ["honest", "flood"]
    assert recording.appends[0] == 64 and max(recording.appends) <= 64
    assert sum(recording.appends) == 2010
    assert max(q for q in honest_seqs if q is not None) < 64  # in the first slice
    assert sorted(q for q in seqs + honest_seqs if q is not None) == list(range(2010))


def test_a_lone_source_commits_its_queue_in_one_transaction(
    recording: _Recording, tmp_path: Path
) -> None:
    sequencer = _sequencer(recording, tmp_path, commit_slice_s=1e-9)
    futures = [sequencer.submit(_entries(700), "token:collector") for _ in range(3)]
    sequencer.start()
    try:
        for f in futures:
            assert len(f.result(timeout=60)) == 700
    finally:
        sequencer.stop()
    assert recording.appends == [2100]


def test_a_refused_piece_fails_its_request_and_says_what_was_stored(
    recording: _Recording, tmp_path: Path
) -> None:
    sequencer = _sequencer(recording, tmp_path, commit_slice_s=1e-9)
    entries = _entries(200)
    recording.poison = entries[150].leaf
    split = sequencer.submit(entries, "token:a")
    other = sequencer.submit(_entries(30), "token:b")
    sequencer.start()
    try:
        assert len(other.result(timeout=60)) == 30
        with pytest.raises(UnstorableRecords, match=r"\(\d+ of the request's 200 records were"):
            split.result(timeout=60)
    finally:
        sequencer.stop()
    assert recording.store.tree_size() >= 30 + 64


def test_a_lone_source_is_never_heavy_and_a_flood_beside_another_is() -> None:
    rates = SourceRates(active_s=2.0)
    assert not any(rates.note("flood", 1_000_000, t / 10) for t in range(10))
    assert not rates.note("honest", 10_000, 1.0)
    assert rates.note("flood", 1_000_000, 1.1)
    assert not rates.note("honest", 10_000, 1.2)
    # Once the other source is quiet for longer than active_s, the flood is alone again.
    assert not rates.note("flood", 1_000_000, 3.5)


def test_sources_sending_alike_are_not_heavy() -> None:
    rates = SourceRates(active_s=2.0)
    heavy = [rates.note(name, 50_000, t / 20) for t in range(40) for name in ("a", "b", "c")]
    assert not any(heavy)


def test_the_sources_tracked_are_bounded() -> None:
    rates = SourceRates(active_s=1e9)
    for n in range(MAX_SOURCES * 3):
        rates.note(f"address:{n}", 100, float(n))
    assert len(rates._rates) == MAX_SOURCES


def test_a_heavy_source_is_decoded_by_low_priority_workers() -> None:
    metrics = Metrics()
    settings = ingest.IngestSettings(workers=1)
    # Only prepare is used: no commit, so no sequencer.
    ing = ingest.Ingest(cast(Sequencer, None), metrics, settings)
    big, small = audit_request(400, payload_bytes=200), audit_request(5, payload_bytes=20)

    def run(body: bytes, source: str) -> int:
        prepared = ing.prepare("traces", PROTOBUF, body, False, "otlp", 1, source).result(30)
        return len(prepared.entries)

    try:
        assert run(big, "token:flood") == 400  # alone: the normal workers
        assert metrics.bulk_decodes._value.get() == 0
        assert run(small, "token:honest") == 5
        assert run(big, "token:flood") == 400  # beside another source, sending far more
        assert metrics.bulk_decodes._value.get() == 1
        assert run(small, "token:honest") == 5
        assert metrics.bulk_decodes._value.get() == 1
        assert ing._bulk is not None and ing._workers is not None
        own = os.getpriority(os.PRIO_PROCESS, 0)
        for workers, niceness in ((ing._workers, own), (ing._bulk, own + ingest.BULK_NICENESS)):
            pids = list(workers._pool._processes)
            assert pids
            # A worker lowers its own priority as it starts: give a new one time to.
            deadline = time.monotonic() + 10
            seen = {os.getpriority(os.PRIO_PROCESS, pid) for pid in pids}
            while seen != {min(niceness, 19)} and time.monotonic() < deadline:
                time.sleep(0.05)
                seen = {os.getpriority(os.PRIO_PROCESS, pid) for pid in pids}
            assert seen == {min(niceness, 19)}
    finally:
        ing.close()
