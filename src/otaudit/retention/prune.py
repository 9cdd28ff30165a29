"""``otaudit prune``: removing the payloads of records past their retention.

One run:

1. finishes a removal an earlier run left halfway (:func:`removal.finish_pending`);
2. appends the policy record when the policy changed since the last one;
3. selects, among the records sealed before the run began, those past their
   retention, measured from their sealed receive time (``received_at``, never the
   client's own time) and the first rule that matches them, and sets aside those under a
   legal hold;
4. with an archive, copies every record past its retention (held ones too: their
   segments get a legal hold) as verifiable bundle segments, each locked until its
   records' archive retention ends;
5. removes the payloads of the records past retention and under no hold, under receipts
   (:mod:`otaudit.retention.removal`), in small transactions so that ingest goes on;
6. gives the freed pages back to the file system (SQLite), a little at a time.

Records that arrive while it runs are after its snapshot of the tree and are not looked at.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from otaudit.access import Reader
from otaudit.keys import SigningKey, VerifierKey
from otaudit.ownrecords import Appender
from otaudit.retention.holds import active_holds, hold_condition
from otaudit.retention.policy import Policy, record_policy
from otaudit.retention.removal import DELETE_BATCH, finish_pending, remove
from otaudit.store.base import Store

if TYPE_CHECKING:  # the S3 client loads only when an archive is used
    from otaudit.archive import ArchiveTarget

#: Free pages given back per step (4 MiB of 4 KiB pages), so that appends wait little.
RECLAIM_PAGES: Final = 1024
#: The columns a rule matches on, and the receive time.
_RULE_COLUMNS: Final = ("seq", "action", "resource_type", "service", "pipeline", "signal",
                        "received_at")  # fmt: skip


@dataclass
class PruneReport:
    """What one prune found and did (``pruned``: payloads removed, or that would be with
    ``dry_run``; ``held``: past retention but under a hold)."""

    pruned: int = 0
    held: int = 0
    archived: int = 0
    receipts: list[int] = field(default_factory=list)
    policy_seq: int | None = None
    finished: int = 0
    reclaimed_pages: int = 0
    segments: list[str] = field(default_factory=list)
    dry_run: bool = False
    seconds: float = 0.0

    @property
    def receipt_seq(self) -> int | None:
        """The last receipt appended (None: nothing was pruned)."""
        return self.receipts[-1] if self.receipts else None

    def as_json(self) -> dict[str, Any]:
        """The machine-readable summary (``--format json``)."""
        return {
            "pruned": self.pruned,
            "held": self.held,
            "archived": self.archived,
            "receipt_seq": self.receipt_seq,
            "receipts": self.receipts,
            "policy_seq": self.policy_seq,
            "finished": self.finished,
            "segments": self.segments,
            "reclaimed_pages": self.reclaimed_pages,
            "dry_run": self.dry_run,
        }


@dataclass(frozen=True)
class Archive:
    """Where ``prune --archive`` copies records first, and with which keys."""

    target: ArchiveTarget
    url: str
    key: VerifierKey
    signer: SigningKey | None = None


def prune(
    store: Store,
    policy: Policy,
    appender: Appender,
    reader: Reader,
    *,
    now_ns: int | None = None,
    dry_run: bool = False,
    archive: Archive | None = None,
    batch: int = DELETE_BATCH,
    pause_s: float = 0.0,
    progress: Callable[[str, int], object] | None = None,
    stop: threading.Event | None = None,
    rate: float = 0.0,
) -> PruneReport:
    """One prune run (module docstring); returns what it did. ``rate``: at most that many
    rows deleted a second (0: as fast as the deletes go, ``pause_s`` apart)."""
    started = time.perf_counter()
    now = time.time_ns() if now_ns is None else now_ns
    report = PruneReport(dry_run=dry_run)
    if not dry_run:
        report.finished = finish_pending(store, batch=batch, pause_s=pause_s)
        report.policy_seq = record_policy(appender, reader, store, policy)
    end = store.tree_size()
    expired_sql, expired_params = policy.expired_condition(now, store.placeholder)
    expired = list(store.rows_where(_RULE_COLUMNS, expired_sql, expired_params, end=end))
    held: set[int] = set()
    holds = active_holds(store)
    if holds and expired:
        hold_sql, hold_params = hold_condition(holds, store.placeholder)
        condition = f"({expired_sql}) AND ({hold_sql})"
        held = set(store.seqs_where(condition, [*expired_params, *hold_params], end=end))
    prunable = [int(r[0]) for r in expired if int(r[0]) not in held]
    report.pruned, report.held = len(prunable), len(held)
    if dry_run:
        report.seconds = time.perf_counter() - started
        return report
    if archive is not None and expired:
        from otaudit.archive import archive_records

        until = {int(r[0]): _retain_until(policy, r) for r in expired}
        result = archive_records(
            store,
            archive.key,
            archive.target,
            [int(r[0]) for r in expired],
            until,
            held,
            signer=archive.signer,
        )
        report.archived, report.segments = result.records, list(result.segments)
    if prunable:

        def tell(n: int) -> None:
            if progress is not None:
                progress("pruned", n)

        done = remove(
            store,
            appender,
            reader,
            prunable,
            kind="prune",
            policy=policy.sha256,
            archive=archive.url if archive is not None else "",
            batch=batch,
            pause_s=pause_s,
            progress=tell,
            stop=stop,
            rate=rate,
        )
        report.receipts = done.receipts
        report.reclaimed_pages = reclaim(store, pause_s=pause_s)
    report.seconds = time.perf_counter() - started
    return report


def _retain_until(policy: Policy, row: tuple[Any, ...]) -> datetime | None:
    """How long the archived copy of a record must be kept: its receive time plus its
    rule's archive retention (None: the policy sets none)."""
    keep_s = policy.archive_for(dict(zip(_RULE_COLUMNS, row, strict=True)))
    if keep_s is None:
        return None
    received = datetime.strptime(str(row[-1])[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    return received + timedelta(seconds=keep_s + 1)


def reclaim(store: Store, *, pause_s: float = 0.0) -> int:
    """Give the free pages back, :data:`RECLAIM_PAGES` per step; how many were."""
    total = 0
    while (n := store.reclaim_space(RECLAIM_PAGES)) > 0:
        total += n
        if pause_s:
            time.sleep(pause_s)
    return total
