"""Evidence pack of a 1,000,000-record quarter: ``otaudit evidence`` time and peak memory.

A SQLite ledger is filled with a simulated quarter (``otaudit.demo_quarter``, scaled to
about ``records`` records: logins, MFA, reads, role and account changes, deployments,
attacks with their alerts and triage). ``otaudit evidence`` then builds the quarter's
pack as a user would run it (html and pdf, the default; then again with
``populations.xlsx``), in a process of its own whose peak RSS (``VmHWM``) is polled.
Baselines, measured in the same run on the same ledger: reading every record of the
quarter with all its columns through Python's ``sqlite3``, and SHA-256 over the pack's
bytes. ``verify-evidence`` is timed too.
"""

from __future__ import annotations

import hashlib
import math
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Final

from bench.report import num, table
from otaudit import access, datadir, ownrecords
from otaudit.checkpointer import Checkpointer
from otaudit.demo_quarter import fill_quarter
from otaudit.record import rfc3339_ns

#: 2026-07-01T00:00:00Z, and the quarter's length.
START_NS: Final = 1_782_864_000 * 1_000_000_000
DAYS: Final = 92
#: Records a quarter holds at scale 1 (``demo_quarter``'s own figure, about).
PER_SCALE: Final = 24_250
#: The issue's targets.
PACK_S: Final = 60.0
PEAK_MIB: Final = 512.0


def fill(data: Path, records: int) -> tuple[int, float]:
    """A quarter of about ``records`` records, closed by a checkpoint signed after it."""
    scale = max(1, math.ceil(records / PER_SCALE))
    datadir.check(data, create=True)
    store = datadir.open_store(data, None, readonly=False)
    started = time.perf_counter()
    try:
        key = datadir.signing_key(data, store, None, None)
        facts = fill_quarter(store, key, key.name, START_NS, DAYS, scale=scale)
        ownrecords.record_read(ownrecords.DirectAppender(store), access.os_reader(), "sql",
                               "SELECT 1", ok=True, rows=1)  # fmt: skip
        Checkpointer(store, key, key.name).checkpoint()
    finally:
        store.close()
    return facts.records, facts.records / (time.perf_counter() - started)


def _hwm_mib(pid: int) -> float:
    """The process's peak RSS so far (``VmHWM``), in MiB; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _run(args: list[str]) -> tuple[float, float, str]:
    """Run ``otaudit`` with ``args``: wall seconds, peak RSS in MiB, stderr.

    The peak is the child's own ``VmHWM``, read every 20 ms until it exits: the kernel's
    ``ru_maxrss`` of a child starts from its parent's size at the fork, and this process
    holds the filled ledger's leftovers."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as err_file:
        proc = subprocess.Popen([sys.executable, "-m", "otaudit", *args],
                                stdout=subprocess.DEVNULL, stderr=err_file)  # fmt: skip
        peak = 0.0
        while proc.poll() is None:
            peak = max(peak, _hwm_mib(proc.pid))
            time.sleep(0.02)
        seconds = time.perf_counter() - started
        err_file.seek(0)
        err = err_file.read().decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"otaudit {args[0]} failed ({proc.returncode}): {err[-2000:]}")
    return seconds, peak, err


def raw_read(data: Path) -> tuple[int, float]:
    """Every record of the quarter, all columns, read through sqlite3: (rows, seconds)."""
    conn = sqlite3.connect(f"file:{data / 'ledger.db'}?mode=ro", uri=True)
    started = time.perf_counter()
    rows = 0
    end = START_NS + DAYS * 86_400 * 10**9
    cur = conn.execute("SELECT * FROM audit_records WHERE time_unix_nano >= ? AND "
                       "time_unix_nano < ?", (START_NS, end))  # fmt: skip
    while batch := cur.fetchmany(2048):
        rows += len(batch)
    conn.close()
    return rows, time.perf_counter() - started


def raw_sha256(pack: Path) -> tuple[int, float]:
    """SHA-256 over every file of the pack: (bytes, seconds)."""
    started, size = time.perf_counter(), 0
    for path in sorted(p for p in pack.rglob("*") if p.is_file()):
        sha = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                sha.update(chunk)
                size += len(chunk)
    return size, time.perf_counter() - started


def run(quick: bool, records: int) -> str:
    """Fill, build the pack, verify it, measure the baselines (module docstring)."""
    records = 20_000 if quick else records
    with tempfile.TemporaryDirectory(prefix="otaudit-bench-evidence-") as tmp:
        data, pack = Path(tmp) / "data", Path(tmp) / "pack"
        held, fill_rate = fill(data, records)
        period = ["--from", rfc3339_ns(START_NS), "--to",
                  rfc3339_ns(START_NS + DAYS * 86_400 * 10**9)]  # fmt: skip
        pack_s, peak, _ = _run(["evidence", "--data", str(data), *period, "--out", str(pack)])
        key = (pack / "configuration" / "verifier.key").read_text().strip()
        verify_s, verify_peak, _ = _run(["verify-evidence", str(pack), "--key", key])
        xlsx_s, xlsx_peak, _ = _run(["evidence", "--data", str(data), *period, "--out",
                                     str(Path(tmp) / "xlsx"), "--format", "xlsx"])  # fmt: skip
        read_rows, read_s = raw_read(data)
        pack_bytes, sha_s = raw_sha256(pack)
        populations = sum(
            sum(1 for _ in (pack / "controls" / c / "population.csv").open()) - 1
            for c in sorted(os.listdir(pack / "controls"))
        )

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    rows = [
        ["`otaudit evidence` (html, pdf)", f"**{pack_s:.1f} s** ({num(held / pack_s)} records/s"
         f" of the quarter; {num(populations)} population rows written)",
         f"<= {PACK_S:.0f} s: {verdict(pack_s <= PACK_S)}"],
        ["peak memory", f"**{peak:,.0f} MiB** RSS", f"<= {PEAK_MIB:.0f} MiB: "
         f"{verdict(peak <= PEAK_MIB)}"],
        ["`otaudit evidence --format xlsx`", f"{xlsx_s:.1f} s, {xlsx_peak:,.0f} MiB RSS"
         " (populations.xlsx besides the CSV and JSONL)", ""],
        ["`otaudit verify-evidence`", f"{verify_s:.1f} s, {verify_peak:,.0f} MiB RSS", ""],
        ["baseline: read the quarter", f"{num(read_rows)} rows, all columns, in {read_s:.1f} s"
         f" ({num(read_rows / read_s)} rows/s, Python sqlite3)", ""],
        ["baseline: SHA-256 of the pack", f"{pack_bytes / 1e6:,.0f} MB in {sha_s:.1f} s"
         f" ({pack_bytes / 1e6 / sha_s:,.0f} MB/s)", ""],
    ]  # fmt: skip
    intro = (
        f"### Evidence pack of a {num(held)}-record quarter (SQLite; the simulated quarter of"
        " `otaudit.demo_quarter`)\n\n"
    )
    return (
        intro
        + table(["step", "measured", "target"], rows)
        + (
            f"\n\nfill: {num(fill_rate)} records/s (sealing, detection, checkpoints at simulated"
            " times)"
        )
    )
