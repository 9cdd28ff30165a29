"""Completeness numbering: ``audit.producer.id`` and ``audit.producer.seq``.

Each process is one producer. Its id is a random UUID4 string created on first
use (or set with :func:`configure`); every audit record the helpers emit, span
or log, claims the next number 1, 2, 3 ... under that id. Numbers are claimed
under a lock, so they are distinct and without gaps across threads. An auditor
who finds a number missing in the ledger knows a record was emitted and lost
(dropped by a sampler, a full queue, a failed export, a missing provider).

A process forked after the id was created starts a new producer with a fresh
random id, so two workers of a pre-forking server never share numbers.
"""

from __future__ import annotations

import os
import threading
import uuid

__all__ = ["configure", "next_number", "producer_id"]


class _Producer:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.id: str | None = None
        self.seq = 0

    def ensure_id(self) -> str:
        if self.id is None:
            self.id = str(uuid.uuid4())
        return self.id


_producer = _Producer()


def configure(*, producer_id: str | None = None) -> None:
    """Configure the helpers for this process.

    ``producer_id`` replaces the producer id (by default a random UUID4 string).
    A different id starts a new numbering at 1; the same id keeps counting. The
    id must be unique to this process's lifetime: a fixed name reused after a
    restart repeats numbers, which an auditor sees as duplicates. It applies to
    the current process only; a forked child gets a fresh random id, so
    configure it again after forking (e.g. in a post-fork hook).
    """
    if producer_id is None:
        return
    if not isinstance(producer_id, str) or not producer_id:
        raise ValueError("producer_id must be a non-empty string")
    with _producer.lock:
        if producer_id != _producer.id:
            _producer.id = producer_id
            _producer.seq = 0


def producer_id() -> str:
    """This process's ``audit.producer.id`` (created on first use)."""
    with _producer.lock:
        return _producer.ensure_id()


def next_number() -> tuple[str, int]:
    """Claim the next record number: ``(audit.producer.id, audit.producer.seq)``.

    Every call returns a number one higher than the previous one (starting at
    1), thread-safe; a claimed number is never handed out again. The helpers
    call this once per record; call it yourself only for a record you emit.
    """
    with _producer.lock:
        pid = _producer.ensure_id()
        _producer.seq += 1
        return pid, _producer.seq


def _after_fork_in_child() -> None:
    global _producer
    _producer = _Producer()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
