"""What the attack benchmark watches: the server's memory, its data directory, its ledger,
and the alerts a webhook receives.

Memory is the resident set (``VmRSS``) summed over the server and every descendant (the
decode workers, their forkserver, the detection process), sampled every 200 ms from
``/proc``; the peak of that sum is what the 1 GiB target is about. The detection
process is the server's direct child started by ``multiprocessing`` "spawn".
"""

from __future__ import annotations

import contextlib
import http.server
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from bench.attacks.traffic import ATTACKER_SERVICE

SAMPLE_S: Final = 0.2
MIB: Final = 1 << 20


def _children() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        out.setdefault(ppid, []).append(int(entry))
    return out


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _is_detector(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"spawn_main" in f.read()
    except OSError:
        return False


@dataclass
class Memory:
    """Peaks seen so far (bytes)."""

    peak_total: int = 0  # server + all descendants
    peak_detector: int = 0  # the detection process alone
    samples: int = 0


class TreeSampler:
    """A thread sampling the RSS of process ``pid``'s tree every 200 ms until stopped.

    ``limit_bytes`` is a guard for the machine, not a target: past it ``tripped`` is set
    (the caller stops the attack and says so)."""

    def __init__(self, pid: int, limit_bytes: int) -> None:
        """Start sampling at once."""
        self.pid = pid
        self.limit_bytes = limit_bytes
        self.memory = Memory()
        self.tripped = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        children = _children()
        total, detector = _rss_bytes(self.pid), 0
        frontier = list(children.get(self.pid, []))
        direct = set(frontier)
        while frontier:
            pid = frontier.pop()
            rss = _rss_bytes(pid)
            total += rss
            if pid in direct and _is_detector(pid):
                detector = rss
            frontier.extend(children.get(pid, []))
        m = self.memory
        m.peak_total, m.peak_detector = max(m.peak_total, total), max(m.peak_detector, detector)
        m.samples += 1
        if total > self.limit_bytes:
            self.tripped.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(SAMPLE_S)

    def stop(self) -> Memory:
        """Stop sampling (after one last sample) and return the peaks."""
        self._stop.set()
        self._thread.join()
        self._sample()
        return self.memory


def dir_bytes(path: Path) -> int:
    """Apparent size of every file under ``path`` (the ledger, its -wal and -shm, keys)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(root, name)).st_size
    return total


@dataclass(frozen=True)
class LedgerCounts:
    """What the ledger holds after a run (read from the stopped server's SQLite file)."""

    records: int
    attacker_records: int
    attacker_sealed_bytes: int  # sum of the sealed leaf bytes of the attacker's records
    alerts: int
    alerts_by_rule: dict[str, int] = field(default_factory=dict)


def ledger_counts(data: Path) -> LedgerCounts:
    """Count records, the attacker's sealed bytes and alerts, read-only."""
    uri = f"file:{data / 'ledger.db'}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=30)) as db:
        records = db.execute("SELECT count(*) FROM records").fetchone()[0]
        n, sealed = db.execute(
            "SELECT count(*), coalesce(sum(length(sealed)), 0) FROM records WHERE service = ?",
            (ATTACKER_SERVICE,),
        ).fetchone()
        rows = db.execute(
            "SELECT json_extract(attributes, '$.\"audit.alert.rule\"'), count(*) FROM records"
            " WHERE action = 'otaudit.alert' AND pipeline = 'otaudit' GROUP BY 1"
        ).fetchall()
    by_rule = {str(rule): int(count) for rule, count in rows}
    return LedgerCounts(int(records), int(n), int(sealed), sum(by_rule.values()), by_rule)


class WebhookSink:
    """An alert webhook on 127.0.0.1 that accepts ``per_second`` posts a second (one thread,
    a pause after each), like a rate-limited chat integration; it notes each alert's rule."""

    def __init__(self, per_second: float = 5.0) -> None:
        """Start listening on a free port."""
        self.posts: list[bytes] = []
        pause, posts = 1.0 / per_second, self.posts

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                posts.append(body)
                self.send_response(204)
                self.end_headers()
                time.sleep(pause)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def received(self, rule: str) -> int:
        """How many posted alerts name ``rule``."""
        needle = f'"{rule}"'.encode()
        return sum(1 for body in self.posts if needle in body)

    def close(self) -> None:
        """Stop listening."""
        self.server.shutdown()
        self.server.server_close()
