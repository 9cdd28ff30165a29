"""Removing record payloads under a receipt, and finishing a removal that stopped halfway.

The order is what keeps the ledger verifiable at every instant, whatever stops the
process (a crash, SIGKILL, a full disk):

1. the receipt is appended (durably, through the ledger's one writer);
2. its ranges go into ``removals`` (one transaction), which lets the database delete
   those rows and no others;
3. the rows are deleted in small transactions (``batch`` rows each), so that appends
   wait at most one of them.

Stopped after 1, the receipt names records still present: ``verify`` accepts that (a
receipt may name a present record, as it does after a restore) and the next prune
finishes the job (:func:`finish_pending`). Stopped during 3, the same. A record whose
leaf and place in the tree stay is never renumbered, so every proof issued before stays
valid.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from otaudit.access import Reader
from otaudit.conventions import OWN_PIPELINE
from otaudit.ownrecords import Appender, append_one
from otaudit.retention.policy import STRUCTURAL_ACTIONS
from otaudit.retention.receipts import (
    Cover,
    Range,
    chunks,
    count,
    leaf_digest,
    read_receipts,
    receipt_entry,
    to_ranges,
)
from otaudit.store.base import Store

#: Rows deleted per transaction: an append waits for at most one such transaction.
DELETE_BATCH: Final = 2000
#: The action of a record saying an archived payload was put back (``archive restore``).
RESTORE_ACTION: Final = "otaudit.archive_restore"


@dataclass
class Removed:
    """What one removal did: the receipts appended and the rows deleted."""

    receipts: list[int] = field(default_factory=list)
    records: int = 0
    deleted: int = 0


def structural_condition() -> str:
    """A condition over the records columns true for the records the ledger itself needs
    (receipts, policies, holds, key rotations, restores): never pruned or erased."""
    actions = ", ".join(f"'{a}'" for a in STRUCTURAL_ACTIONS)
    return f"pipeline = '{OWN_PIPELINE}' AND action IN ({actions})"


def subtract(ranges: Sequence[Range], covered: Sequence[Range]) -> list[Range]:
    """The parts of sorted disjoint ``ranges`` outside sorted disjoint ``covered``."""
    out: list[Range] = []
    cover = Cover(covered)
    for first, last in ranges:
        seq = first
        while seq <= last:
            stop = cover.end_of(seq)
            if stop is not None:
                seq = stop + 1
                continue
            nxt = _next_start(covered, seq)
            end = last if nxt is None else min(last, nxt - 1)
            out.append((seq, end))
            seq = end + 1
    return out


def _next_start(covered: Sequence[Range], seq: int) -> int | None:
    lo, hi = 0, len(covered)
    while lo < hi:
        mid = (lo + hi) // 2
        if covered[mid][0] <= seq:
            lo = mid + 1
        else:
            hi = mid
    return covered[lo][0] if lo < len(covered) else None


def delete_ranges(
    store: Store,
    ranges: Iterable[Range],
    *,
    batch: int = DELETE_BATCH,
    pause_s: float = 0.0,
    progress: Callable[[int], object] | None = None,
    stop: threading.Event | None = None,
    rate: float = 0.0,
) -> int:
    """Delete the rows of ``ranges`` (already in ``removals``), ``batch`` seqs per
    transaction, pausing ``pause_s`` between them and at most ``rate`` rows a second
    (0: no limit), until ``stop`` is set (what is left, the next :func:`finish_pending`
    deletes); how many rows went."""
    deleted = 0
    started = time.monotonic()
    for first, last in ranges:
        for a in range(first, last + 1, batch):
            if stop is not None and stop.is_set():
                return deleted
            deleted += store.remove_payloads(a, min(a + batch - 1, last))
            if progress is not None:
                progress(deleted)
            ahead = deleted / rate - (time.monotonic() - started) if rate > 0 else 0.0
            if max(ahead, pause_s) > 0:
                time.sleep(max(ahead, pause_s))
    return deleted


def remove(
    store: Store,
    appender: Appender,
    reader: Reader,
    seqs: Sequence[int],
    *,
    kind: str,
    policy: str = "",
    subject: str = "",
    reason: str = "",
    archive: str = "",
    batch: int = DELETE_BATCH,
    pause_s: float = 0.0,
    progress: Callable[[int], object] | None = None,
    stop: threading.Event | None = None,
    rate: float = 0.0,
) -> Removed:
    """Remove the payloads of ``seqs`` (sorted, present, none of them a receipt): one
    receipt per chunk of ranges, then its ranges in ``removals``, then the rows."""
    done = Removed()
    ranges = to_ranges(seqs)
    covered = merged_removals(store)
    for chunk in chunks(ranges):
        digest = leaf_digest(store, chunk)
        entry = receipt_entry(
            reader,
            kind,
            chunk,
            digest,
            policy=policy,
            subject=subject,
            reason=reason,
            archive=archive,
        )
        receipt = append_one(appender, entry)
        done.receipts.append(receipt)
        new = subtract(chunk, covered)  # a restored record is covered already
        if new:
            store.add_removals(receipt, new)
        done.records += count(chunk)

        def tell(n: int, before: int = done.deleted) -> None:
            if progress is not None:
                progress(before + n)

        done.deleted += delete_ranges(
            store, chunk, batch=batch, pause_s=pause_s, progress=tell, stop=stop, rate=rate
        )
        if stop is not None and stop.is_set():
            break
    return done


def merged_removals(store: Store) -> list[Range]:
    """The ``removals`` table's ranges, merged."""
    out: list[Range] = []
    for m in store.removals():
        if out and m.first == out[-1][1] + 1:
            out[-1] = (out[-1][0], m.last)
        else:
            out.append((m.first, m.last))
    return out


def finish_pending(store: Store, *, batch: int = DELETE_BATCH, pause_s: float = 0.0) -> int:
    """Delete the rows a receipt removed that are still stored because a removal stopped
    halfway; a row put back by ``archive restore`` after its latest receipt stays."""
    present = store.present_in_removals()
    if not present:
        return 0
    latest: dict[int, int] = {}  # seq -> the latest receipt naming it
    for receipt in read_receipts(store):
        for first, last in receipt.ranges:
            for seq in _within(present, first, last):
                latest[seq] = receipt.seq
    restored = _restored(store)
    pending = [s for s in present if latest.get(s, -1) > restored.get(s, -1)]
    return delete_ranges(store, to_ranges(pending), batch=batch, pause_s=pause_s)


def _within(seqs: Sequence[int], first: int, last: int) -> list[int]:
    return list(seqs[bisect.bisect_left(seqs, first) : bisect.bisect_right(seqs, last)])


def _restored(store: Store) -> dict[int, int]:
    """seq -> the latest restore record that put it back."""
    out: dict[int, int] = {}
    for seq, _time, _actor, target, _attributes in store.action_rows([RESTORE_ACTION]):
        try:
            out[int(_seq_of(target))] = int(seq)
        except ValueError:
            continue
    return out


def _seq_of(target: Any) -> str:
    """A restore record names the restored seq as its target (``seq:N`` or ``N``)."""
    text = str(target or "")
    return text.removeprefix("seq:")
