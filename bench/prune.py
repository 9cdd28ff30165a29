"""Retention (issue 18): prune 1,000,000 records while ``serve`` takes a steady load, and
verify the half-pruned ledger.

A SQLite ledger of ``2 x records`` is filled through the library as ``serve`` fills it,
the first half received 400 days ago (past the policy's 365 days), the second half now.
Then, in the same run:

1. ``verify`` of the whole, unpruned ledger (the baseline of step 5);
2. ``serve`` starts on it and takes an open-loop OTLP/HTTP load of audit spans
   (``RATE`` spans/s): the p99 from send to acknowledgement without a prune;
3. the same load while the server's scheduled prune (``--retention --prune-every``)
   runs: the prune's time (from the server's log) and the p99 during it;
4. the ledger's files (database and WAL) before the prune and after the server stopped;
5. ``verify`` of the half-pruned ledger.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any, Final

from bench.load import LoadSpec, run_load
from bench.payloads import AUDIT_KEY, SPANS_PER_BATCH, PayloadFactory
from bench.report import num, percentile, progress, table
from bench.server import ServerProcess, describe_fs
from otaudit import datadir
from otaudit.checkpointer import Checkpointer
from otaudit.ingest import IngestSettings, prepare
from otaudit.otlp.body import PROTOBUF
from otaudit.record import Entry
from otaudit.verify import verify_ledger

#: Targets: the prune's time, p99 during it against without, space given back.
PRUNE_S: Final = 60.0
P99_FACTOR: Final = 2.0
SHRINK: Final = 0.40
#: The load beside the prune, spans/s (open loop; it adds about 2 % to the full run's ledger).
RATE: Final = 1000
_DAY_NS: Final = 86_400 * 1_000_000_000
_FILL_BATCH: Final = 40 * SPANS_PER_BATCH
POLICY: Final = "minimum: 365d\ndefault: 365d\n"
#: ``serve --prune-every``: its first prune runs this long after start.
EVERY_S: Final = 30
_PRUNED: Final = re.compile(r"prune: (\d+) records pruned, .* \(([0-9.]+) s\)")


def fill(data: Path, old: int, new: int) -> float:
    """A new ledger of ``old`` records received 400 days ago, then ``new`` received now,
    each half signed as a server would have signed it then; records/s."""
    data = datadir.check(data, create=True)
    store = datadir.open_store(data, None, readonly=False)
    try:
        key = datadir.signing_key(data, store, None, None)
        checkpointer = Checkpointer(store, key, key.name)
        factory = PayloadFactory(seed=29)
        settings = IngestSettings()
        started = time.perf_counter()
        done, total = 0, old + new
        for count, age_ns in ((old, 400 * _DAY_NS), (new, 0)):
            end = done + count
            while done < end:
                entries: list[Entry] = []
                while len(entries) < min(_FILL_BATCH, end - done):
                    body = factory.request_bytes(min(SPANS_PER_BATCH, end - done - len(entries)))
                    at = time.time_ns() - age_ns
                    entries += prepare("traces", PROTOBUF, body, False, "otlp", at,
                                       settings).entries  # fmt: skip
                store.append(entries)
                done += len(entries)
                if done % 500_000 < _FILL_BATCH or done == total:
                    progress("prune: fill", done, total, started)
            checkpointer.checkpoint()
        return total / (time.perf_counter() - started)
    finally:
        store.close()
        os.sync()


def ledger_bytes(data: Path) -> int:
    """The SQLite ledger's database and WAL files."""
    return sum(p.stat().st_size for p in (data / "ledger.db", data / "ledger.db-wal") if p.exists())


def raw_delete_rate(data: Path, rows: int) -> float:
    """Baseline: rows/s of a bare ``DELETE`` of the ledger's first ``rows`` records, 2,000
    per transaction, on a copy of the ledger (the same table and indexes; no trigger, no
    receipt, no pause; ``synchronous = NORMAL``, WAL checkpointed every 256 MiB, as the
    prune deletes)."""
    copy = data.parent / "raw-delete"
    copy.mkdir()
    try:
        shutil.copy2(data / "ledger.db", copy / "ledger.db")
        conn = sqlite3.connect(copy / "ledger.db", isolation_level=None)
        for pragma in ("journal_mode = WAL", "synchronous = NORMAL", "cache_size = -65536",
                       "wal_autocheckpoint = 65536"):  # fmt: skip
            conn.execute(f"PRAGMA {pragma}")
        conn.execute("DROP TRIGGER records_no_delete")
        started = time.perf_counter()
        for first in range(0, rows, 2000):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("DELETE FROM records WHERE seq BETWEEN ? AND ?", (first, first + 1999))
            conn.execute("COMMIT")
        rate = rows / (time.perf_counter() - started)
        conn.close()
        return rate
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def _verify(data: Path) -> tuple[float, int]:
    store = datadir.open_store(data, None, readonly=True)
    try:
        key = datadir.log_key(data, store, None).key
        report = verify_ledger(store, key)
        return report.seconds, report.absent
    finally:
        store.close()


