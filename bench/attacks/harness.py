"""Hostile traffic beside an honest client (issue 14, "Figures").

Each scenario gets a fresh ``otaudit serve`` on the embedded SQLite store, with tokens on
(one for the honest client, one for the attacker) and detection running as ``serve``
runs it. The honest client (``bench.load``, a process of its own) exports 100 audit spans
every 100 ms, open loop, for 30 s (``--quick``: 5 s), with a 10 s timeout per export like
the OpenTelemetry SDK's; its latency is measured from each batch's scheduled send time.
It is measured alone (per transport, before the first attack and after the last; the
lower p99 and growth of the two are the baseline), and beside each attacker (a spawned
process of its own). The targets, per attack: honest p99 at most 2x alone, no error
answers to the honest client, peak memory of the server's whole process tree at most
1 GiB, and ledger growth at most 4x the bytes the attacker sent.

The ledger growth charged to an attack is the larger of two figures: the data directory's
growth (ledger, -wal, -shm) during the run less the growth of the honest client's run
alone (a difference within the noise of WAL checkpointing, the larger of 1 MiB and 10% of
the alone growth, counts as none), and the sealed bytes of the attacker's own records
(``service.name`` = ``bench-attacker``), which is exact but leaves out the alerts the
attack raised and the indexes and tree nodes of its records.
"""

from __future__ import annotations

import itertools
import math
import multiprocessing
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final

from bench.attacks import attackers, traffic
from bench.attacks.measure import (
    MIB,
    LedgerCounts,
    Memory,
    TreeSampler,
    WebhookSink,
    dir_bytes,
    ledger_counts,
)
from bench.load import LoadSpec, Phase, run_load
from bench.payloads import AUDIT_KEY, PayloadFactory, parse_rate
from bench.payloads import self_check as payloads_self_check
from bench.report import num, percentile, table
from bench.server import ServerProcess, describe_fs

HONEST_SPANS: Final = 100
HONEST_PERIOD_S: Final = 0.1  # 1,000 spans/s
HONEST_TIMEOUT_S: Final = 10.0
P99_RATIO_TARGET: Final = 2.0
RSS_TARGET: Final = 1 << 30
GROWTH_RATIO_TARGET: Final = 4.0
#: Guards for the machine (not targets): past either the attack is stopped early.
GUARD_RSS: Final = 8 << 30
GUARD_DISK: Final = 16 << 30

#: (name, label, honest transport)
SCENARIOS: Final = (
    ("amplification", "1. resource amplification", "http"),
    ("timestamp", "2. start time 2^64-1", "http"),
    ("grpc_idle", "3. 16 idle gRPC streams, no token", "grpc"),
    ("many_records", "4. 500,000 spans a request", "http"),
    ("detector", "5. 200,000 distinct actors", "http"),
    ("storm", "6. alert storm + brute force", "http"),
)


class AttackServer(ServerProcess):
    """``otaudit serve`` with two ingest tokens (honest, attacker) made before it starts."""

    def __init__(self, label: str, extra_args: tuple[str, ...] = ()) -> None:
        """Make the data directory and the tokens; ``__enter__`` starts the server."""
        super().__init__(label, extra_args)
        try:
            self._otaudit("migrate")  # the ledger, so that tokens exist before it listens
            self.honest_token = self._token("bench-honest")
            self.attacker_token = self._token("bench-attacker")
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise

    def __enter__(self) -> AttackServer:
        super().__enter__()
        return self

    def _token(self, name: str) -> str:
        return self._otaudit("token", "create", "--scope", "ingest", "--name", name)

    def _otaudit(self, *args: str) -> str:
        """Run ``otaudit ARGS --data DATA``; the last line it printed."""
        argv = [sys.executable, "-m", "otaudit", *args, "--data", str(self.data)]
        out = subprocess.run(argv, capture_output=True, text=True, cwd=self.root)
        if out.returncode != 0:
            raise RuntimeError(f"otaudit {' '.join(args)} exited {out.returncode}: {out.stderr}")
        return out.stdout.strip().splitlines()[-1]


