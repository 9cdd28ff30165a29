"""The detection engine's memory under hostile but valid records (issue 14, finding 5).

Feeds the built-in rules, in a fresh process per scenario, records from many distinct
actors and prints the process's resident memory before and after, and each rule's
evictions. Not a pass/fail test: a figure to compare before and after a change.

    .venv/bin/python bench/detect_memory.py            # every scenario
    .venv/bin/python bench/detect_memory.py actors 200000

Scenarios: ``actors`` (each actor fails a login, then acts from an address of its own
and reads a sensitive record), ``long-actors`` (the same with 16 KiB actor names),
``long-actions`` (distinct 64 KiB actions, the regular-expression memory).
"""

from __future__ import annotations

import datetime
import gc
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import orjson

S = 1_000_000_000
START_NS = 1_790_000_000 * S
SCENARIOS = {"actors": 200_000, "long-actors": 10_000, "long-actions": 5_000}


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _row(seq: int, actor: str, action: str, result: str, attrs: dict[str, str]) -> tuple[Any, ...]:
    time_ns = START_NS + seq * 10_000_000  # 100 records a second
    received = datetime.datetime.fromtimestamp(time_ns / S, datetime.UTC)
    stamp = received.strftime("%Y-%m-%dT%H:%M:%S.") + f"{time_ns % S:09d}Z"
    address = f"10.{seq >> 16 & 255}.{seq >> 8 & 255}.{seq & 255}"
    target = attrs.get("audit.target")
    return (seq, time_ns, stamp, "default", "traces", "app", action, actor, None, address,
            action, target, None, result, "sdk", orjson.dumps(attrs).decode())  # fmt: skip


def _rows(scenario: str, n: int) -> Iterator[tuple[Any, ...]]:
    seq = 0
    for i in range(n):
        if scenario == "long-actions":
            action = f"{i:08d}.login" + "x" * 65_536
            yield _row(seq, f"user{i}", action, "failure", {})
            seq += 1
            continue
        actor = f"user{i:08d}" + ("x" * 16_384 if scenario == "long-actors" else "")
        yield _row(seq, actor, "user.login", "failure", {})
        yield _row(seq + 1, actor, "customer.update", "success", {})
        yield _row(seq + 2, actor, "customer.read", "success",
                   {"audit.sensitive": "true", "audit.target": f"customer-{i}"})  # fmt: skip
        seq += 3


def measure(scenario: str, n: int) -> None:
    """Feed ``n`` actors of ``scenario`` to a fresh engine; print the figures."""
    from otaudit.detect.engine import Engine
    from otaudit.detect.event import Event
    from otaudit.detect.rules import load_rules

    engine = Engine(load_rules())
    gc.collect()
    before = _rss_mib()
    started = time.monotonic()
    records = 0
    for row in _rows(scenario, n):
        engine.feed(Event(row))
        records += 1
    seconds = time.monotonic() - started
    gc.collect()
    after = _rss_mib()
    evictions = getattr(engine, "evictions", {})
    evicted = ", ".join(f"{k} {v}" for k, v in evictions.items() if v) or "none"
    print(f"{scenario:13} n={n:>7} records={records:>7} rss {before:6.1f} -> {after:6.1f} MiB "
          f"({seconds:5.1f} s); evicted: {evicted}")  # fmt: skip


def main(argv: list[str]) -> None:
    """Each scenario in a process of its own (or the one named, here)."""
    if len(argv) == 2:
        measure(argv[0], int(argv[1]))
        return
    for scenario, n in SCENARIOS.items():
        subprocess.run([sys.executable, __file__, scenario, str(n)], check=True)


if __name__ == "__main__":
    main(sys.argv[1:])
