"""The docs' auditor query over a large ledger, on SQLite and on PostgreSQL, against native SQL.

Both stores get the same sealed records (built once through the library):
role updates are ``role_update_share`` of them, start times spread over a
year, so the query's 90-day window holds about a quarter of the role
updates. Each query runs through ``otaudit.query.run_sql`` (the path of
``otaudit sql`` and the read API: a query worker process, a fresh read-only
connection, the dialect translation on SQLite, on PostgreSQL the query
login), warm, several times; the baseline is the same question hand-written in the
store's own SQL over the typed columns, run the same way in the same run.
Then ``otaudit search --format csv`` streams the whole SQLite ledger to
/dev/null: rows/s and the process's peak memory.
"""

from __future__ import annotations

import sqlite3
import statistics
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any, Final

import psycopg
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.payloads import AUDIT_KEY, SPANS_PER_BATCH, PayloadFactory
from bench.report import num, progress, table
from bench.server import describe_fs, scratch_dir
from otaudit.dialect import AUDITOR_QUERY
from otaudit.otlp.convert import select_spans
from otaudit.query import run_sql
from otaudit.record import Entry, seal
from otaudit.sqllimits import QueryLimits
from otaudit.sqlworker import QueryTarget, SqlRunner
from otaudit.store.base import Store
from otaudit.store.postgres import PostgresStore
from otaudit.store.sqlite import SQLiteStore

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from pgcluster import PgCluster, PgServer

ROLE_UPDATE_SHARE: Final = 0.025
TARGET_MS: Final = 200.0
TARGET_RATIO: Final = 1.5
RUNS: Final = 7
_CHUNK: Final = 25_000
_LIMITS: Final = QueryLimits(max_rows=1_000_000, timeout_ms=120_000)

NATIVE: Final = {
    "sqlite": """SELECT timestamp, actor, target,
    json_extract(attributes, '$."audit.old_value"') AS previous_role,
    json_extract(attributes, '$."audit.new_value"') AS new_role, result AS outcome
FROM audit_spans
WHERE action = 'role_update' AND time_unix_nano >= {since}
ORDER BY time_unix_nano DESC""",
    "postgresql": """SELECT timestamp, actor, target,
    attributes -> 'audit.old_value' AS previous_role,
    attributes -> 'audit.new_value' AS new_role, result AS outcome
FROM audit_spans
WHERE action = 'role_update' AND time_unix_nano >= {since}
ORDER BY time_unix_nano DESC""",
}


def build(stores: list[Store], n: int) -> float:
    """Seal ``n`` records once and append them to every store; seconds spent."""
    factory = PayloadFactory(seed=23, role_update_share=ROLE_UPDATE_SHARE, spread_s=365 * 86_400)
    started = time.perf_counter()
    done = 0
    while done < n:
        entries: list[Entry] = []
        while len(entries) < min(_CHUNK, n - done):
            spans = min(SPANS_PER_BATCH, n - done - len(entries))
            request = ExportTraceServiceRequest.FromString(factory.request_bytes(spans))
            received = time.time_ns()
            selected = select_spans(request, AUDIT_KEY).records
            entries.extend(seal(obj, content, "otlp", received) for obj, content in selected)
        for store in stores:
            store.append(entries)
        done += len(entries)
        progress("build", done, n, started)
    return time.perf_counter() - started


def timed(target: QueryTarget, sql: str, runner: SqlRunner) -> tuple[list[float], int]:
    """Milliseconds of each of RUNS warm runs, and the rows returned."""
    rows = run_sql(target, sql, _LIMITS, runner).rows  # warm-up
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        again = run_sql(target, sql, _LIMITS, runner).rows
        times.append((time.perf_counter() - started) * 1e3)
        assert len(again) == len(rows)
    return times, len(rows)


def stream_search(data: Path, total: int) -> tuple[float, float]:
    """Rows/s and peak RSS (MiB) of ``otaudit search --format csv`` over the whole ledger."""
    code = (
        "import resource, sys\nfrom otaudit.cli import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
    )
    started = time.perf_counter()
    with open("/dev/null", "w") as sink:
        done = subprocess.run(
            [sys.executable, "-c", code, "search", "--data", str(data), "--format", "csv",
             "--service", "accounts-api", "--service", "billing-api", "--service", "admin-console",
             "--service", "identity-service"],
            stdout=sink, stderr=subprocess.PIPE, text=True, check=True,
        )  # fmt: skip
    elapsed = time.perf_counter() - started
    return total / elapsed, int(done.stderr.strip().splitlines()[-1]) / 1024


def run(quick: bool, records: int) -> str:
    """Build both ledgers, time the queries, print the table."""
    n = 50_000 if quick else records
    root = scratch_dir("query-")
    cluster = PgCluster(root=scratch_dir("query-pg-")).start()  # its own: postgres owns it
    try:
        pg = PgServer(cluster.dsn, cluster)
        data = root / "data"
        data.mkdir()
        sqlite = SQLiteStore(data / "ledger.db")
        url = pg.database()
        postgres = PostgresStore(url)
        postgres.migrate(online_only=False)
        targets = {
            "sqlite": QueryTarget("sqlite", str(data / "ledger.db")),
            "postgresql": QueryTarget("postgresql", pg.query_url(url)),
        }
        runner = SqlRunner(1)
        try:
            build_s = build([sqlite, postgres], n)
            with closing(sqlite3.connect(data / "ledger.db")) as lite:
                lite.execute("ANALYZE")
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE otaudit.records")
            since = time.time_ns() - 90 * 86_400 * 10**9
            rows: list[list[Any]] = []
            for kind, target in targets.items():
                asked, found = timed(target, AUDITOR_QUERY, runner)
                native, found_native = timed(target, NATIVE[kind].format(since=since), runner)
                med, med_native = statistics.median(asked), statistics.median(native)
                ok = med < TARGET_MS and med <= TARGET_RATIO * med_native
                rows.append([
                    kind, num(n), num(found), num(found_native),
                    f"**{med:.1f}**", f"{max(asked):.1f}", f"{med_native:.1f}",
                    f"{max(native):.1f}", f"{med / med_native:.2f}x",
                    f"< {TARGET_MS:.0f} ms and <= {TARGET_RATIO}x: {'met' if ok else 'MISSED'}",
                ])  # fmt: skip
        finally:
            runner.close()
            sqlite.close()
            postgres.close()
        rate, peak_mib = stream_search(data, n)
    finally:
        cluster.destroy()
        subprocess.run(["rm", "-rf", str(root)], check=False)
    headers = [
        "store", "records", "rows (as written)", "rows (native)",
        "auditor query as written, median ms", "max ms", "baseline: native SQL, median ms",
        "max ms", "as written / native", "target",
    ]  # fmt: skip
    intro = (
        f"### Auditor query over {n:,} records ({ROLE_UPDATE_SHARE:.1%} role updates, start times "
        f"spread over a year; {RUNS} warm runs each through run_sql; built in {build_s:.0f} s)"
        "\n\n"
    )
    notes = [
        f"`otaudit search --format csv` over all {n:,} SQLite records: {rate:,.0f} rows/s, "
        f"peak memory {peak_mib:.0f} MiB",
        f"data on {describe_fs(root)}",
    ]
    return intro + table(headers, rows) + "\n\n" + "\n".join(f"- {x}" for x in notes)
