"""``serve --retention FILE --prune-every 1h``: the prune on a schedule, beside ingest.

A thread of its own runs :func:`otaudit.retention.prune.prune` one interval after start
(at most five minutes) and then every interval, on a store connection of its own,
appending its receipts through the server's sequencer (the log's one writer). Its
deletes take turns with the appends on one lock (SQLite) and go at most ``--prune-rate``
rows a second, so that ingest keeps its latency. A failed run is logged and tried again
at the next interval; stopping the server stops a run at its next batch (the next run
finishes it).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from otaudit.access import Reader
from otaudit.errors import OtauditError
from otaudit.ownrecords import Appender
from otaudit.retention.policy import Policy
from otaudit.retention.prune import Archive, prune
from otaudit.store.base import Store

log = logging.getLogger("otaudit.retention")

#: ``serve --prune-rate``: rows deleted a second at most. Each deleted row rewrites about
#: three pages (its table page and its index entries); faster, the writes crowd out the
#: fsyncs ingest waits on (docs/performance.md, "Retention").
DEFAULT_RATE: Final = 3000.0
#: Rows per delete transaction of the scheduled prune: an append waits for at most one
#: (about 25 ms of deletes).
BATCH: Final = 500
#: How often ``serve --retention`` prunes without ``--prune-every``.
DEFAULT_EVERY_S: Final = 3600
#: The pause between delete batches (``prune`` and the schedule): long enough for an append
#: waiting on SQLite's write lock to take it.
PAUSE_S: Final = 0.02
#: The first scheduled prune runs one interval after start, or this long after it if
#: sooner (a restarted server does not wait an hour to apply its policy).
FIRST_RUN_MAX_S: Final = 300.0
#: Who a scheduled prune's records name as the actor.
READER: Final = Reader("otaudit-retention")


@dataclass(frozen=True)
class RetentionSettings:
    """``serve --retention FILE --prune-every D [--archive URL --s3-endpoint URL]``."""

    policy: Policy
    every_s: float
    archive_url: str | None = None
    s3_endpoint: str | None = None
    rate: float = DEFAULT_RATE


class ScheduledPrune:
    """Runs the prune every ``every_s`` seconds until :meth:`stop`."""

    def __init__(
        self,
        open_store: Callable[[], Store],
        policy: Policy,
        appender: Appender,
        every_s: float,
        archive: Archive | None = None,
        rate: float = DEFAULT_RATE,
    ) -> None:
        self._open = open_store
        self._policy = policy
        self._appender = appender
        self._every_s = every_s
        self._archive = archive
        self._rate = rate
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="otaudit-prune", daemon=True)

    def start(self) -> None:
        """Start the schedule."""
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop: a run in progress ends at its next delete batch."""
        self._stop.set()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        wait = min(self._every_s, FIRST_RUN_MAX_S)
        while not self._stop.wait(wait):
            wait = self._every_s
            try:
                self.run_once()
            except (OtauditError, OSError) as exc:
                log.error("scheduled prune failed (tried again in %gs): %s", self._every_s, exc)

    def run_once(self) -> None:
        """One prune, logged."""
        store = self._open()
        try:
            report = prune(
                store,
                self._policy,
                self._appender,
                READER,
                archive=self._archive,
                batch=BATCH,
                pause_s=PAUSE_S,
                stop=self._stop,
                rate=self._rate,
            )
        finally:
            store.close()
        log.info(
            "prune: %d records pruned, %d held, %d archived, receipts %s (%.1f s)",
            report.pruned,
            report.held,
            report.archived,
            report.receipts or "none",
            report.seconds,
        )