@dataclass
class Attacker:
    """One attacker process and what it reported so far."""

    process: Any
    conn: Connection
    stop: Any
    bytes_sent: int = 0
    answers: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, name: str, target: attackers.Target) -> Attacker:
        """Spawn attacker ``name`` against ``target``."""
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe(duplex=False)
        stop = ctx.Event()
        proc = ctx.Process(
            target=attackers.entry, args=(name, target, child, stop), name=f"bench-attack-{name}"
        )
        proc.start()
        child.close()
        return cls(proc, parent, stop)

    def drain(self) -> None:
        """Read every report waiting in the pipe."""
        try:
            while self.conn.poll():
                kind, value = self.conn.recv()
                if kind == "sent":
                    self.bytes_sent += value
                elif kind == "answer":
                    self.answers[value] += 1
                else:
                    self.notes.append(value)
        except (EOFError, OSError):
            pass

    def finish(self, grace_s: float) -> None:
        """Stop the attacker; after ``grace_s`` (a request in flight) kill it."""
        self.stop.set()
        deadline = time.monotonic() + grace_s
        while self.process.is_alive() and time.monotonic() < deadline:
            self.drain()
            self.process.join(0.1)
        if self.process.is_alive():
            self.notes.append(f"a request was still unanswered {grace_s:.0f} s after the stop")
            self.process.kill()
            self.process.join()
        self.drain()


@dataclass
class Outcome:
    """What one run (honest alone, or honest beside an attacker) measured."""

    honest: Phase
    memory: Memory
    growth_bytes: int
    ledger: LedgerCounts
    attacker: Attacker | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def p99_ms(self) -> float:
        """The honest client's p99 from scheduled send time to acknowledgement."""
        return percentile(self.honest.sched_latency_ms, 99)


def _honest_spec(srv: AttackServer, transport: str, duration_s: float) -> LoadSpec:
    return LoadSpec(
        transport,
        srv.http_port,
        srv.grpc_port,
        srv.pid,
        senders=8,
        batches=0,
        phases=((AUDIT_KEY, HONEST_PERIOD_S, duration_s),),
        spans=HONEST_SPANS,
        token=srv.honest_token,
        timeout_s=HONEST_TIMEOUT_S,
        drop_late=True,
    )


def run_one(name: str | None, transport: str, duration_s: float) -> Outcome:
    """The honest client for ``duration_s`` on a fresh server, beside attacker ``name``."""
    sink = WebhookSink() if name == "storm" else None
    extra = ("--alert-webhook", sink.url) if sink is not None else ()
    notes: list[str] = []
    try:
        with AttackServer(f"attack-{name or 'alone'}", extra) as srv:
            sampler = TreeSampler(srv.pid, GUARD_RSS)
            size0 = dir_bytes(srv.data)
            attacker = None
            if name is not None:
                target = attackers.Target(
                    srv.http_port, srv.grpc_port, srv.attacker_token, duration_s
                )
                attacker = Attacker.start(name, target)
            result: dict[str, Any] = {}
            spec = _honest_spec(srv, transport, duration_s)

            def send() -> None:
                result.update(run_load("latency", spec))

            honest = threading.Thread(target=send, name="honest-client")
            honest.start()
            while honest.is_alive():
                honest.join(0.2)
                if attacker is None:
                    continue
                attacker.drain()
                too_big = dir_bytes(srv.data) > GUARD_DISK
                if (sampler.tripped.is_set() or too_big) and not attacker.stop.is_set():
                    what = "memory" if sampler.tripped.is_set() else "data directory"
                    notes.append(f"attack stopped early: server {what} past the machine's guard")
                    attacker.stop.set()
            if attacker is not None:
                attacker.finish(grace_s=10.0)
            if name == "storm":
                _await_alert(srv.data, "brute_force_user", 30.0)
            time.sleep(2.0)  # let queued records commit before the sizes are taken
            memory = sampler.stop()
            growth = dir_bytes(srv.data) - size0
            code = srv.stop()
            if code != 0:
                notes.append(f"server exited with {code}: {srv.log()[-300:]}")
            counts = ledger_counts(srv.data)
            if sink is not None:
                time.sleep(0.5)
                posted = sink.received("brute_force_user")
                notes.append(f"webhook (5 posts/s) received {len(sink.posts):,} alerts, "
                             f"{posted} of them brute_force_user")  # fmt: skip
    finally:
        if sink is not None:
            sink.close()
    phase: Phase = result["phases"][0]
    return Outcome(phase, memory, growth, counts, attacker, notes)


