"""Running the rules: over history (``otaudit detect``) and as records are sealed (``serve``).

Both feed one :class:`Engine` the stored records in sequence order, from a
point ``lookback`` before the first record judged (the longest window or
baseline of any rule), and let receive time pass to ``now - GRACE`` at the
end (silence), so both find the same things in the same records. The
streaming :class:`Detector` follows the ledger rather than the receivers, so
it sees what every node appends to a shared store, and after a restart it
starts ``lookback`` back; alerts it finds again are the same records, which
the ledger holds once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from otaudit.access import seal_request
from otaudit.detect.alerts import alert_request, finding_json, log_alert
from otaudit.detect.engine import Engine
from otaudit.detect.event import MAX_SKEW_NS, Event, parse_rfc3339_ns
from otaudit.detect.notify import Notifier, NotifySettings
from otaudit.detect.rules import Rule
from otaudit.detect.state import Finding
from otaudit.errors import OtauditError
from otaudit.ingest import COMMIT_WAIT_S
from otaudit.metrics import Metrics
from otaudit.record import Entry
from otaudit.store.base import Store

#: How far behind the clock silence is judged: a record received before then is sealed
#: (a receiver waits at most COMMIT_WAIT_S for its commit), give or take the clocks of
#: several nodes.
GRACE_NS: Final = int((COMMIT_WAIT_S + 30) * 1_000_000_000)
_APPEND_CHUNK: Final = 1000
_READ_SLICE: Final = 20_000

log = logging.getLogger("otaudit.detect")


@dataclass(frozen=True)
class DetectSettings:
    """The rules ``serve`` runs and where new alerts go."""

    rules: tuple[Rule, ...]
    notify: NotifySettings = field(default_factory=NotifySettings)


@dataclass
class HistoryRun:
    """What a detection over history read and found."""

    findings: list[Finding]
    records: int
    first_seq: int
    end: int
    seconds: float


def detect_history(
    store: Store,
    rules: Sequence[Rule],
    *,
    since_ns: int | None,
    until_ns: int | None = None,
    now_ns: int | None = None,
) -> HistoryRun:
    """Run the rules over the records of ``store`` and return the findings in
    ``[since_ns, until_ns)`` (by the time of the record that triggered each)."""
    started = time.monotonic()
    engine = Engine(list(rules))
    end = store.tree_size()
    begin = 0
    if since_ns is not None:
        # A record's time counts as at most MAX_SKEW after its receipt: whatever was received
        # earlier than that before the reach of the rules cannot matter.
        reach = since_ns - engine.lookback_ns - MAX_SKEW_NS
        begin = first_received_at(store, reach, end)
    found: list[Finding] = []
    records = 0
    for row in store.detect_rows(begin, end):
        found += engine.feed(Event(row))
        records += 1
    # Receive time has passed up to now (silence), not beyond: --until may lie ahead.
    now = (time.time_ns() if now_ns is None else now_ns) - GRACE_NS
    found += engine.tick(now if until_ns is None else min(until_ns, now))
    kept = [f for f in found if (since_ns is None or f.time_ns >= since_ns)
            and (until_ns is None or f.time_ns < until_ns)]  # fmt: skip
    return HistoryRun(kept, records, begin, end, time.monotonic() - started)


#: A finding on its way to the ledger: its JSON (webhook body), its OTLP alert request
#: (the OTLP export body) and the sealed entry of that record.
AlertItem = tuple[dict[str, Any], bytes, Entry]


def alert_items(findings: Sequence[Finding]) -> list[AlertItem]:
    """The findings as they travel (from the detector's process to the one that appends);
    sealing happens here, in the detector's process."""
    items: list[AlertItem] = []
    for finding in findings:
        request = alert_request(finding)
        items.append((finding_json(finding), request.SerializeToString(), seal_request(request)))
    return items


class AlertPublisher:
    """Appends alert records; logs and notifies the ones that are new to the ledger."""

    def __init__(self, append: Callable[[list[Entry]], list[int | None]],
                 notifier: Notifier | None = None,
                 metrics: Metrics | None = None) -> None:  # fmt: skip
        self.append = append
        self.notifier = notifier
        self.metrics = metrics
        self.published = 0

    def publish(self, findings: Sequence[Finding]) -> list[tuple[dict[str, Any], int]]:
        """Seal the findings as alerts; see :meth:`seal`."""
        return self.seal(alert_items(findings))

    def seal(self, items: Sequence[AlertItem]) -> list[tuple[dict[str, Any], int]]:
        """Seal alerts; return the ones new to the ledger (JSON, sequence number)."""
        new: list[tuple[dict[str, Any], int]] = []
        for at in range(0, len(items), _APPEND_CHUNK):
            chunk = items[at : at + _APPEND_CHUNK]
            seqs = self.append([entry for _, _, entry in chunk])
            for (alert, body, _), seq in zip(chunk, seqs, strict=True):
                if seq is None:
                    continue
                new.append((alert, seq))
                log_alert(alert, seq)
                if self.metrics is not None:
                    self.metrics.alerts.labels(alert["rule"], alert["severity"]).inc()
                if self.notifier is not None:
                    self.notifier.send(alert["id"], alert | {"seq": seq}, body)
        self.published += len(new)
        return new


class Detector:
    """Follows the ledger in a thread and runs the rules over each new record.

    It judges the records from ``emit_from`` on (None: the last ``lookback`` of them),
    having first read the history the rules need before them (``lookback`` of receive
    time, without reporting anything found there), so what it reports is what ``otaudit
    detect`` finds in the same records, and a restart that passes the position reached
    before (``on_position``, once what was found before it is sealed) neither repeats nor
    misses anything.
    """

    def __init__(self, store: Store, rules: Sequence[Rule],
                 publish: Callable[[Sequence[Finding]], object], *,
                 emit_from: int | None = None,
                 on_position: Callable[[int], object] | None = None,
                 poll_s: float = 1.0) -> None:  # fmt: skip
        self.store = store
        self.on_position = on_position
        self.engine = Engine(list(rules))
        self.publish = publish
        self.poll_s = poll_s
        self.emit_from = emit_from
        self.position: int | None = None  # the next seq to read
        self.replay_from: int | None = None  # where reading began (history before emit_from)
        self.pending: list[Finding] = []
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="otaudit-detect", daemon=True)

    def start(self) -> None:
        """Start following the ledger."""
        self._thread.start()

    def wake(self) -> None:
        """Look for new records now."""
        self._wake.set()

    def stop(self) -> None:
        """Judge what is sealed, publish what that finds, and stop."""
        self._stop.set()
        self._wake.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            stopping = self._stop.is_set()
            try:
                self._step()
            except OtauditError as exc:
                log.error("detection paused: %s (retrying)", exc)
            except Exception:  # the detector must outlive any failure; it retries
                log.exception("detection step failed (retrying)")
            if stopping:
                if self.pending:
                    log.error("%d alerts found but not sealed at shutdown; the next start "
                              "finds them again", len(self.pending))  # fmt: skip
                return
            self._wake.wait(self.poll_s)
            self._wake.clear()

    def _begin(self) -> None:
        end = self.store.tree_size()
        lookback = self.engine.lookback_ns
        if self.emit_from is None:
            self.emit_from = first_received_at(self.store, time.time_ns() - lookback, end)
        emit_from = self.emit_from = min(self.emit_from, end)
        since = _received_ns(self.store, emit_from) - lookback
        self.position = self.replay_from = first_received_at(self.store, since, emit_from)
        log.info("detection: %d rules, judging from ledger seq %d (history read from seq %d)",
                 len(self.engine.rules), emit_from, self.position)  # fmt: skip

    def _step(self) -> None:
        if self.position is None:
            self._begin()
        assert self.position is not None and self.emit_from is not None
        end = self.store.tree_size()
        while True:
            # In slices: a long replay does not hold one read snapshot open (SQLite's WAL
            # could not be checkpointed meanwhile), and what it finds goes out as it goes.
            stop = min(self.position + _READ_SLICE, end)
            for row in self.store.detect_rows(self.position, stop):
                found = self.engine.feed(Event(row))
                if found and row[0] >= self.emit_from:
                    self.pending += found
                self.position = row[0] + 1
            self.position = max(self.position, stop)
            if self.position >= end:
                self.pending += self.engine.tick(time.time_ns() - GRACE_NS)
            if self.pending:
                self.publish(self.pending)
                self.pending = []
            if self.on_position is not None:
                self.on_position(self.position)
            if self.position >= end:
                return


def _received_ns(store: Store, seq: int) -> int:
    """When record ``seq`` was received (now, past the end of the ledger)."""
    for row in store.detect_rows(seq, seq + 1):
        return parse_rfc3339_ns(row[2])
    return time.time_ns()


def first_received_at(store: Store, since_ns: int, end: int) -> int:
    """The first seq below ``end`` received at or after ``since_ns`` (receive times grow
    with the sequence, up to the clocks of several nodes), by bisection."""
    lo, hi = 0, end
    while lo < hi:
        mid = (lo + hi) // 2
        if _received_ns(store, mid) < since_ns:
            lo = mid + 1
        else:
            hi = mid
    return lo
