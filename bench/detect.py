"""What detection costs: ingest with every built-in rule on versus off, and rules over history.

1. Ingest. The throughput benchmark's closed loop (OTLP/HTTP, four senders, pre-encoded
   audit spans, a fresh server each) against ``serve --no-detect`` and against ``serve``
   with the built-in rules, in the same run, for two mixes: *quiet* (no role changes, start
   times at a weekday noon UTC, so the rules judge every record and raise almost nothing)
   and *alert-heavy* (the standard mix: one span in ten makes someone an admin, so about a
   tenth of the records become alerts, each an appended record too). Also: how long the
   detector took to catch up with the ledger once the load stopped.
2. History. ``detect_history`` over a SQLite ledger of realistic traffic (employees, a
   billing job, the attack scenarios of the tests), next to the baseline of reading the
   same rows without rules, in the same run.
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Final

from bench.load import LoadSpec, run_load
from bench.payloads import SPANS_PER_BATCH, self_check
from bench.report import num, ratio, table
from bench.server import ServerProcess, describe_fs, scratch_dir
from otaudit.detect.event import Event
from otaudit.detect.rules import load_rules
from otaudit.detect.run import detect_history
from otaudit.store.sqlite import SQLiteStore

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from detect_traffic import DAY, anchor, background, entries, heartbeat, scenarios

TARGET_COST: Final = 0.25
ROUNDS: Final = 3


def _weekday_noon() -> int:
    """A recent weekday 12:00 UTC (in the built-in working hours)."""
    t = (time.time_ns() // (DAY)) * DAY + 12 * 3600 * 10**9 - DAY
    while (t // DAY + 3) % 7 >= 5:
        t -= DAY
    return t


def _ingest_run(label: str, args: tuple[str, ...], batches: int, share: float | None,
                at_ns: int) -> dict[str, Any]:  # fmt: skip
    with ServerProcess(f"detect-{label}", args) as srv:
        spec = LoadSpec("http", srv.http_port, srv.grpc_port, srv.pid, 4, batches,
                        role_update_share=share, at_ns=at_ns)  # fmt: skip
        res = run_load("throughput", spec)
        stopped = time.monotonic()
        metrics = srv.metrics()
        while "--no-detect" not in args:
            metrics = srv.metrics()
            if metrics.get("otaudit_detect_position", 0) >= metrics["otaudit_tree_size"]:
                break
            time.sleep(0.05)
        catch_up = time.monotonic() - stopped
        code = srv.stop()
        if code != 0:
            raise RuntimeError(f"server exited with {code}: {srv.log()}")
    phase = res["phase"]
    alerts = sum(v for k, v in metrics.items() if k.startswith("otaudit_alerts_total"))
    return {"rate": phase.acked_spans / phase.wall_s, "acked": phase.acked_spans,
            "cpu": phase.server_cpu_s / phase.wall_s, "alerts": alerts, "catch_up": catch_up,
            "parse": res["parse_rate"], "fs": describe_fs(srv.root)}  # fmt: skip


def ingest(quick: bool) -> str:
    """Durable spans/s with the rules off and on, per traffic mix: off/on pairs run one
    after the other, ``ROUNDS`` times, so that the machine's drift shows in the spread."""
    self_check()
    batches = 24 if quick else 300
    rounds = 1 if quick else ROUNDS
    at = _weekday_noon()
    rows: list[list[Any]] = []
    costs: dict[str, list[float]] = {}
    fs = ""
    for mix, share in (("quiet", 0.0), ("alert-heavy", None)):
        for n in range(1, rounds + 1):
            off = _ingest_run("off", ("--no-detect",), batches, share, at)
            on = _ingest_run("on", (), batches, share, at)
            fs = off["fs"]
            cost = 1 - on["rate"] / off["rate"]
            costs.setdefault(mix, []).append(cost)
            for label, r in (("off", off), ("on (10 built-in rules)", on)):
                rows.append([
                    mix, n, label, num(r["acked"]), f"**{num(r['rate'])}**", num(r["parse"]),
                    ratio(r["rate"], r["parse"]), f"{r['cpu']:.2f}", num(r["alerts"]),
                    "" if label == "off" else f"{r['catch_up']:.2f}",
                    "" if label == "off" else f"{cost:+.1%}",
                ])  # fmt: skip
    headers = ["traffic", "round", "rules", "acked spans", "durable spans/s",
               "baseline: protobuf parse spans/s", "durable / parse", "server CPU (cores)",
               "alerts sealed", "detection caught up after the load (s)",
               "cost of the rules"]  # fmt: skip
    verdicts = [
        f"{mix}: median cost {statistics.median(c):+.1%} over {len(c)} round(s) "
        f"({', '.join(f'{x:+.1%}' for x in c)}): "
        f"{'met' if statistics.median(c) < TARGET_COST else 'MISSED'} (< {TARGET_COST:.0%})"
        for mix, c in costs.items()
    ]
    intro = (
        f"### Ingest with the detection rules off and on ({batches} batches of "
        f"{SPANS_PER_BATCH} audit spans, OTLP/HTTP, 4 senders, closed loop)\n\n"
    )
    notes = "\n".join(f"- {v}" for v in verdicts)
    return intro + table(headers, rows) + f"\n\n{notes}\n- data dir on {fs}"


