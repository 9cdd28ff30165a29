"""The sequencer: one writer that appends, commits and checkpoints.

Receivers hand over sealed entries with :meth:`Sequencer.submit` and get a
future. The sequencer thread drains everything queued into one durable
transaction (group commit across concurrent exports), resolves each future
with the sequence numbers its entries got, and signs a checkpoint at least
once per ``checkpoint_interval_s`` while records arrive. A future resolves
only after the commit, which is what lets receivers acknowledge an export
only once it is durable.

The queue is bounded by records: :meth:`submit` raises ``Overloaded`` when it
is full, and receivers answer 503 with Retry-After.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Final

from otaudit import defaults
from otaudit.checkpointer import Checkpointer
from otaudit.errors import (
    ConfigError,
    OtauditError,
    Overloaded,
    PayloadTooLarge,
    StoreError,
    UnstorableRecords,
    VerificationError,
)
from otaudit.fairqueue import FairQueue, Piece
from otaudit.metrics import Metrics
from otaudit.ownrecords import DirectAppender, record_refusal
from otaudit.record import Entry
from otaudit.store.base import Store

log = logging.getLogger("otaudit.ledger")


@dataclass
class _Work:
    entries: list[Entry]
    future: Future[list[int | None]]
    seqs: list[int | None] = field(default_factory=list)  # of the pieces committed so far

    @property
    def size(self) -> int:
        return len(self.entries)


#: A source counts as active for this long after its last request.
ACTIVE_S: Final = 2.0
#: While several sources are active, one commit holds about this much work, so that a
#: request arriving during it waits no longer (see :mod:`otaudit.fairqueue`).
COMMIT_SLICE_S: Final = 0.01
_MIN_SLICE: Final = 64


class Sequencer:
    """The single writer of one log: group commit, dense sequence numbers, checkpoints.

    Requests wait per source (:mod:`otaudit.fairqueue`): while one source is active a
    commit takes everything queued, up to ``max_batch_records``; while several are, each
    commit is a slice of about ``commit_slice_s`` of work shared among them, so that one
    client flooding the writer adds at most a slice to another client's wait.
    """

    def __init__(
        self,
        store: Store,
        checkpointer: Checkpointer,
        metrics: Metrics,
        *,
        max_queue_records: int = defaults.MAX_QUEUE_RECORDS,
        max_batch_records: int = 20_000,
        checkpoint_interval_s: float = defaults.CHECKPOINT_INTERVAL_S,
        commit_slice_s: float = COMMIT_SLICE_S,
    ) -> None:
        self.store = store
        self.checkpointer = checkpointer
        self.metrics = metrics
        self.max_queue_records = max_queue_records
        self.max_batch_records = max_batch_records
        self.checkpoint_interval_s = checkpoint_interval_s
        self.commit_slice_s = commit_slice_s
        self._waiting: FairQueue[_Work] = FairQueue()
        self._wake = threading.Condition(threading.Lock())
        self._queued_records = 0  # records submitted and not yet answered
        self._active: dict[str, float] = {}  # source -> time of its last request
        self._rate = 5_000.0  # records per second of commit time, measured as commits go
        self._stop_requested = False
        self._thread = threading.Thread(target=self._run, name="otaudit-sequencer", daemon=True)
        self._stopping = False
        self._refused = False  # a refusal to sign is on the ledger (none signed since)
        #: Called (in the writer thread) after each commit that appended records.
        self.on_commit: list[Callable[[], None]] = []
        self.metrics.lag.set_function(self._lag)
        self.metrics.tree_size.set(store.tree_size())
        latest = checkpointer.latest
        self.metrics.checkpoint_size.set(latest.tree_size if latest else 0)

    def _lag(self) -> float:
        with self._wake:
            oldest = self._waiting.oldest()
        return time.monotonic() - oldest if oldest is not None else 0.0

    def start(self) -> None:
        """Sign a checkpoint for anything left uncovered, then start the writer thread."""
        self._checkpoint()
        self._thread.start()

    def stop(self) -> None:
        """Finish queued work, sign a final checkpoint and stop the thread."""
        if self._thread.is_alive():
            with self._wake:
                self._stop_requested = True
                self._wake.notify()
            self._thread.join()

    def submit(self, entries: list[Entry], source: str = "") -> Future[list[int | None]]:
        """Queue entries for the next commit; the future gets their sequence numbers.

        ``source`` names who sent them (a token id, a client address) for fair shares.
        A sequence number of None means the ledger already held that record.
        Raises ``Overloaded`` when the queue is full or the sequencer is stopping.
        """
        future: Future[list[int | None]] = Future()
        # Running from the start: a receiver that stops waiting cannot cancel a commit.
        future.set_running_or_notify_cancel()
        if not entries:
            future.set_result([])
            return future
        now = time.monotonic()
        with self._wake:
            if self._stopping or self._stop_requested:
                raise Overloaded("otaudit is shutting down", retry_after_s=5)
            if len(entries) > self.max_queue_records:
                raise PayloadTooLarge(
                    f"{len(entries)} records in one request can never fit the sequencer's"
                    f" queue of {self.max_queue_records}; send smaller batches"
                )
            if self._queued_records + len(entries) > self.max_queue_records:
                raise Overloaded(
                    f"sequencer queue full ({self._queued_records} records waiting, "
                    f"limit {self.max_queue_records})"
                )
            self._queued_records += len(entries)
            self.metrics.queue_records.set(self._queued_records)
            self._active[source] = now
            self._waiting.put(source, _Work(entries, future), now)
            self._wake.notify()
        return future

    def _dirty(self) -> bool:
        """Whether records may lack a checkpoint (True too when the store cannot say)."""
        latest = self.checkpointer.latest
        try:
            return latest is None or latest.tree_size < self.store.tree_size()
        except StoreError:
            return True

    def _limit(self, now: float) -> int:
        """Records the next commit may take: a slice while several sources are active."""
        for source, seen in list(self._active.items()):
            if now - seen > ACTIVE_S:
                del self._active[source]
        if len(self._active) < 2:
            return self.max_batch_records
        return min(self.max_batch_records, max(_MIN_SLICE, int(self._rate * self.commit_slice_s)))

    def _next(self, timeout: float | None) -> tuple[list[Piece[_Work]], bool]:
        """The pieces of the next commit (none after ``timeout``) and whether to stop."""
        with self._wake:
            if not len(self._waiting) and not self._stop_requested:
                self._wake.wait(timeout)
            if self._stop_requested:
                self._stopping = True
            return self._waiting.take(self._limit(time.monotonic())), self._stopping

    def _run(self) -> None:
        last_checkpoint = time.monotonic()
        stop = False
        while not stop:
            # Idle, the store is still looked at once an interval: records that another
            # process appended (a command's read record, another node) are signed without
            # waiting for new data to arrive here.
            dirty = self._dirty()
            wait = max(0.0, last_checkpoint + self.checkpoint_interval_s - time.monotonic())
            pieces, stop = self._next(wait if dirty else self.checkpoint_interval_s)
            if pieces:
                self._commit(pieces)
            due = time.monotonic() - last_checkpoint >= self.checkpoint_interval_s
            if stop or (due and (dirty or bool(pieces))):
                self._checkpoint()
                last_checkpoint = time.monotonic()
        # Submissions are refused from now on; commit what is left.
        while True:
            with self._wake:
                pieces = self._waiting.take(self.max_batch_records)
            if not pieces:
                break
            self._commit(pieces)
        self._checkpoint()

    def _commit(self, batch: list[Piece[_Work]]) -> None:
        """Append a group of pieces of requests in one transaction and answer each request
        whose last piece it holds.

        A store failure (I/O, locks, an outage) fails the group, retryably. Records the
        store refuses as data fail only the request that sent them: the group is then
        committed again one piece at a time, so nothing one client sends can fail
        another client's export."""
        try:
            error = self._append(batch)
            if error is None:
                return
            if len(batch) > 1 and isinstance(error, UnstorableRecords):
                log.warning(
                    "a group commit of %d requests failed on one's records (%s); "
                    "committing them one by one",
                    len(batch),
                    error,
                )
                for piece in batch:
                    alone = self._append([piece])
                    if alone is not None:
                        self._fail([piece], alone)
                return
            self._fail(batch, error)
        finally:
            count = sum(p.end - p.start for p in batch)
            with self._wake:
                self._queued_records -= count
                self.metrics.queue_records.set(self._queued_records)

    def _append(self, batch: list[Piece[_Work]]) -> OtauditError | None:
        """Append the pieces' records and answer the requests they finish; the error if it
        failed (nothing is answered then)."""
        entries = [e for p in batch for e in p.work.entries[p.start : p.end]]
        if any(p.work.future.done() for p in batch):  # an earlier piece failed
            batch = [p for p in batch if not p.work.future.done()]
            entries = [e for p in batch for e in p.work.entries[p.start : p.end]]
            if not batch:
                return None
        started = time.monotonic()
        try:
            result = self.store.append(entries)
        except OtauditError as exc:
            return exc
        except Exception as exc:  # the writer must outlive any failure: answer, then go on
            return UnstorableRecords(f"the records could not be stored: {exc!r}")
        took = time.monotonic() - started
        self.metrics.commit_seconds.observe(took)
        if len(entries) >= _MIN_SLICE and took > 0:
            self._rate = 0.8 * self._rate + 0.2 * (len(entries) / took)
        self.metrics.tree_size.set(result.tree_size)
        counts: Counter[tuple[bool, str]] = Counter(
            (seq is not None, e.columns.signal) for e, seq in zip(entries, result.seqs, strict=True)
        )
        for (sealed, signal), n in counts.items():
            (self.metrics.sealed if sealed else self.metrics.duplicates).labels(signal).inc(n)
        at = 0
        for p in batch:
            n = p.end - p.start
            p.work.seqs += result.seqs[at : at + n]
            at += n
            if p.last:
                p.work.future.set_result(p.work.seqs)
        for listener in self.on_commit:
            listener()
        return None

    @staticmethod
    def _fail(batch: list[Piece[_Work]], error: OtauditError) -> None:
        count = sum(p.end - p.start for p in batch)
        if isinstance(error, UnstorableRecords):
            log.warning("%d records refused by the store, not acknowledged: %s", count, error)
        else:
            log.error("append failed, %d records not acknowledged: %s", count, error)
        for p in batch:
            if p.work.future.done():
                continue
            stored = len(p.work.seqs)
            failure = error
            if stored and isinstance(error, UnstorableRecords):
                # Its earlier pieces are durable: say so (a resend finds them duplicates).
                failure = UnstorableRecords(
                    f"{error} ({stored} of the request's {p.work.size} records were stored "
                    "before this)"
                )
            p.work.future.set_exception(failure)

    def _report_refusal(self, message: str) -> None:
        """Put a refusal to sign on the ledger itself, once until a checkpoint is signed
        again (the record grows the tree, and every later attempt fails the same way)."""
        if self._refused:
            return
        try:
            record_refusal(DirectAppender(self.store), message)
        except StoreError as exc:
            log.error("the refusal to sign is not recorded in the ledger: %s", exc)
            return
        self._refused = True

    def _checkpoint(self) -> None:
        try:
            cp = self.checkpointer.checkpoint()
        except (StoreError, ConfigError) as exc:  # ConfigError: the saved checkpoint's file
            log.error("checkpoint not signed: %s", exc)
            return
        except VerificationError as exc:
            log.critical("%s; run `otaudit verify`", exc)
            self._report_refusal(str(exc))
            return
        if cp is not None:
            self._refused = False
            self.metrics.checkpoint_size.set(cp.tree_size)