def _p99(phase: Any) -> float:
    return percentile(phase.latency_ms, 99)


def _prune_seconds(srv: ServerProcess, timeout_s: float) -> tuple[int, float]:
    """(records pruned, seconds) from the server's log line of its scheduled prune."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = _PRUNED.search(srv.log_path.read_text(errors="replace"))
        if found:
            return int(found[1]), float(found[2])
        time.sleep(0.5)
    raise RuntimeError(f"the scheduled prune did not finish in {timeout_s:.0f} s: {srv.log()}")


def run(quick: bool, records: int) -> str:
    """Fill, measure, prune under load, measure again (module docstring)."""
    records = 20_000 if quick else records
    quiet_s, busy_s = (5.0, 5.0) if quick else (20.0, 40.0)
    srv = ServerProcess("prune", ("--no-detect", "--retention", "retention.yaml",
                                  "--prune-every", f"{EVERY_S}s"))  # fmt: skip
    (srv.root / "retention.yaml").write_text(POLICY)
    fill_rate = fill(srv.data, records, records)
    verify_before, _ = _verify(srv.data)
    raw_rows = min(records, 200_000)
    raw_rate = raw_delete_rate(srv.data, raw_rows)
    size_before = ledger_bytes(srv.data)
    period = SPANS_PER_BATCH / RATE
    with srv:
        started = time.monotonic()
        fs = describe_fs(srv.root)
        spec = LoadSpec("http", srv.http_port, srv.grpc_port, srv.pid, 4, 0,
                        ((AUDIT_KEY, period, quiet_s),))  # fmt: skip
        quiet = run_load("latency", spec)["phases"][0]
        time.sleep(max(0.0, started + EVERY_S - time.monotonic()))  # the prune starts now
        busy_spec = LoadSpec("http", srv.http_port, srv.grpc_port, srv.pid, 4, 0,
                             ((AUDIT_KEY, period, busy_s),))  # fmt: skip
        busy = run_load("latency", busy_spec)["phases"][0]
        pruned, prune_s = _prune_seconds(srv, 600)
        srv.stop()
        size_after = ledger_bytes(srv.data)
        verify_after, absent = _verify(srv.data)
    shrink = 1 - size_after / size_before if size_before else 0.0
    p99_quiet, p99_busy = _p99(quiet), _p99(busy)

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    rows = [
        ["prune (serve's schedule)", f"{num(pruned)} records in **{prune_s:.1f} s**"
         f" ({num(pruned / prune_s)} records/s)",
         f"<= {PRUNE_S:.0f} s: {verdict(prune_s <= PRUNE_S)}"],
        ["baseline: bare DELETE", f"{num(raw_rate)} rows/s ({num(raw_rows)} rows, a copy of the"
         f" ledger): {num(records)} rows in {records / raw_rate:.1f} s", ""],
        ["ingest p99 beside it", f"**{p99_busy:.1f} ms** (without: {p99_quiet:.1f} ms)",
         f"<= {P99_FACTOR:.0f}x: {verdict(p99_busy <= P99_FACTOR * p99_quiet)}"],
        ["ledger files", f"{size_before / 1e6:,.0f} MB -> {size_after / 1e6:,.0f} MB"
         f" (**{shrink:.0%}** smaller)", f">= {SHRINK:.0%}: {verdict(shrink >= SHRINK)}"],
        ["verify", f"unpruned {verify_before:.1f} s, half-pruned **{verify_after:.1f} s**"
         f" ({num(absent)} absent)", f"no slower: {verdict(verify_after <= verify_before)}"],
    ]  # fmt: skip
    intro = (
        f"### Retention: prune {num(records)} of {num(2 * records)} records under load"
        f" (`serve --retention --prune-every {EVERY_S}s`; open loop {num(RATE)} spans/s over"
        f" OTLP/HTTP, {quiet_s:.0f} s before the prune, {busy_s:.0f} s during it)\n\n"
    )
    notes = [
        f"fill: {num(fill_rate)} records/s; data dir on {fs}",
        f"load: {num(quiet.acked_spans)} / {num(busy.acked_spans)} spans acknowledged, errors"
        f" {sum(quiet.errors.values())} / {sum(busy.errors.values())} (the files after hold"
        " these records too; verify after checks them too)",
    ]
    return (
        intro
        + table(["step", "measured", "target"], rows)
        + "\n\n"
        + "\n".join(f"- {n}" for n in notes)
    )
