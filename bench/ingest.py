"""Ingest benchmarks against a real ``otaudit serve``: durable throughput and export latency.

Each transport gets a fresh server (fresh data directory on a real disk) and a load
process of its own (see ``bench.load``). Throughput is closed loop; latency is open loop
at a fixed rate, measured first with batches that carry no audit span (the server parses
and drops them: transport + parse only) and then with the same rate of audit spans.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Final

from bench.attacks.measure import TreeSampler
from bench.load import LoadSpec, Phase, run_load
from bench.payloads import AUDIT_KEY, PLAIN_KEY, SPANS_PER_BATCH, self_check
from bench.report import num, percentile, ratio, table
from bench.server import ServerProcess, describe_fs
from otaudit import _core
from otaudit.store.sqlite import SQLiteStore

TRANSPORTS: Final = ("http", "grpc")
#: All the server's processes together under the throughput load (issue 16, target 8).
RSS_TARGET: Final = 512 << 20
#: Durable spans/s per transport (issue 16, target 1).
THROUGHPUT_TARGET: Final = {"http": 40_000, "grpc": 35_000}
LATENCY_RATE: Final = 5_000  # spans/s
LATENCY_TARGET_MS: Final = 100.0  # p99
SEALED: Final = 'otaudit_records_sealed_total{signal="span"}'


def _commits(m: dict[str, float]) -> str:
    count = m.get("otaudit_commit_seconds_count", 0.0)
    if not count:
        return "0"
    sealed = m.get(SEALED, 0.0)
    mean_ms = 1e3 * m.get("otaudit_commit_seconds_sum", 0.0) / count
    return f"{count:.0f} ({sealed / count:,.0f} rec, {mean_ms:.1f} ms)"


def disk_per_record(data: Path) -> tuple[int, float, float]:
    """(records, data directory bytes per record, mean sealed bytes per record) of a
    stopped server's SQLite ledger: what the ledger costs on disk against what it holds."""
    on_disk = sum(p.stat().st_size for p in data.rglob("*") if p.is_file())
    store = SQLiteStore(data / "ledger.db", readonly=True)
    try:
        records = sealed = 0
        for rec in store.iter_records():
            records += 1
            sealed += len(rec.sealed)
    finally:
        store.close()
    if not records:
        return 0, 0.0, 0.0
    return records, on_disk / records, sealed / records


def raw_insert_rate(root: Path, row_bytes: int, per_commit: int, rows: int = 100_000) -> float:
    """Rows/s of the plainest durable insert of rows of ``row_bytes`` random bytes, in
    commits of ``per_commit``: a ``(seq, bytes)`` table with no index or trigger, in WAL
    mode with ``synchronous=FULL``, written by the same core writer as the ledger's rows,
    on the same file system. What the disk and SQLite allow before anything otaudit adds."""
    path = root / "raw-insert.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        "PRAGMA journal_mode = WAL; CREATE TABLE t (seq INTEGER PRIMARY KEY, body BLOB NOT NULL);"
    )
    conn.close()
    writer = _core.SqliteWriter(str(path))
    per_commit = max(1, per_commit)
    batches = [
        [(seq, os.urandom(max(1, row_bytes))) for seq in range(at, min(rows, at + per_commit))]
        for at in range(0, rows, per_commit)
    ]
    started = time.perf_counter()
    for batch in batches:
        writer.execute("BEGIN IMMEDIATE")
        writer.insert("INSERT INTO t (seq, body) VALUES (?, ?)", batch)
        writer.execute("COMMIT")
    took = time.perf_counter() - started
    writer.close()
    for leftover in root.glob("raw-insert.db*"):
        leftover.unlink()
    return rows / took


def _errors(phase: Phase) -> str:
    if not phase.errors:
        return "0"
    return ", ".join(f"{n} x {label}" for label, n in phase.errors.most_common())


def _verdicts(rate: float, target: int, disk: float, sealed: float, rss: int) -> str:
    """The throughput, disk and memory targets (issue 16: 1, 6 and 8), each met or MISSED."""
    speed = "met" if rate >= target else "MISSED"
    size = "met" if 0 < disk <= sealed else "MISSED"
    memory = "met" if rss <= RSS_TARGET else "MISSED"
    return (
        f">= {num(target)} spans/s: {speed}; disk <= sealed: {size};"
        f" RSS <= {RSS_TARGET >> 20} MiB: {memory}"
    )


def _cores(cpu_s: float, wall_s: float) -> str:
    return f"{cpu_s / wall_s:.2f}" if wall_s > 0 else "n/a"


