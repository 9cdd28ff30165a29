"""Streaming detection in a process of its own, so the rules never hold the server's GIL.

The child opens the ledger read-only and runs a :class:`~otaudit.detect.run.Detector`;
the server wakes it after each commit. What it finds comes back over a pipe as alert
items, and a thread of the server seals them through the sequencer (durably, with
group commit), logs them and notifies. A full sequencer queue makes that thread retry;
the child waits on the pipe meanwhile, so nothing found is lost. If the child dies it
is started again: it re-reads ``lookback`` of history, and alerts it finds again are the
same records, which the ledger keeps once.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final

from otaudit import datadir, lifeline
from otaudit.detect.rules import Rule, build_rule
from otaudit.detect.run import (
    DEFAULT_WINDOW_NS,
    AlertItem,
    AlertPublisher,
    Detector,
    alert_items,
)
from otaudit.errors import OtauditError
from otaudit.metrics import Metrics
from otaudit.smallfile import write_atomic

log = logging.getLogger("otaudit.detect")

_POLL_S: Final = 0.5
#: How much lower than the server's the detection process's CPU priority is.
DETECT_NICENESS: Final = 5
#: How long after the detection process died it is started again.
RESTART_S = 5.0
_RETRY_S: Final = 1.0


def _child(conn: Connection, signals: Connection, data: Path, store_url: str | None,
           specs: list[dict[str, Any]], verbose: bool, parent: int,
           emit_from: int | None, group_window_ns: int) -> None:  # fmt: skip
    """The detection process: follow the ledger, send findings and progress to the parent.

    ``signals`` brings ``WAKE`` (records were committed) and ``STOP`` from the server: a
    pipe, which unlike a shared lock cannot be left held by a process that is killed.
    """
    # The server stops it (with STOP) after its own signal handling: a Ctrl-C or a SIGTERM
    # to the whole process group must not cut the final pass short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # A server that is killed runs no cleanup: this process then ends by itself at once.
    lifeline.exit_with_parent()
    # Ingest comes first: a client waits for its acknowledgement, while detection follows
    # the ledger and catches up once the load falls (otaudit_detect_position on /metrics).
    os.nice(DETECT_NICENESS)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    rules = [build_rule(spec, f"rule {spec['name']}") for spec in specs]
    store = datadir.open_store(data, store_url, readonly=True)
    # Alerts, then the position reached past them, go down the pipe in this order; the
    # server saves the position only once those alerts are sealed.
    detector = Detector(
        store,
        rules,
        lambda notes: conn.send(("alerts", alert_items(notes))),
        emit_from=emit_from,
        on_position=lambda position: conn.send(("position", (position, evictions()))),
        poll_s=_POLL_S,
        group_window_ns=group_window_ns,
    )

    def evictions() -> dict[str, int]:
        return detector.engine.evictions

    detector.start()
    try:
        stopping = False
        while not stopping and os.getppid() == parent:  # a killed server takes it along
            try:
                while signals.poll(_POLL_S if not stopping else 0):
                    got = signals.recv_bytes()
                    stopping = stopping or got == STOP
                    detector.wake()
            except (EOFError, OSError):
                stopping = True  # the server is gone
    finally:
        detector.stop()
        store.close()
        with contextlib.suppress(OSError):
            conn.send(("done", None))
        conn.close()


#: In the data directory: the next ledger seq the detection rules judge (this node's).
POSITION_FILE: Final = "detect.position"
#: What the server sends the detection process.
WAKE: Final = b"w"
STOP: Final = b"s"


class PositionFile:
    """Where detection got to, so that a restart goes on from there (a plain number)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._written: int | None = None

    def read(self) -> int | None:
        """The saved position; None when there is none yet. When the file cannot be read,
        also None, after an error in the log."""
        try:
            position = int(self.path.read_text().strip())
            if position < 0:
                raise ValueError(f"negative position {position}")
            return position
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.error("detection position %s unreadable (%s): judging the last lookback "
                      "again (alerts found before are kept once)", self.path, exc)  # fmt: skip
            return None

    def write(self, position: int) -> None:
        """Save the position (atomically: a crash leaves the old or the new one)."""
        if position == self._written:
            return
        try:
            write_atomic(self.path, f"{position}\n".encode())
        except OSError as exc:
            log.error("detection position not saved to %s: %s", self.path, exc)
            return
        self._written = position


