"""Where ingest prepares requests: pools of worker processes and of threads.

The Python path (OTLP/JSON, metrics, the requests the compiled core leaves to the
reference) holds the GIL, so it runs in worker processes, which use every core and never
block the event loop or the sequencer. The compiled core runs without the GIL, so
OTLP/protobuf spans and logs are prepared by threads of the server process: their entries
reach the sequencer without being pickled (which costs, per record, about as much as the
core's own work). Each kind comes in two pools: one at normal priority and one at
niceness :data:`otaudit.ingest.BULK_NICENESS`, for a source sending more than its share.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Generic, TypeVar

from otaudit import lifeline
from otaudit.errors import Overloaded

T = TypeVar("T")


def worker_init(niceness: int) -> None:
    """Workers leave SIGINT to the server, which shuts them down in order, and end at once
    when the server is gone (killed or crashed) instead of waiting for work forever."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    lifeline.exit_with_parent()
    if niceness:
        os.nice(niceness)


def warm_up() -> None:
    """Start a worker (and import the decoding path) before the first request needs it."""


class Workers(Generic[T]):
    """One pool of processes running ``fn`` (a module-level function: it is pickled),
    made again after one of them died."""

    def __init__(self, fn: Callable[..., T], size: int, niceness: int) -> None:
        self._fn = fn
        self._size, self._niceness = size, niceness
        self._pool = self._new_pool()
        self._broken = False

    def _new_pool(self) -> ProcessPoolExecutor:
        # forkserver: the server has threads (gRPC, sequencer) that must not be forked.
        pool = ProcessPoolExecutor(
            self._size,
            mp_context=multiprocessing.get_context("forkserver"),
            initializer=worker_init,
            initargs=(self._niceness,),
        )
        for _ in range(self._size):
            pool.submit(warm_up)
        return pool

    def submit(self, args: tuple[Any, ...]) -> Future[T]:
        """Run ``fn`` on ``args``; a dead worker's requests fail with Overloaded."""
        if self._broken:
            self._broken = False
            self._pool = self._new_pool()
        try:
            inner = self._pool.submit(self._fn, *args)
        except BrokenProcessPool:
            self._broken = True
            raise Overloaded("an ingest worker process died; it is being restarted") from None
        outer: Future[T] = Future()

        def relay(done: Future[T]) -> None:
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


def thread_init(niceness: int) -> None:
    """A thread of the low-priority pool runs at ``niceness`` (Linux schedules threads
    one by one: a thread's own priority is set through its thread id)."""
    if niceness:
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)


class Threads(Generic[T]):
    """Threads of the server process running ``fn``, for work that runs without the GIL
    (the compiled core): its results need no pickling on their way back."""

    def __init__(self, fn: Callable[..., T], size: int, niceness: int) -> None:
        self._fn = fn
        self._pool = ThreadPoolExecutor(
            size,
            thread_name_prefix=f"otaudit-prepare-{niceness}",
            initializer=thread_init,
            initargs=(niceness,),
        )

    def submit(self, args: tuple[Any, ...]) -> Future[T]:
        """Run ``fn`` on ``args`` in a thread."""
        return self._pool.submit(self._fn, *args)

    def close(self, deadline: float) -> None:
        """Stop taking requests; those being prepared finish on their own (the core is
        bounded by the request's limits)."""
        del deadline
        self._pool.shutdown(wait=False, cancel_futures=True)
