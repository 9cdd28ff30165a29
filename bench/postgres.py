"""Several ``otaudit serve`` nodes on one PostgreSQL: durable spans/s with one and three nodes.

A throwaway PostgreSQL (``tests/pgcluster.py``, data directory on the real disk under
``bench/results/``, fsync on) holds the ledger. Each node gets a load process of its own
sending distinct pre-encoded batches over OTLP/HTTP, closed loop. Baseline, same server,
same run: binary COPY of the same sealed rows into a plain table with the ledger's
columns (no sequencing, no tree, no triggers), the most any writer could get in.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any, Final

import psycopg
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.load import LoadSpec, Phase, run_load
from bench.payloads import SPANS_PER_BATCH, PayloadFactory, self_check
from bench.report import num, ratio, table
from bench.server import ServerProcess, describe_fs, scratch_dir
from otaudit.otlp.convert import select_spans
from otaudit.record import COLUMN_NAMES, seal

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from pgcluster import PgCluster, PgServer

#: Issue 16, target 7: durable spans/s of one node, three nodes at least as fast as one,
#: and the sequencer's capacity (records per second of append time).
ONE_NODE_TARGET: Final = 20_000
SCALE_TARGET: Final = 1.0
CAPACITY_TARGET: Final = 60_000
SEALED: Final = 'otaudit_records_sealed_total{signal="span"}'


def copy_baseline(dsn: str, batches: int) -> float:
    """Rows/s of binary COPY of sealed records into a plain table with the ledger's columns."""
    factory = PayloadFactory(seed=17)
    rows: list[tuple[Any, ...]] = []
    for payload in factory.batches(batches, SPANS_PER_BATCH):
        request = ExportTraceServiceRequest.FromString(payload)
        for obj, content in select_spans(request, "audit.action").records:
            e = seal(obj, content, "otlp", time.time_ns())
            rows.append((len(rows), e.sealed, e.dedup_key, *e.columns))
    types = ["bigint", "bytea", "bytea"] + [
        "bigint" if n in ("time_unix_nano", "producer_seq") else "text" for n in COLUMN_NAMES
    ]
    columns = ", ".join(f"c{i} {t}" for i, t in enumerate(types))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE copy_baseline ({columns})")
        started = time.perf_counter()
        with (
            conn.transaction(),
            conn.cursor() as cur,
            cur.copy("COPY copy_baseline FROM STDIN (FORMAT BINARY)") as copy,
        ):
            copy.set_types(types)
            for row in rows:
                copy.write_row(row)
        elapsed = time.perf_counter() - started
    return len(rows) / elapsed


def _nodes_run(pg: PgServer, nodes: int, batches: int, senders: int) -> dict[str, Any]:
    url = pg.database()
    servers: list[ServerProcess] = []
    results: list[dict[str, Any]] = []
    try:
        first = ServerProcess("pg-node0", ("--store", url)).__enter__()
        servers.append(first)
        for i in range(1, nodes):
            servers.append(ServerProcess(f"pg-node{i}", ("--store", url), first.data).__enter__())
        lock = threading.Lock()

        def drive(srv: ServerProcess) -> None:
            spec = LoadSpec("http", srv.http_port, srv.grpc_port, srv.pid, senders, batches)
            res = run_load("throughput", spec)
            with lock:
                results.append(res)

        threads = [threading.Thread(target=drive, args=(s,)) for s in servers]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - started
        metrics = [s.metrics() for s in servers]
        sealed = sum(m.get(SEALED, 0.0) for m in metrics)
        commit_s = sum(m.get("otaudit_commit_seconds_sum", 0.0) for m in metrics)
        commits = sum(m.get("otaudit_commit_seconds_count", 0.0) for m in metrics)
    finally:
        for s in servers:
            s.__exit__(None, None, None)
    phases: list[Phase] = [r["phase"] for r in results]
    acked = sum(p.acked_spans for p in phases)
    errors = sum(sum(p.errors.values()) for p in phases)
    span = max(p.wall_s for p in phases) if phases else wall
    return {
        "acked": acked,
        "errors": errors,
        "wall": span,
        "rate": acked / span,
        "sealed": sealed,
        "commits": commits,
        "commit_s": commit_s,
    }


def _commits(res: dict[str, Any]) -> str:
    if not res["commits"]:
        return "0"
    mean_ms = 1e3 * res["commit_s"] / res["commits"]
    return f"{res['commits']:.0f} ({res['sealed'] / res['commits']:,.0f} rec, {mean_ms:.1f} ms)"


def run(quick: bool) -> str:
    """One node, then three nodes, on one throwaway PostgreSQL; the COPY baseline in between."""
    self_check()
    batches, senders = (12 if quick else 200), 4
    cluster = PgCluster(root=scratch_dir("pg-cluster-")).start()
    try:
        pg = PgServer(cluster.dsn, cluster)
        one = _nodes_run(pg, 1, batches, senders)
        baseline = copy_baseline(cluster.dsn, batches)
        three = _nodes_run(pg, 3, batches, senders)
    finally:
        cluster.destroy()
    capacity = one["sealed"] / one["commit_s"] if one["commit_s"] else 0.0
    rows = []
    for label, res, target in (
        ("1 node", one, f">= {num(ONE_NODE_TARGET)}: "
         + ("met" if one["rate"] >= ONE_NODE_TARGET else "MISSED")
         + f"; capacity >= {num(CAPACITY_TARGET)}: "
         + ("met" if capacity >= CAPACITY_TARGET else "MISSED")),
        ("3 nodes", three, f">= {SCALE_TARGET:.0f}x 1 node: "
         + ("met" if three["rate"] >= SCALE_TARGET * one["rate"] else "MISSED")),
    ):  # fmt: skip
        rows.append(
            [
                label,
                num(res["acked"]),
                str(res["errors"]),
                f"{res['wall']:.2f}",
                f"**{num(res['rate'])}**",
                num(res["sealed"]) + ("" if res["sealed"] == res["acked"] else " (!= acked)"),
                num(baseline),
                ratio(res["rate"], baseline),
                f"{res['rate'] / one['rate']:.2f}x" if one["rate"] else "n/a",
                _commits(res),
                num(res["sealed"] / res["commit_s"]) if res["commit_s"] else "n/a",
                f"{res['commit_s'] / res['wall']:.0%}" if res["wall"] else "n/a",
                target,
            ]
        )
    headers = [
        "nodes",
        "acked spans",
        "errors",
        "wall s",
        "durable spans/s",
        "sealed (/metrics)",
        "baseline: raw COPY rows/s",
        "durable / COPY",
        "vs 1 node",
        "commits (mean records, mean ms)",
        "sequencer capacity: records per second of append time",
        "share of wall time in appends",
        "target",
    ]
    intro = (
        f"### PostgreSQL: nodes on one ledger ({batches} distinct batches of {SPANS_PER_BATCH} "
        f"audit spans per node over OTLP/HTTP, {senders} senders per node, closed loop)\n\n"
    )
    note = f"- PostgreSQL data directory on {describe_fs(cluster.root.parent)}"
    return intro + table(headers, rows) + "\n\n" + note
