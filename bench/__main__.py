"""``python -m bench``: run the benchmarks and print one markdown table per benchmark.

The machine is assumed shared and noisy: every figure is printed next to a baseline
measured in the same run on the same data, so compare ratios rather than raw rates
across runs. Progress goes to stderr, results to stdout.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from collections.abc import Callable

from google.protobuf.internal import api_implementation

BENCHMARKS = (
    "ingest", "latency", "scale", "prepare", "verify", "postgres", "query", "detect",
    "attacks", "prune", "evidence", "console",
)  # fmt: skip


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def header(args: argparse.Namespace) -> str:
    """The run's header: when, where and with what."""
    load = os.getloadavg()
    selected = args.only or "all"
    records = 20_000 if args.quick else args.records
    return "\n".join(
        [
            "# otaudit benchmarks",
            "",
            f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
            f"- CPU: {cpu_model()}, {os.cpu_count()} cores; load average at start "
            f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
            f"- Python {platform.python_version()} ({sys.executable}), "
            f"protobuf backend {api_implementation.Type()}",
            f"- run: {selected}{' --quick' if args.quick else ''}"
            + (f", verify ledger {records:,} records" if selected in ("all", "verify") else ""),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the selected benchmarks in turn, print their tables."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short smoke run (small sizes)")
    parser.add_argument("--only", choices=BENCHMARKS, help="run one benchmark")
    parser.add_argument(
        "section", nargs="?", choices=BENCHMARKS, help="run one benchmark (same as --only)"
    )
    parser.add_argument(
        "--records",
        type=int,
        default=1_000_000,
        metavar="N",
        help="verify, query and detect: ledger size (default 1,000,000; --quick: 20,000 / 50,000)",
    )
    args = parser.parse_args(argv)
    if args.section and args.only and args.section != args.only:
        parser.error(f"two benchmarks named: {args.section} and --only {args.only}")
    args.only = args.only or args.section
    if args.records < 2:
        parser.error("--records must be at least 2")

    from bench import (
        attacks,
        console,
        detect,
        evidence,
        ingest,
        postgres,
        prepare,
        prune,
        query,
        scale,
        verify,
    )

    runs: dict[str, Callable[[], str]] = {
        "ingest": lambda: ingest.throughput(args.quick),
        "latency": lambda: ingest.latency(args.quick),
        "scale": lambda: scale.run(args.quick),
        "prepare": lambda: prepare.run(args.quick),
        "verify": lambda: verify.run(args.quick, args.records),
        "postgres": lambda: postgres.run(args.quick),
        "query": lambda: query.run(args.quick, args.records),
        "detect": lambda: detect.run(args.quick, args.records),
        "attacks": lambda: attacks.run(args.quick),
        "prune": lambda: prune.run(args.quick, args.records),
        "evidence": lambda: evidence.run(args.quick, args.records),
        "console": lambda: console.run(args.quick, args.records),
    }
    print(header(args), flush=True)
    for name in [args.only] if args.only else BENCHMARKS:
        print(f"bench: running {name} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        text = runs[name]()
        elapsed = time.perf_counter() - started
        load = os.getloadavg()[0]
        print(
            f"\n{text}\n\n_{name}: {elapsed:.1f} s wall, load average {load:.2f} at the end_",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
