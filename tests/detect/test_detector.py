"""The streaming detector keeps what it found until it is sealed: a full sequencer queue or a
store error delays alerts, never loses them. It starts ``lookback`` back and follows the end."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from detect_traffic import DAY, HOUR, MIN, anchor, background, entries, login, scenarios
from otaudit.detect import process as process_module
from otaudit.detect.grouping import Note
from otaudit.detect.process import DetectorProcess, PositionFile
from otaudit.detect.rules import build_rule, load_rules
from otaudit.detect.run import AlertPublisher, Detector, detect_history
from otaudit.errors import Overloaded
from otaudit.metrics import Metrics
from otaudit.ownrecords import DirectAppender
from otaudit.store.sqlite import SQLiteStore
from polling import wait_until

NOW = (time.time_ns() // MIN) * MIN


def test_findings_survive_a_refused_publish_and_new_records_are_judged(tmp_path: Path) -> None:
    start = NOW - 45 * DAY  # longer ago than any rule looks back
    acts = background(start, NOW, heartbeat_s=None)
    for scenario in scenarios(anchor(start, NOW)).values():
        acts += scenario
    writer = SQLiteStore(tmp_path / "ledger.db")
    writer.append(list(entries(sorted(acts, key=lambda a: a.received_ns))))
    # As after a restart: judged up to half a day before the attacks, the rest is new to it.
    emit_from = writer.first_seq_at(anchor(start, NOW) - 12 * HOUR)
    assert emit_from is not None
    history = detect_history(writer, load_rules(), since_ns=None, now_ns=NOW)
    expected = [f.alert_id for f in history.findings if f.trigger_seq >= emit_from]
    assert len(expected) > 70

    published: list[str] = []
    refusals = [Overloaded("sequencer queue full")]

    def publish(notes: Sequence[Note]) -> None:
        if refusals:
            raise refusals.pop()
        published.extend(n.alert_id for n in notes)

    reader = SQLiteStore(tmp_path / "ledger.db", readonly=True)
    detector = Detector(reader, load_rules(), publish, emit_from=emit_from, poll_s=0.05)
    detector.start()
    try:
        wait_until(lambda: len(published) >= len(expected))
        assert not refusals  # refused once, then published: nothing lost
        assert published == expected  # the same findings as history, from where it was
        assert detector.replay_from is not None
        assert 0 < detector.replay_from < emit_from  # it read the history first, silently
        assert detector.position == writer.tree_size()

        # New records are judged as they arrive, without a restart.
        attack = [login(NOW - 10 * MIN + i, "u09", "203.0.113.99", ok=False) for i in range(20)]
        writer.append(list(entries(attack)))
        detector.wake()
        wait_until(lambda: len(published) > len(expected))
        assert len(published) == len(expected) + 1
    finally:
        detector.stop()
        reader.close()
        writer.close()


def test_the_saved_position(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    saved = PositionFile(tmp_path / "detect.position")
    assert saved.read() is None  # a first start
    saved.write(1234)
    assert PositionFile(tmp_path / "detect.position").read() == 1234
    assert not list(tmp_path.glob("*.tmp"))  # written by rename, whole or not at all
    (tmp_path / "detect.position").write_text("garbage\n")
    assert saved.read() is None
    assert "unreadable" in caplog.text and "judging the last lookback again" in caplog.text


def test_a_killed_detection_process_is_started_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(process_module, "RESTART_S", 0.1)
    store = SQLiteStore(tmp_path / "ledger.db")
    publisher = AlertPublisher(DirectAppender(store))
    detector = DetectorProcess(tmp_path, None, load_rules(), publisher, tree_size=0)
    detector.start()
    try:
        store.append(list(entries(login(NOW - 30 * MIN + i, "u01", "10.0.0.1", ok=False)
                                  for i in range(20))))  # fmt: skip
        detector.wake()
        wait_until(lambda: publisher.published == 1)
        first = detector.process
        os.kill(first.pid, signal.SIGKILL)  # mid-wait, as an out-of-memory kill would
        wait_until(lambda: detector.process is not first and detector.process.is_alive())
        # Waking it never blocks the caller (the sequencer's writer thread).
        waker = threading.Thread(target=detector.wake)
        waker.start()
        waker.join(2)
        assert not waker.is_alive()
        store.append(list(entries(login(NOW - 20 * MIN + i, "u02", "10.0.0.2", ok=False)
                                  for i in range(20))))  # fmt: skip
        detector.wake()
        wait_until(lambda: publisher.published == 2)
        assert publisher.published == 2  # the new one goes on from the saved position
    finally:
        detector.stop()
        store.close()
    assert PositionFile(tmp_path / "detect.position").read() == store_size(tmp_path)


def store_size(data: Path) -> int:
    store = SQLiteStore(data / "ledger.db", readonly=True)
    try:
        return store.tree_size()
    finally:
        store.close()


def test_what_the_rules_forget_is_counted_on_metrics(tmp_path: Path) -> None:
    spec = {"name": "per_actor", "kind": "threshold", "where": {"action": "login"},
            "group_by": ["actor"], "threshold": 5, "window": "1h", "max_groups": 10}  # fmt: skip
    store = SQLiteStore(tmp_path / "ledger.db")
    publisher = AlertPublisher(DirectAppender(store))
    metrics = Metrics()
    detector = DetectorProcess(tmp_path, None, [build_rule(spec, "rule")], publisher, metrics,
                               tree_size=0)  # fmt: skip
    detector.start()

    def evicted() -> float | None:
        return metrics.registry.get_sample_value(
            "otaudit_detect_evicted_total", {"rule": "per_actor"}
        )

    try:
        store.append(list(entries(login(NOW - 30 * MIN + i, f"u{i}", "10.0.0.1", ok=False)
                                  for i in range(50))))  # fmt: skip
        detector.wake()
        wait_until(lambda: (evicted() or 0) >= 40)
    finally:
        detector.stop()
        store.close()
    assert evicted() == 40  # 50 actors, 10 kept: counted once each, not per report
