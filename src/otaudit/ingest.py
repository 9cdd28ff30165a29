"""Transport-independent ingest: decode, select, stamp, seal, then hand to the sequencer.

The CPU-heavy half (gunzip, decode, select, seal: about 80 % of the work per
record) runs in a pool of worker processes, so it uses every core and never
blocks the HTTP event loop or competes with the sequencer for the GIL. The
parent keeps the cheap half: counting, queueing and the single writer.

A second pool of as many workers runs at a lower CPU priority (niceness
:data:`BULK_NICENESS`): while several sources send, the requests of one sending
more than its share (:class:`otaudit.fairqueue.SourceRates`) are decoded there,
so that on a small machine a flood waits for the processor, not everyone else.

Both receivers call :meth:`Ingest.prepare` with the raw body and the time the
request arrived, then :meth:`Ingest.commit` with the result, and wait on the
returned future: it resolves only after every selected record is committed.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import signal
import threading
import time
from collections import Counter
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Final

from otaudit import access, defaults, lifeline
from otaudit.droplog import DropLog
from otaudit.errors import ConfigError, DecodeError, Overloaded, PayloadTooLarge
from otaudit.fairqueue import SourceRates
from otaudit.ledger import ACTIVE_S, Sequencer
from otaudit.metrics import Metrics
from otaudit.otlp import body as otlp_body
from otaudit.otlp import native
from otaudit.otlp.convert import (
    Limits,
    Selection,
    count_data_points,
    count_records,
    select_logs,
    select_spans,
)
from otaudit.otlp.wirecount import records_over
from otaudit.record import Entry, seal
from otaudit.redaction import Redactor

PIPELINE_HEADER: Final = "x-audit-pipeline"
_PIPELINE_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,63}")
_SIGNALS: Final = {"traces": ("span", select_spans), "logs": ("log", select_logs)}
#: How long a receiver waits for the commit of an export before answering 503 (retryable;
#: if the commit lands later, the retry is recognised as a duplicate).
COMMIT_WAIT_S: Final = 120.0
#: Niceness of the workers that decode for a source sending more than its share.
BULK_NICENESS: Final = 10
_METRICS_MESSAGE: Final = "otaudit keeps audit spans and log records only; metrics are not stored"


def source_of(token_id: str | None, address: str | None) -> str:
    """Whom a request counts against for fair shares: its token, else its address."""
    return f"token:{token_id}" if token_id is not None else f"address:{address or '?'}"


def pipeline_problem(name: str) -> str | None:
    """What is wrong with ``name`` as the pipeline of clients' records, or None."""
    if not _PIPELINE_RE.fullmatch(name):
        return f"must be 1-64 letters, digits or ._/- characters, got {name!r}"
    if name == access.PIPELINE:
        return f"{name!r} is reserved for otaudit's own records"
    return None


@dataclass(frozen=True)
class IngestSettings:
    """Ingest policy and limits (see ``otaudit serve --help``); ConfigError for a default
    pipeline no client may use, such as otaudit's own."""

    audit_attribute: str = defaults.AUDIT_ATTRIBUTE
    default_pipeline: str = defaults.PIPELINE
    max_body_bytes: int = defaults.MAX_BODY_BYTES
    workers: int = defaults.WORKERS
    limits: Limits = field(default_factory=Limits)
    redactor: Redactor | None = None

    def __post_init__(self) -> None:
        problem = pipeline_problem(self.default_pipeline)
        if problem is not None:
            raise ConfigError(f"--pipeline {problem}")


@dataclass
class Prepared:
    """One export request decoded and sealed, ready to commit.

    ``otlp_signal`` is the request's OTLP signal (``traces``, ``logs``, ``metrics``: the
    export path or gRPC service); ``signal`` that of its records (``span``, ``log``,
    ``metric``), as the record format and the ``/metrics`` labels name it.
    """

    otlp_signal: str
    signal: str
    received: int = 0
    dropped: int = 0
    rejected: int = 0
    message: str = ""
    entries: list[Entry] = field(default_factory=list)
    near_misses: int = 0  # of dropped: audit.* attributes but no audit.action
    near_miss_keys: list[str] = field(default_factory=list)


