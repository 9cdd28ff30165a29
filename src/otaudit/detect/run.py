"""Running the rules: over history (``otaudit detect``) and as records are sealed (``serve``).

Both feed one :class:`Engine` the stored records in sequence order, from a
point ``lookback`` before the first record judged (the longest window or
baseline of any rule), and let receive time pass to ``now - GRACE`` at the
end (silence), so both find the same things in the same records. The
streaming :class:`Detector` follows the ledger rather than the receivers, so
it sees what every node appends to a shared store, and after a restart it
starts ``lookback`` back; alerts it finds again are the same records, which
the ledger holds once.

Both hand what the rules find to one :class:`~otaudit.detect.grouping.AlertGrouper`, which
turns findings into alerts raised and summaries of grouped ones, dated by when they were
raised (receive time), so a storm of findings makes a bounded number of alert records.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from otaudit.access import seal_request
from otaudit.conventions import OWN_PIPELINE
from otaudit.detect.alerts import log_alert, note_json, note_request
from otaudit.detect.engine import ALERT_UPDATE_ACTION, Engine
from otaudit.detect.event import MAX_SKEW_NS, Event, parse_rfc3339_ns
from otaudit.detect.grouping import DEFAULT_WINDOW_S, AlertGrouper, Grouped, Note, Raised
from otaudit.detect.notify import Notifier, NotifySettings
from otaudit.detect.rules import Rule
from otaudit.detect.state import Finding
from otaudit.errors import OtauditError
from otaudit.ingest import COMMIT_WAIT_S
from otaudit.metrics import Metrics
from otaudit.ownrecords import Appender
from otaudit.progress import Progress, counted
from otaudit.record import Entry
from otaudit.store.base import Store

#: How far behind the clock silence is judged: a record received before then is sealed
#: (a receiver waits at most COMMIT_WAIT_S for its commit), give or take the clocks of
#: several nodes.
GRACE_NS: Final = int((COMMIT_WAIT_S + 30) * 1_000_000_000)
_APPEND_CHUNK: Final = 1000
#: The default alert group window (``--alert-group-window``), in ns.
DEFAULT_WINDOW_NS: Final = DEFAULT_WINDOW_S * 1_000_000_000
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

    #: Every finding raised in ``[since, until)``, with when it was raised.
    raised: list[Raised]
    #: What to seal: the alerts raised in ``[since, until)`` once grouped, and the summaries
    #: of their windows that have closed.
    notes: list[Note]
    records: int
    first_seq: int
    end: int
    seconds: float
    #: Per alert id, how many findings it stands for, where more than one.
    grouped: dict[str, int] = field(default_factory=dict)

    @property
    def findings(self) -> list[Finding]:
        """Every finding raised in ``[since, until)``, grouped or not."""
        return [r.finding for r in self.raised]

    @property
    def alerts(self) -> list[Raised]:
        """The alerts the findings make once grouped (the first of each group and window)."""
        return [n for n in self.notes if isinstance(n, Raised)]


def raised_at(found: list[Finding], received_ns: int) -> list[Raised]:
    """The findings that feeding a record received at ``received_ns`` (or letting receive time
    pass to it) gave, with when they were raised: then, or for ``silence``, the receive time
    judged silent (the finding's own time, which follows receive time)."""
    return [Raised(f, f.time_ns if f.rule.kind == "silence" else received_ns) for f in found]


def judge(engine: Engine, e: Event) -> list[Raised]:
    """Feed one event to the engine; what it raises. A summary of grouped alerts
    (``otaudit.alert_update``, otaudit's own) is no evidence: rules never see it, as they
    never see alerts and triage."""
    if e.action == ALERT_UPDATE_ACTION and e.pipeline == OWN_PIPELINE:
        return raised_at(engine.tick(e.received), e.received)
    return raised_at(engine.feed(e), e.received)


def detect_history(
    store: Store,
    rules: Sequence[Rule],
    *,
    since_ns: int | None,
    until_ns: int | None = None,
    now_ns: int | None = None,
    group_window_ns: int = DEFAULT_WINDOW_NS,
    progress: Progress | None = None,
) -> HistoryRun:
    """Run the rules over the records of ``store`` and return the findings raised in
    ``[since_ns, until_ns)`` (by when each was raised: the receive time of the record that
    triggered it, not the time that record claims), grouped as ``serve`` groups them.

    ``progress`` (optional) is called with the ledger position reached (the records before
    it, those skipped as out of reach included), ending at the ledger's size."""
    started = time.monotonic()
    engine = Engine(list(rules))
    grouper = AlertGrouper(group_window_ns)
    end = store.tree_size()
    begin = 0
    if since_ns is not None:
        # From the start of the alert window holding since_ns (the findings grouped there),
        # and before that the reach of the rules; a record's time counts as at most MAX_SKEW
        # after its receipt: whatever was received earlier than that cannot matter.
        reach = grouper.window_start(since_ns) - engine.lookback_ns - MAX_SKEW_NS
        begin = first_received_at(store, reach, end)
    raised: list[Raised] = []
    notes: list[Note] = []
    records = 0
    for row in counted(store.detect_rows(begin, end), progress, begin):
        e = Event(row)
        found = judge(engine, e)
        raised += found
        notes += grouper.feed(found, e.received)
        records += 1
    # Receive time has passed up to now (silence), not beyond: --until may lie ahead.
    now = (time.time_ns() if now_ns is None else now_ns) - GRACE_NS
    clock = now if until_ns is None else min(until_ns, now)
    found = raised_at(engine.tick(clock), clock)
    raised += found
    notes += grouper.feed(found, clock)

    def inside(r: Raised) -> bool:
        return (since_ns is None or r.raised_ns >= since_ns) and (
            until_ns is None or r.raised_ns < until_ns
        )

    kept = [r for r in raised if inside(r)]
    kept_notes = [n for n in notes if inside(n if isinstance(n, Raised) else n.alert)]
    grouped = {n.alert_id: n.count for n in notes if isinstance(n, Grouped)}
    return HistoryRun(kept, kept_notes, records, begin, end, time.monotonic() - started,
                      grouped | grouper.open_counts())  # fmt: skip


#: A note on its way to the ledger: its JSON (webhook body), its OTLP request (the OTLP
#: export body) and the sealed entry of that record.
AlertItem = tuple[dict[str, Any], bytes, Entry]


def alert_items(notes: Sequence[Note]) -> list[AlertItem]:
    """The alerts raised and summaries as they travel (from the detector's process to the one
    that appends); sealing happens here, in the detector's process."""
    items: list[AlertItem] = []
    for note in notes:
        request = note_request(note)
        items.append((note_json(note), request.SerializeToString(), seal_request(request)))
    return items


class AlertPublisher:
    """Appends alert records and summaries through ``appender`` (the server's sequencer, or
    the store itself for ``otaudit detect --record``); logs and notifies the ones new to the
    ledger."""

    def __init__(self, appender: Appender, notifier: Notifier | None = None,
                 metrics: Metrics | None = None) -> None:  # fmt: skip
        self.appender = appender
        self.notifier = notifier
        self.metrics = metrics
        self.published = 0  # alerts new to the ledger
        self.summaries = 0  # summaries of grouped alerts new to the ledger

    def publish(self, notes: Sequence[Note]) -> list[tuple[dict[str, Any], int]]:
        """Seal alerts raised and summaries; see :meth:`seal`."""
        return self.seal(alert_items(notes))

    def seal(self, items: Sequence[AlertItem]) -> list[tuple[dict[str, Any], int]]:
        """Seal alerts and summaries; return the ones new to the ledger (JSON, sequence
        number). Each new one is logged and sent, by its severity (see
        :class:`~otaudit.detect.notify.Notifier`)."""
        new: list[tuple[dict[str, Any], int]] = []
        for at in range(0, len(items), _APPEND_CHUNK):
            chunk = items[at : at + _APPEND_CHUNK]
            seqs = self.appender.append([entry for _, _, entry in chunk])
            for (alert, body, _), seq in zip(chunk, seqs, strict=True):
                if seq is None:
                    continue
                new.append((alert, seq))
                log_alert(alert, seq)
                if alert.get("update"):
                    self.summaries += 1
                else:
                    self.published += 1
                    if self.metrics is not None:
                        self.metrics.alerts.labels(alert["rule"], alert["severity"]).inc()
                if self.notifier is not None:
                    self.notifier.send(alert["id"], alert | {"seq": seq}, body,
                                       severity=alert["severity"])  # fmt: skip
        return new


class Detector:
    """Follows the ledger in a thread and runs the rules over each new record.

    It judges the records from ``emit_from`` on (None: the last ``lookback`` of them),
    having first read the history the rules need before them (``lookback`` of receive
    time before the alert group window holding ``emit_from``, without reporting anything
    found there), so what it reports is what ``otaudit detect`` finds in the same records,
    and a restart that passes the position reached before (``on_position``, once what was
    found before it is sealed) neither repeats nor misses anything. ``publish`` gets the
    alerts raised and the summaries of grouped ones (:mod:`~otaudit.detect.grouping`).
    """

    def __init__(self, store: Store, rules: Sequence[Rule],
                 publish: Callable[[Sequence[Note]], object], *,
                 emit_from: int | None = None,
                 on_position: Callable[[int], object] | None = None,
                 poll_s: float = 1.0,
                 group_window_ns: int = DEFAULT_WINDOW_NS) -> None:  # fmt: skip
        self.store = store
        self.on_position = on_position
        self.engine = Engine(list(rules))
        self.grouper = AlertGrouper(group_window_ns)
        self.publish = publish
        self.poll_s = poll_s
        self.emit_from = emit_from
        self.position: int | None = None  # the next seq to read
        self.replay_from: int | None = None  # where reading began (history before emit_from)
        self.pending: list[Note] = []
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
        # The findings grouped in the window holding emit_from are needed too.
        since = self.grouper.window_start(_received_ns(self.store, emit_from)) - lookback
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
                e = Event(row)
                notes = self.grouper.feed(judge(self.engine, e), e.received)
                if notes and row[0] >= self.emit_from:
                    self.pending += notes
                self.position = row[0] + 1
            self.position = max(self.position, stop)
            if self.position >= end:
                clock = time.time_ns() - GRACE_NS
                found = raised_at(self.engine.tick(clock), clock)
                self.pending += self.grouper.feed(found, clock)
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