class DetectorProcess:
    """Runs the rules in a child process; seals its findings through ``publisher``."""

    def __init__(self, data: Path, store_url: str | None, rules: Sequence[Rule],
                 publisher: AlertPublisher, metrics: Metrics | None = None, *,
                 tree_size: int, group_window_ns: int = DEFAULT_WINDOW_NS) -> None:  # fmt: skip
        """``tree_size``: the ledger's size now, before anything is received. Without a
        saved position (a first start), detection judges the records from there on; with an
        unreadable one, the rules' whole lookback again. ``group_window_ns``: the alert
        group window (``--alert-group-window``)."""
        self.group_window_ns = group_window_ns
        self.saved = PositionFile(data / POSITION_FILE)
        self.emit_from: int | None = tree_size
        if self.saved.path.exists():
            self.emit_from = self.saved.read()
        else:
            self.saved.write(tree_size)
        self.data = data
        self.store_url = store_url
        self.specs = [rule.spec for rule in rules]
        self.publisher = publisher
        self.metrics = metrics
        self._ctx = multiprocessing.get_context("spawn")
        self._signals: Connection | None = None  # the current child's signal pipe
        self.process: Any = None  # the current child
        self._evicted: dict[str, int] = {}  # per rule, what the current child reported
        self._lock = threading.Lock()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="otaudit-detect", daemon=True)

    def start(self) -> None:
        """Start the child and the thread that seals what it finds."""
        self._thread.start()

    def wake(self) -> None:
        """Tell the child that records were committed (the sequencer calls this, from the
        writer thread: it never waits, whatever state the child is in)."""
        self._signal(WAKE)

    def stop(self, timeout_s: float = 60.0) -> None:
        """Let the child judge what is sealed, seal what it finds, and stop it."""
        self._stopping = True
        self._signal(STOP)
        self._thread.join(timeout_s)

    def _signal(self, what: bytes) -> None:
        with self._lock:
            signals = self._signals
            if signals is None:
                return
            try:
                signals.send_bytes(what)
            except BlockingIOError:
                pass  # the pipe is full of wake-ups the child has yet to read
            except OSError:
                pass  # the child is gone; it is being started again

    def _spawn(self) -> tuple[Any, Connection]:
        receiver, sender = self._ctx.Pipe(duplex=False)
        signals_in, signals_out = self._ctx.Pipe(duplex=False)
        os.set_blocking(signals_out.fileno(), False)
        verbose = logging.getLogger().isEnabledFor(logging.DEBUG)
        process = self._ctx.Process(
            target=_child,
            args=(
                sender,
                signals_in,
                self.data,
                self.store_url,
                self.specs,
                verbose,
                os.getpid(),
                self.emit_from,
                self.group_window_ns,
            ),
            name="otaudit-detect",
            daemon=True,
        )
        process.start()
        self.process = process
        self._evicted = {}  # the new child's counts start from 0
        sender.close()
        signals_in.close()
        with self._lock:
            if self._signals is not None:
                self._signals.close()
            self._signals = signals_out
        if self._stopping:
            self._signal(STOP)  # stopped while this child was starting
        return process, receiver

    def _run(self) -> None:
        while True:
            process, receiver = self._spawn()
            finished = self._follow(receiver)
            process.join(10)
            if process.is_alive():
                process.kill()
            if finished or self._stopping:
                with self._lock:
                    if self._signals is not None:
                        self._signals.close()
                        self._signals = None
                return
            log.critical("the detection process exited with status %s; restarting it in %.0f s",
                         process.exitcode, RESTART_S)  # fmt: skip
            time.sleep(RESTART_S)

    def _follow(self, receiver: Connection) -> bool:
        """Seal what the child sends until it is done (True) or gone (False)."""
        with receiver:
            while True:
                try:
                    kind, value = receiver.recv()
                except (EOFError, OSError):
                    return False
                if kind == "done":
                    return True
                if kind == "position":
                    # Everything found before it is sealed (alerts come first, in order).
                    position, evicted = value
                    self.saved.write(position)
                    self.emit_from = position  # where a restarted child goes on from
                    if self.metrics is not None:
                        self.metrics.detect_position.set(position)
                        self._count_evictions(evicted)
                else:
                    self._seal(value)

    def _count_evictions(self, evicted: dict[str, int]) -> None:
        """Add what the child forgot since its last report (a new child counts from 0)."""
        assert self.metrics is not None
        for rule, total in evicted.items():
            since = total - self._evicted.get(rule, 0)
            if since > 0:
                self.metrics.detect_evicted.labels(rule).inc(since)
        self._evicted = dict(evicted)

    def _seal(self, items: list[AlertItem]) -> None:
        """Seal alerts, retrying while the ledger cannot take them (nothing found is lost)."""
        while True:
            try:
                self.publisher.seal(items)
                return
            except OtauditError as exc:
                log.error("%d alerts not sealed yet: %s (retrying)", len(items), exc)
                time.sleep(_RETRY_S)