def prepare(
    otlp_signal: str,
    media: str,
    body: bytes,
    gzipped: bool,
    pipeline: str,
    received_ns: int,
    settings: IngestSettings,
) -> Prepared:
    """Decompress, decode, select and seal one export request (runs in a worker process).

    Raises ``DecodeError`` for a body that cannot be taken, and ``PayloadTooLarge`` for
    one over the size or record limit (neither is worth retrying); nothing is queued then.

    Protobuf spans and logs are prepared by the compiled core (``otaudit.otlp.native``),
    byte for byte as the Python path below (the reference) prepares them; OTLP/JSON,
    metrics, and the few requests the core leaves to the reference take that path.
    """
    data = otlp_body.gunzip(body, settings.max_body_bytes) if gzipped else body
    limit = settings.limits.max_records
    if media == otlp_body.PROTOBUF and otlp_signal in native.SIGNALS:
        signal = native.SIGNALS[otlp_signal]
        try:
            sel, entries = native.prepare(
                otlp_signal,
                data,
                settings.audit_attribute,
                settings.limits,
                settings.redactor,
                pipeline,
                received_ns,
            )
        except native.TooMany as exc:
            count = f"more than {limit}" if exc.count is None else str(exc.count)
            raise _too_many(count, signal, limit) from None
        except native.Undecodable:
            pass  # the reference decides (and words the DecodeError)
        else:
            return _prepared(otlp_signal, sel, entries)
    return prepare_reference(otlp_signal, media, data, pipeline, received_ns, settings)


def prepare_reference(
    otlp_signal: str,
    media: str,
    data: bytes,
    pipeline: str,
    received_ns: int,
    settings: IngestSettings,
) -> Prepared:
    """:func:`prepare` in Python alone, on the decompressed body ``data``: the readable
    reference that the compiled core is held byte-for-byte equal to."""
    limit = settings.limits.max_records
    if otlp_signal != "metrics" and media == otlp_body.PROTOBUF and records_over(data, limit):
        raise _too_many(f"more than {limit}", _SIGNALS[otlp_signal][0], limit)
    request = otlp_body.decode(otlp_signal, media, data)
    if otlp_signal == "metrics":
        points = count_data_points(request)
        return Prepared(otlp_signal, "metric", points, points, points, _METRICS_MESSAGE)
    signal, select = _SIGNALS[otlp_signal]
    if (records := count_records(request)) > limit:
        raise _too_many(str(records), signal, limit)
    sel = select(request, settings.audit_attribute, settings.limits, settings.redactor, len(data))
    entries = [seal(obj, content, pipeline, received_ns) for obj, content in sel.records]
    return _prepared(otlp_signal, sel, entries)


def _prepared(otlp_signal: str, sel: Selection, entries: list[Entry]) -> Prepared:
    return Prepared(
        otlp_signal,
        sel.signal,
        sel.received,
        sel.dropped,
        sel.rejected,
        sel.error_message,
        entries,
        sel.near_misses,
        sel.near_miss_keys,
    )


def _too_many(count: str, signal: str, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the request holds {count} {signal} records, over the limit of {limit} per request;"
        " nothing was stored: send smaller batches (the SDK's max_export_batch_size, the"
        " Collector's send_batch_max_size)"
    )


def _worker_init(niceness: int) -> None:
    """Workers leave SIGINT to the server, which shuts them down in order, and end at once
    when the server is gone (killed or crashed) instead of waiting for work forever."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    lifeline.exit_with_parent()
    if niceness:
        os.nice(niceness)


def _warm_up() -> None:
    """Start a worker (and import the decoding path) before the first request needs it."""


_PrepareArgs = tuple[str, str, bytes, bool, str, int, IngestSettings]


class _Workers:
    """One pool of decode processes, made again after one of them died."""

    def __init__(self, size: int, niceness: int) -> None:
        self._size, self._niceness = size, niceness
        self._pool = self._new_pool()
        self._broken = False

    def _new_pool(self) -> ProcessPoolExecutor:
        # forkserver: the server has threads (gRPC, sequencer) that must not be forked.
        pool = ProcessPoolExecutor(
            self._size,
            mp_context=multiprocessing.get_context("forkserver"),
            initializer=_worker_init,
            initargs=(self._niceness,),
        )
        for _ in range(self._size):
            pool.submit(_warm_up)
        return pool

    def submit(self, args: _PrepareArgs) -> Future[Prepared]:
        """Run :func:`prepare` on ``args``; a dead worker's requests fail with Overloaded."""
        if self._broken:
            self._broken = False
            self._pool = self._new_pool()
        try:
            inner = self._pool.submit(prepare, *args)
        except BrokenProcessPool:
            self._broken = True
            raise Overloaded("an ingest worker process died; it is being restarted") from None
        outer: Future[Prepared] = Future()

        def relay(done: Future[Prepared]) -> None:
            if outer.cancelled():  # the client went away; nothing was queued
                return
            exc = done.exception()
            if isinstance(exc, BrokenProcessPool):
                self._broken = True
                outer.set_exception(Overloaded("an ingest worker process died; retry"))
            elif exc is not None:
                outer.set_exception(exc)
            else:
                outer.set_result(done.result())

        inner.add_done_callback(relay)
        return outer

    def close(self, deadline: float) -> None:
        """Stop the processes; those still busy at ``deadline`` (monotonic) are killed."""
        processes = list(self._pool._processes.values())
        self._pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(1.0)


