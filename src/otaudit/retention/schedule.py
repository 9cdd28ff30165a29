"""``serve --retention FILE --prune-every 1h``: the prune on a schedule, beside ingest.

A thread of ``serve`` runs ``otaudit prune`` in a process of its own (so that selecting
and hashing a million records does not take the server's interpreter from ingest, and
at a lower CPU priority) one interval after start (at most five minutes) and then every
interval. The child appends its receipts as every command does and deletes in small
transactions, at most ``--prune-rate`` rows a second, so that ingest keeps its latency.
A failed run is logged and tried again at the next interval; stopping the server stops
a run (the next run finishes what it left).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from otaudit.access import Reader
from otaudit.errors import OtauditError
from otaudit.retention.policy import Policy

log = logging.getLogger("otaudit.retention")

#: ``serve --prune-rate``: rows deleted a second at most. Each deleted row rewrites about
#: three pages (its table page and its index entries); faster, the writes crowd out the
#: fsyncs ingest waits on (docs/performance.md, "Retention").
DEFAULT_RATE: Final = 3000.0
#: Rows per delete transaction of the scheduled prune: an append waits for at most one.
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
    policy_file: Path
    every_s: float
    allow_short: bool = False
    archive_url: str | None = None
    s3_endpoint: str | None = None
    rate: float = DEFAULT_RATE


class ScheduledPrune:
    """Runs ``otaudit prune`` (``argv``) every ``every_s`` seconds until :meth:`stop`."""

    def __init__(self, argv: list[str], every_s: float, env: dict[str, str]) -> None:
        self._argv = argv
        self._env = env
        self._every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="otaudit-prune", daemon=True)

    def start(self) -> None:
        """Start the schedule."""
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop: a run in progress is stopped (SIGTERM; the next run finishes its work)."""
        self._stop.set()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        wait = min(self._every_s, FIRST_RUN_MAX_S)
        while not self._stop.wait(wait):
            wait = self._every_s
            try:
                self.run_once()
            except (OtauditError, OSError, ValueError) as exc:
                log.error("scheduled prune failed (tried again in %gs): %s", self._every_s, exc)

    def run_once(self) -> None:
        """One prune, in a process of its own, logged."""
        started = time.monotonic()
        # Files, not pipes: nothing the child writes can fill a pipe and stall it.
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            with subprocess.Popen(self._argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                  env=self._env) as child:  # fmt: skip
                while child.poll() is None:
                    if self._stop.wait(0.5):
                        child.terminate()
            out.seek(0)
            err.seek(0)
            printed, said = out.read(), err.read(1 << 16).decode(errors="replace")
        if child.returncode != 0:
            if self._stop.is_set():
                return
            last = said.strip().splitlines()[-1:] or ["(no message)"]
            raise OtauditError(f"otaudit prune exited {child.returncode}: {last[0]}")
        report = json.loads(printed)
        log.info(
            "prune: %d records pruned, %d held, %d archived, receipts %s (%.1f s)",
            report["pruned"],
            report["held"],
            report["archived"],
            report["receipts"] or "none",
            time.monotonic() - started,
        )


def prune_command(
    settings: RetentionSettings, data: Path, store_url: str | None
) -> tuple[list[str], dict[str, str]]:
    """The ``otaudit prune`` command the schedule runs (at a lower CPU priority than the
    server where ``nice`` exists) and its environment, which names the store (a DSN's
    password stays out of the process list)."""
    argv = [sys.executable, "-m", "otaudit", "prune", "--data", str(data),
            "--retention", str(settings.policy_file), "--format", "json",
            "--batch", str(BATCH), "--rate", f"{settings.rate:g}"]  # fmt: skip
    env = dict(os.environ)
    env.pop("OTAUDIT_STORE", None)
    if store_url is not None:
        env["OTAUDIT_STORE"] = store_url
    if settings.allow_short:
        argv.append("--allow-short")
    if settings.archive_url is not None:
        argv += ["--archive", settings.archive_url]
        if settings.s3_endpoint is not None:
            argv += ["--s3-endpoint", settings.s3_endpoint]
    nice = shutil.which("nice")
    return ([nice, "-n", "10", *argv] if nice else argv), env