def throughput(quick: bool) -> str:
    """Durable audit spans/s per transport, next to the raw protobuf parse rate of the batches."""
    self_check()
    senders, batches = 8, (24 if quick else 400)
    rows: list[list[Any]] = []
    notes: list[str] = []
    for transport in TRANSPORTS:
        with ServerProcess(f"ingest-{transport}") as srv:
            notes.append(f"{transport}: data dir on {describe_fs(srv.root)}")
            spec = LoadSpec(transport, srv.http_port, srv.grpc_port, srv.pid, senders, batches)
            sampler = TreeSampler(srv.pid, 1 << 40)
            res = run_load("throughput", spec)
            peak_rss = sampler.stop().peak_total
            metrics = srv.metrics()
            code = srv.stop()
            if code != 0:
                notes.append(f"{transport}: server exited with {code}: {srv.log()}")
            records, disk, mean_sealed = disk_per_record(srv.data)
            commits = metrics.get("otaudit_commit_seconds_count", 0.0) or 1.0
            raw = raw_insert_rate(srv.root, round(disk), round(metrics.get(SEALED, 0.0) / commits))
        phase: Phase = res["phase"]
        rate = phase.acked_spans / phase.wall_s if phase.wall_s else 0.0
        sealed = metrics.get(SEALED, 0.0)
        rows.append(
            [
                transport,
                f"{senders} x {SPANS_PER_BATCH}",
                num(phase.acked_spans),
                _errors(phase),
                f"{phase.wall_s:.2f}",
                f"**{num(rate)}**",
                num(sealed) + ("" if sealed == phase.acked_spans else " (!= acked)"),
                num(res["parse_rate"]),
                ratio(rate, res["parse_rate"]),
                num(res["ceiling_rate"]),
                _cores(phase.server_cpu_s, phase.wall_s),
                _cores(phase.client_cpu_s, phase.wall_s),
                _commits(metrics),
                num(raw),
                ratio(rate, raw),
                f"{disk:,.0f} / {mean_sealed:,.0f} ({num(records)} rec)",
                f"{peak_rss / (1 << 20):,.0f}",
                _verdicts(rate, THROUGHPUT_TARGET[transport], disk, mean_sealed, peak_rss),
            ]
        )
    headers = [
        "transport",
        "senders x spans/batch",
        "acked spans",
        "errors",
        "wall s",
        "durable spans/s",
        "sealed (/metrics)",
        "baseline: protobuf parse spans/s",
        "durable / parse",
        "parse+select+seal spans/s (1 thread, no I/O)",
        "server CPU (cores)",
        "client CPU (cores)",
        "commits (mean records, mean ms)",
        "baseline: raw insert of same-sized rows, same commits (rows/s)",
        "durable / raw insert",
        "disk bytes / mean sealed bytes per record",
        "peak RSS MiB (all server processes)",
        "targets",
    ]
    intro = (
        f"### Ingest throughput ({batches} distinct batches of {SPANS_PER_BATCH} audit spans "
        f"per transport, closed loop, {senders} senders: an OpenTelemetry Collector's "
        "exporter sends with 10 by default)\n\n"
    )
    return intro + table(headers, rows) + "\n\n" + "\n".join(f"- {n}" for n in notes)


def _latency_row(transport: str, label: str, phase: Phase, target: bool) -> list[Any]:
    lat = phase.latency_ms
    p99 = percentile(lat, 99)
    verdict = ""
    if target:
        ok = p99 < LATENCY_TARGET_MS and not phase.errors
        verdict = f"< {LATENCY_TARGET_MS:.0f}: {'met' if ok else 'MISSED'}"
    return [
        transport,
        label,
        num(phase.acked_spans),
        _errors(phase),
        num(phase.acked_spans / phase.wall_s if phase.wall_s else 0.0),
        num(percentile(lat, 50), 1),
        num(percentile(lat, 90), 1),
        f"**{num(p99, 1)}**" if target else num(p99, 1),
        num(max(lat, default=float("nan")), 1),
        num(percentile(phase.sched_latency_ms, 99), 1),
        _cores(phase.server_cpu_s, phase.wall_s),
        verdict,
    ]


def latency(quick: bool) -> str:
    """Open-loop export latency at ~5,000 spans/s: non-audit baseline, audit, audit at half rate."""
    self_check()
    duration_s, workers = (3.0 if quick else 20.0), 8
    period = SPANS_PER_BATCH / LATENCY_RATE
    phases = [
        ("baseline: no audit spans (parsed, dropped)", PLAIN_KEY, period, False),
        (f"audit spans, {num(LATENCY_RATE)}/s (sealed, durable)", AUDIT_KEY, period, True),
        (f"reference: audit spans, {num(LATENCY_RATE / 2)}/s", AUDIT_KEY, 2 * period, False),
    ]
    rows: list[list[Any]] = []
    notes: list[str] = []
    for transport in TRANSPORTS:
        with ServerProcess(f"latency-{transport}") as srv:
            spec = LoadSpec(
                transport,
                srv.http_port,
                srv.grpc_port,
                srv.pid,
                workers,
                0,
                tuple((key, p, duration_s) for _, key, p, _ in phases),
            )
            res = run_load("latency", spec)
            metrics = srv.metrics()
            srv.stop()
        notes.append(f"{transport}: commits (mean records, mean ms): {_commits(metrics)}")
        for (label, _, _, target), phase in zip(phases, res["phases"], strict=True):
            rows.append(_latency_row(transport, label, phase, target))
    headers = [
        "transport",
        "phase",
        "acked spans",
        "errors",
        "achieved spans/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "p99 ms from scheduled send",
        "server CPU (cores)",
        "target p99",
    ]
    intro = (
        f"### Export latency (open loop: one {SPANS_PER_BATCH}-span batch every "
        f"{period * 1e3:.1f} ms = {num(LATENCY_RATE)} spans/s, half that in the reference phase, "
        f"{duration_s:.0f} s per phase, round-robin over {workers} sender threads with their own "
        f"keep-alive connections; latency = send to acknowledgement)\n\n"
    )
    return intro + table(headers, rows) + "\n\n" + "\n".join(f"- {n}" for n in notes)