def history(quick: bool, records: int) -> str:
    """Retroactive detection over a ledger of about ``records`` records."""
    target = 50_000 if quick else records
    days = 11
    # Employees make ~10.6 records a weekday (about 8 in 11 days); a billing job the rest.
    users = max(30, int(target * 0.55 / (8 * 10.6)))
    now = (time.time_ns() // 60_000_000_000) * 60_000_000_000
    start = now - days * DAY
    root = scratch_dir("detect-history-")
    store = SQLiteStore(root / "ledger.db")
    built = time.perf_counter()
    acts = background(start, now, heartbeat_s=None, users=users)
    for scenario in scenarios(anchor(start, now)).values():
        acts += scenario
    step = (now - start) // max(1, target - len(acts))  # the billing job fills up to target
    acts += [heartbeat(t) for t in range(start, now, step)][: max(0, target - len(acts))]
    heartbeat_s = step / 1e9
    acts.sort(key=lambda a: a.received_ns)
    chunk: list[Any] = []
    for entry in entries(acts):
        chunk.append(entry)
        if len(chunk) == 20_000:
            store.append(chunk)
            chunk = []
    store.append(chunk)
    del acts, chunk
    built = time.perf_counter() - built
    n = store.tree_size()
    rules = load_rules()

    started = time.perf_counter()
    scanned = sum(1 for _ in store.detect_rows(0))
    scan_s = time.perf_counter() - started
    started = time.perf_counter()
    for row in store.detect_rows(0):
        Event(row)
    events_s = time.perf_counter() - started
    run = detect_history(store, rules, since_ns=start, now_ns=now)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    store.close()
    by_rule: dict[str, int] = {}
    for f in run.findings:
        by_rule[f.rule.name] = by_rule.get(f.rule.name, 0) + 1
    rows = [[
        num(n), f"{users:,} employees, billing job every {heartbeat_s:.1f} s, {days} days",
        f"**{run.seconds:.2f}**", num(run.records / run.seconds), f"{scan_s:.2f}",
        num(scanned / scan_s), f"{events_s:.2f}", ratio(run.seconds, scan_s),
        num(len(run.findings)), f"{peak:,.0f}",
    ]]  # fmt: skip
    headers = ["records", "traffic", "detect s", "records/s", "baseline: read rows s",
               "rows/s", "read + build events s", "detect / read", "findings",
               "peak RSS MiB (whole bench process)"]  # fmt: skip
    return (
        f"### Detection over history: all {len(rules)} built-in rules over {n:,} SQLite records"
        f"\n\n{table(headers, rows)}\n\n- findings per rule: "
        + ", ".join(f"{k} {v}" for k, v in sorted(by_rule.items()))
        + f"\n- building the ledger took {built:.0f} s (not part of the figures)"
    )


def run(quick: bool, records: int) -> str:
    """Both parts."""
    return ingest(quick) + "\n\n" + history(quick, records)
