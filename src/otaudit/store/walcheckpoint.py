"""WAL checkpoints of a served SQLite ledger, off the writer's path.

In WAL mode a commit appends pages to ``ledger.db-wal`` and fsyncs it; a checkpoint
copies those pages into ``ledger.db`` and fsyncs that. SQLite runs a checkpoint inside
whichever commit finds the WAL past ``wal_autocheckpoint`` pages (1,000 by default), so
every few commits one of them also pays for copying and syncing the database: several
times a plain commit. While ``serve`` appends, this thread does it instead, on a
connection of its own, a few times a second (``PASSIVE``: it never blocks the writer
and copies what no reader still needs; a page the writer changed many times since the
last checkpoint is copied once).

The writer's automatic checkpoint stays, at a larger WAL (:data:`FALLBACK_PAGES`): a
WAL starts over from its beginning only after a checkpoint that caught up with every
commit, which under continuous load this thread may miss; the writer's own checkpoint
then catches up (little is left to copy) and bounds the file. ``journal_size_limit``
gives the disk back once a large WAL starts over.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Final

log = logging.getLogger("otaudit.store")

#: At most this often; and at least this often while commits come.
GAP_S: Final = 0.25
#: How often the thread looks at the WAL when no commit wakes it.
INTERVAL_S: Final = 1.0
#: The writer's own automatic checkpoint while the thread runs (4 KiB pages: 64 MiB).
FALLBACK_PAGES: Final = 16_384
#: SQLite's default automatic checkpoint, given back by :meth:`WalCheckpointer.stop`.
DEFAULT_PAGES: Final = 1_000
#: A WAL that starts over is truncated to this size.
JOURNAL_SIZE_LIMIT: Final = 64 * 1024 * 1024


class WalCheckpointer:
    """A daemon thread that checkpoints ``path``'s WAL while it changes.

    ``pragmas`` runs pragmas on the ledger's writing connections: their automatic
    checkpoints are moved to :data:`FALLBACK_PAGES` while the thread runs and given
    back by :meth:`stop`.
    """

    def __init__(self, path: Path, pragmas: Callable[[str], None], *, gap_s: float = GAP_S) -> None:
        self.path = path
        self.wal = path.with_name(path.name + "-wal")
        self.pragmas = pragmas
        self.gap_s = gap_s
        #: Checkpoints run (a figure for tests and benchmarks).
        self.checkpoints = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._seen: float | None = None  # the WAL's mtime at the last checkpoint
        self._conn = sqlite3.connect(
            f"file:{path}?mode=rw", uri=True, isolation_level=None, check_same_thread=False
        )
        self._conn.execute("PRAGMA busy_timeout = 10000")
        self._conn.execute("PRAGMA synchronous = FULL")
        self._thread = threading.Thread(target=self._run, name="otaudit-wal", daemon=True)

    def start(self) -> None:
        """Take the writer's checkpoints over and start the thread."""
        self.pragmas(
            f"PRAGMA wal_autocheckpoint = {FALLBACK_PAGES};"
            f" PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT};"
        )
        self._thread.start()

    def wake(self) -> None:
        """A commit happened (called by the writer, cheap)."""
        self._wake.set()

    def stop(self) -> None:
        """Stop the thread, run a last checkpoint and give the writer its own back."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join()
        self._checkpoint()
        self._conn.close()
        self.pragmas(f"PRAGMA wal_autocheckpoint = {DEFAULT_PAGES};")

    def _changed(self) -> bool:
        try:
            mtime = self.wal.stat().st_mtime
        except OSError:
            return False
        return mtime != self._seen

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(INTERVAL_S)
            self._wake.clear()
            if self._changed():
                self._checkpoint()
                self._stop.wait(self.gap_s)

    def _checkpoint(self) -> None:
        """One ``PASSIVE`` checkpoint; a failure is logged, and the writer's fallback
        checkpoint keeps the WAL bounded until the next one works."""
        try:
            mtime = self.wal.stat().st_mtime
        except OSError:
            return
        try:
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:
            log.warning("checkpointing the WAL of %s failed: %s", self.path, exc)
            return
        self._seen = mtime
        self.checkpoints += 1