class Ingest:
    """Turns OTLP export request bodies into committed ledger entries."""

    def __init__(self, sequencer: Sequencer, metrics: Metrics, settings: IngestSettings) -> None:
        self.sequencer = sequencer
        self.metrics = metrics
        self.settings = settings
        self._workers: _Workers | None = None
        self._bulk: _Workers | None = None
        if settings.workers > 0:
            self._workers = _Workers(settings.workers, 0)
            self._bulk = _Workers(settings.workers, BULK_NICENESS)
        self._rates = SourceRates(ACTIVE_S)
        self._rates_lock = threading.Lock()
        self.drops = DropLog()

    def note_dropped(self, prepared: Prepared, address: str | None) -> None:
        """Say in the log (at a bounded rate) what ``address`` sent that was not kept."""
        drops = self.drops
        if prepared.otlp_signal == "metrics":
            drops.note("metrics_not_kept", address, prepared.dropped)
            return
        if prepared.near_misses:
            names = ", ".join(prepared.near_miss_keys)
            drops.note(
                "audit_action_missing",
                address,
                prepared.near_misses,
                f"{self.settings.audit_attribute} is missing; attributes seen: {names}",
            )
        drops.note("not_audit", address, prepared.dropped - prepared.near_misses)

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the worker processes: those still busy after ``timeout_s`` are killed (their
        requests were answered or abandoned by then); log the drops held back."""
        self.drops.close()
        deadline = time.monotonic() + timeout_s
        for workers in (self._workers, self._bulk):
            if workers is not None:
                workers.close(deadline)

    def pipeline(self, header: str | None) -> str:
        """The pipeline name for a request: its ``X-Audit-Pipeline`` header or the default."""
        if header is None:
            return self.settings.default_pipeline
        problem = pipeline_problem(header)
        if problem is not None:
            raise DecodeError(f"{PIPELINE_HEADER} {problem}")
        return header

    def prepare(
        self,
        otlp_signal: str,
        media: str,
        body: bytes,
        gzipped: bool,
        pipeline: str,
        received_ns: int,
        source: str = "",
    ) -> Future[Prepared]:
        """Start :func:`prepare` for one request in a worker; the future raises its errors.

        ``source`` (:func:`source_of`) picks the pool: the low-priority one while it sends
        more than its share beside other sources.
        """
        args: _PrepareArgs = (
            otlp_signal,
            media,
            body,
            gzipped,
            pipeline,
            received_ns,
            self.settings,
        )
        if self._workers is None or self._bulk is None:
            outer: Future[Prepared] = Future()
            try:
                outer.set_result(prepare(*args))
            except Exception as exc:
                outer.set_exception(exc)
            return outer
        with self._rates_lock:
            heavy = self._rates.note(source, len(body), time.monotonic())
        if heavy:
            self.metrics.bulk_decodes.inc()
        return (self._bulk if heavy else self._workers).submit(args)

    def commit(self, prepared: Prepared, source: str = "") -> Future[list[int | None]]:
        """Count a prepared request and queue its entries for the next durable commit.

        ``source`` is who sent it (:func:`source_of`), for the writer's fair shares.

        Raises ``Overloaded`` when the sequencer queue is full; nothing is queued then.
        """
        signal = prepared.signal
        self.metrics.received.labels(signal).inc(prepared.received)
        if prepared.otlp_signal == "metrics":
            self.metrics.dropped.labels(signal, "metrics_not_kept").inc(prepared.dropped)
            done: Future[list[int | None]] = Future()
            done.set_result([])
            return done
        if prepared.dropped > prepared.near_misses:
            not_audit = prepared.dropped - prepared.near_misses
            self.metrics.dropped.labels(signal, "not_audit").inc(not_audit)
        if prepared.near_misses:
            self.metrics.dropped.labels(signal, "audit_action_missing").inc(prepared.near_misses)
        if prepared.rejected:
            self.metrics.rejected.labels(signal).inc(prepared.rejected)
        entries = prepared.entries
        # Non-conforming records are rare: one cheap pass here; counting waits for the commit
        # so that only records sealed now count, not retried ones the ledger already held.
        lacking = [(i, e.columns) for i, e in enumerate(entries) if e.columns.missing is not None]
        future = self.sequencer.submit(entries, source)
        if not lacking:
            return future
        # The caller's future resolves after the counting, so /metrics is current on reply.
        outer: Future[list[int | None]] = Future()
        nonconforming = self.metrics.nonconforming

        def count(done: Future[list[int | None]]) -> None:
            exc = done.exception()
            if exc is None:
                seqs = done.result()
                counts = Counter(
                    (c.service or "", c.missing or "") for i, c in lacking if seqs[i] is not None
                )
                for (service, missing), n in counts.items():
                    nonconforming.labels(service, missing).inc(n)
            if not outer.set_running_or_notify_cancel():  # the caller stopped waiting
                return
            if exc is None:
                outer.set_result(seqs)
            else:
                outer.set_exception(exc)

        future.add_done_callback(count)
        return outer