def _await_alert(data: Path, rule: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if ledger_counts(data).alerts_by_rule.get(rule):
                return
        except sqlite3.Error:
            pass  # the ledger may be busy; try again
        time.sleep(1.0)


def _errors(phase: Phase) -> str:
    if not phase.errors:
        return "0"
    return ", ".join(f"{n} x {label}" for label, n in phase.errors.most_common(3))


@dataclass(frozen=True)
class Baseline:
    """The honest client's runs alone (before the first attack and after the last); the
    stricter of their figures is the one attacks are held to."""

    runs: tuple[Outcome, ...]

    @property
    def p99_ms(self) -> float:
        """The lower p99 of the runs alone."""
        return min(r.p99_ms for r in self.runs)

    @property
    def growth_bytes(self) -> int:
        """The smaller data directory growth of the runs alone."""
        return min(r.growth_bytes for r in self.runs)


def _charged_growth(out: Outcome, alone: Baseline) -> int:
    """The larger of the data directory's extra growth (beyond noise) and the sealed bytes of
    the attacker's own records (exact, but blind to alerts, indexes and tree nodes)."""
    extra = out.growth_bytes - alone.growth_bytes
    noise = max(MIB, alone.growth_bytes // 10)
    return max(0 if extra <= noise else extra, out.ledger.attacker_sealed_bytes)


def _row(label: str, name: str, out: Outcome, alone: Baseline) -> tuple[list[Any], list[str]]:
    assert out.attacker is not None
    atk = out.attacker
    p99, base = out.p99_ms, alone.p99_ms
    rel = p99 / base if base > 0 and not math.isnan(p99) else math.nan
    charged = _charged_growth(out, alone)
    growth_ratio = (
        charged / atk.bytes_sent if atk.bytes_sent else (0.0 if not charged else math.inf)
    )
    missed = []
    if math.isnan(rel) or rel > P99_RATIO_TARGET:
        missed.append("p99")
    if out.honest.errors:
        missed.append("errors")
    if out.memory.peak_total > RSS_TARGET:
        missed.append("memory")
    if growth_ratio > GROWTH_RATIO_TARGET:
        missed.append("ledger")
    if name == "storm" and not out.ledger.alerts_by_rule.get("brute_force_user"):
        missed.append("brute_force_user not raised")
    verdict = "OK" if not missed else "MISSED (" + ", ".join(missed) + ")"
    row = [
        label,
        num(base, 1),
        num(p99, 1),
        "n/a" if math.isnan(rel) else f"{rel:.2f}x",
        _errors(out.honest),
        num(out.memory.peak_total / MIB),
        f"{num(charged / MIB, 1)} MiB / {num(atk.bytes_sent / MIB, 1)} MiB"
        + ("" if not atk.bytes_sent else f" = {growth_ratio:.2f}x"),
        f"**{verdict}**" if missed else verdict,
    ]
    answers = "; ".join(f"{n:,} x {a}" for a, n in atk.answers.most_common(4)) or "none"
    alerts = ", ".join(f"{r} {n:,}" for r, n in sorted(out.ledger.alerts_by_rule.items()))
    notes = [
        f"{label}: attacker answers: {answers}",
        f"{label}: attacker records sealed {out.ledger.attacker_records:,} "
        f"({num(out.ledger.attacker_sealed_bytes / MIB, 1)} MiB of sealed bytes); data dir grew "
        f"{num(out.growth_bytes / MIB, 1)} MiB (alone: {num(alone.growth_bytes / MIB, 1)} MiB); "
        f"detection process peak {num(out.memory.peak_detector / MIB)} MiB; "
        f"alert records {out.ledger.alerts:,} ({alerts or 'none'})",
        *(f"{label}: {n}" for n in atk.notes + out.notes),
    ]
    return row, notes


def baselines(quick: bool) -> str:
    """The raw protobuf parse rate of the honest client's batches (same run, same machine)."""
    batches = PayloadFactory(seed=17).batches(50 if quick else 300, HONEST_SPANS)
    return f"protobuf parse of the honest batches: {num(parse_rate(batches, HONEST_SPANS))} spans/s"


def run(quick: bool, only: tuple[str, ...] = ()) -> str:
    """Every scenario (or those in ``only``) beside the honest client; one markdown table."""
    payloads_self_check()
    traffic.self_check()
    duration_s = 5.0 if quick else 30.0
    alone: dict[str, list[Outcome]] = {}
    attacked: list[tuple[str, str, str, Outcome]] = []
    for name, label, transport in SCENARIOS:
        if only and name not in only:
            continue
        if transport not in alone:
            print(f"  attacks: honest {transport} alone ...", file=sys.stderr, flush=True)
            alone[transport] = [run_one(None, transport, duration_s)]
        print(f"  attacks: {name} ...", file=sys.stderr, flush=True)
        attacked.append((name, label, transport, run_one(name, transport, duration_s)))
    for transport, runs in alone.items():
        print(f"  attacks: honest {transport} alone again ...", file=sys.stderr, flush=True)
        runs.append(run_one(None, transport, duration_s))
    rows: list[list[Any]] = []
    notes: list[str] = []
    for name, label, transport, out in attacked:
        row, row_notes = _row(label, name, out, Baseline(tuple(alone[transport])))
        rows.append(row)
        notes += row_notes
    lines = [baselines(quick)]
    honest_bytes = len(PayloadFactory(seed=19).request_bytes(HONEST_SPANS)) * round(
        duration_s / HONEST_PERIOD_S
    )
    for (transport, runs), when in itertools.product(alone.items(), ("first", "last")):
        out = runs[0] if when == "first" else runs[-1]
        lines.append(
            f"honest {transport} alone ({when}): "
            f"p50 {num(percentile(out.honest.sched_latency_ms, 50), 1)}"
            f" ms, p99 {num(out.p99_ms, 1)} ms, errors {_errors(out.honest)}, acked "
            f"{num(out.honest.acked_spans)} spans, peak memory {num(out.memory.peak_total / MIB)}"
            f" MiB, data dir grew {num(out.growth_bytes / MIB, 1)} MiB for about "
            f"{num(honest_bytes / MIB, 1)} MiB sent ({out.growth_bytes / honest_bytes:.1f}x), "
            f"alert records {out.ledger.alerts:,}"
        )
    headers = [
        "attack",
        "honest p99 alone ms (lower of 2 runs)",
        "honest p99 under attack ms",
        "ratio",
        "honest errors",
        "peak RSS (MiB, all processes)",
        "ledger growth / attacker bytes",
        "verdict (p99 <= 2x, 0 errors, <= 1 GiB, <= 4x)",
    ]
    intro = (
        f"### Hostile traffic (issue 14): each attack for {duration_s:.0f} s beside an honest "
        f"client at {num(HONEST_SPANS / HONEST_PERIOD_S)} spans/s ({HONEST_SPANS}-span batches "
        f"every {HONEST_PERIOD_S * 1e3:.0f} ms, open loop, p99 from scheduled send, "
        f"{HONEST_TIMEOUT_S:.0f} s timeout), fresh server per run, tokens on, detection on; "
        f"data dirs on {describe_fs(Path(__file__).resolve().parent.parent)}\n\n"
    )
    return (
        intro
        + "\n".join(f"- baseline: {line}" for line in lines)
        + "\n\n"
        + table(headers, rows)
        + "\n\n"
        + "\n".join(f"- {n}" for n in notes)
    )
