"""``otaudit search`` and ``otaudit sample`` on both stores, with the same records."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from otaudit.store.search import SEARCH_COLUMNS
from pgcluster import PgServer
from support import Server, otaudit, post

RECORDS = 40
ACTIONS = ("login", "role_update", "read", "config_change")
ACTORS = ("alice", "bob", "carol")
DAY = 86_400 * 10**9


def _kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def export_request(now_ns: int) -> bytes:
    """RECORDS spans: record i is i days old, action i % 4, actor i % 3, every 5th a failure."""
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.append(_kv("service.name", "accounts"))
    spans = resource_spans.scope_spans.add().spans
    for i in range(RECORDS):
        spans.append(
            Span(
                trace_id=(0x5EA2C4 << 64 | i).to_bytes(16, "big"),
                span_id=(i + 1).to_bytes(8, "big"),
                name=f"op-{i}",
                start_time_unix_nano=now_ns - (RECORDS - i) * DAY,
                end_time_unix_nano=now_ns - (RECORDS - i) * DAY + 1000,
                attributes=[
                    _kv("audit.action", ACTIONS[i % 4]),
                    _kv("enduser.id", ACTORS[i % 3]),
                    _kv("audit.target", f"user-{i % 5}"),
                    _kv("audit.resource_type", "user_permission" if i % 4 == 1 else "session"),
                    _kv("audit.result", "failure" if i % 5 == 0 else "success"),
                ],
            )
        )
    return request.SerializeToString()


@dataclass(frozen=True)
class Ledger:
    """A stopped server's data directory and the ``--store`` arguments to read it."""

    kind: str
    data: Path
    store_args: tuple[str, ...]
    sql_args: tuple[str, ...] = ()  # --query-store, for `otaudit sql` on PostgreSQL

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        extra = self.sql_args if args[0] == "sql" else ()
        return otaudit(*args, "--data", str(self.data), *self.store_args, *extra)


@pytest.fixture(scope="module")
def ledgers(pg: PgServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Ledger]:
    """The same export, sealed once in a SQLite ledger and once in a PostgreSQL ledger."""
    body = export_request(time.time_ns())
    out = {}
    for kind, store_args in (("sqlite", ()), ("postgresql", ("--store", pg.database()))):
        server = Server(tmp_path_factory.mktemp(kind) / "data", extra_args=list(store_args))
        server.start()
        assert post(server, body).status_code == 200
        assert server.stop() == 0
        sql_args = ("--query-store", pg.query_url(store_args[1])) if store_args else ()
        out[kind] = Ledger(kind, server.data, store_args, sql_args)
    return out


def _csv(ledger: Ledger, *args: str) -> list[dict[str, str]]:
    result = ledger.run("search", "--format", "csv", *args)
    assert result.returncode == 0, result.stderr
    reader = csv.reader(io.StringIO(result.stdout))
    header = next(reader)
    assert tuple(header) == SEARCH_COLUMNS
    return [dict(zip(header, row, strict=True)) for row in reader]


@pytest.mark.parametrize(
    ("args", "seqs"),
    [
        (["--action", "role_update"], list(range(1, RECORDS, 4))),
        (["--action", "role_update", "--actor", "bob"], [1, 13, 25, 37]),
        (["--action", "login", "--action", "read", "--result", "failure"], [0, 10, 20, 30]),
        (["--target", "user-3", "--resource-type", "session"], [3, 8, 18, 23, 28, 38]),
        (["--since", "5d", "--service", "accounts"], [36, 37, 38, 39]),
        (["--since", "10d", "--until", "8d"], [31, 32]),  # 9 and 8 days old (i = 40 - age)
        (["--trace-id", f"{0x5EA2C4 << 64 | 7:032X}"], [7]),
        (["--actor", "nobody"], []),
    ],
)
def test_filters_give_the_same_rows_on_both_stores(
    ledgers: dict[str, Ledger], args: list[str], seqs: list[int]
) -> None:
    outputs = [ledger.run("search", "--format", "csv", *args) for ledger in ledgers.values()]
    for result in outputs:
        assert result.returncode == 0, result.stderr
    assert outputs[0].stdout == outputs[1].stdout  # byte for byte
    rows = _csv(ledgers["sqlite"], *args)
    # (Each search appends a read record: a log record of service otaudit, matched by none
    # of these filters but --since alone, hence --service there.)
    assert [int(r["seq"]) for r in rows] == seqs


def test_formats(ledgers: dict[str, Ledger]) -> None:
    ledger = ledgers["postgresql"]
    jsonl = ledger.run("search", "--action", "config_change", "--format", "jsonl")
    assert jsonl.returncode == 0, jsonl.stderr
    lines = [json.loads(line) for line in jsonl.stdout.splitlines()]
    assert [list(row) for row in lines] == [list(SEARCH_COLUMNS)] * len(lines)
    assert [row["seq"] for row in lines] == list(range(3, RECORDS, 4))
    assert lines[0]["timestamp"].endswith("Z") and lines[0]["signal"] == "span"
    whole = ledger.run("search", "--action", "config_change", "--format", "json")
    assert json.loads(whole.stdout) == lines
    empty = ledger.run("search", "--actor", "nobody", "--format", "json")
    assert json.loads(empty.stdout) == []
    table = ledger.run("search", "--action", "config_change", "--limit", "3")
    assert "op-11" in table.stdout and "op-15" not in table.stdout
    assert "3 record(s)" in table.stdout


def test_bad_options_say_what_is_wrong(ledgers: dict[str, Ledger]) -> None:
    result = ledgers["sqlite"].run("search", "--since", "last tuesday")
    assert result.returncode == 2
    assert "--since" in result.stderr and "neither RFC 3339 nor a duration" in result.stderr


def test_each_search_is_recorded(ledgers: dict[str, Ledger]) -> None:
    for ledger in ledgers.values():
        assert ledger.run("search", "--actor", "carol", "--since", "30d", "--format", "csv")
        reads = ledger.run(
            "sql", "--format", "json",
            "SELECT actor, attributes['audit.query.text'] AS text FROM audit_logs"
            " WHERE attributes['audit.query.kind'] = 'search' ORDER BY seq DESC LIMIT 1",
        )  # fmt: skip
        ((row),) = json.loads(reads.stdout)
        assert row["text"].startswith("search --actor carol --since-ns ")


# -- sampling ---------------------------------------------------------------------


def _sample(ledger: Ledger, *args: str) -> dict[str, object]:
    result = ledger.run("sample", "--format", "json", *args)
    assert result.returncode == 0, result.stderr
    document: dict[str, object] = json.loads(result.stdout)
    return document


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_sample_is_reproducible_from_the_checkpoint(ledgers: dict[str, Ledger], kind: str) -> None:
    ledger = ledgers[kind]
    first = _sample(ledger, "--action", "login", "--action", "role_update", "--n", "5")
    size = int(str(first["tree_size"]))
    again = _sample(ledger, "--action", "login", "--action", "role_update", "--n", "5",
                    "--checkpoint", str(size))  # fmt: skip
    assert again["records"] == first["records"]
    assert first["redraw"] == (
        f"otaudit sample --action login --action role_update --n 5 --checkpoint {size}"
    )
    # Anyone can re-draw it: population by the rule, seed from the signed checkpoint.
    population = [i for i in range(RECORDS) if i % 4 in (0, 1)]
    assert first["population"] == len(population)
    root = bytes.fromhex(str(first["root_hash"]))
    order = sorted(population, key=lambda s: hashlib.sha256(root + s.to_bytes(8, "big")).digest())
    records = first["records"]
    assert isinstance(records, list)
    assert [r["seq"] for r in records] == order[:5]
    assert str(first["checkpoint"]).split("\n")[1] == str(size)
    # Another checkpoint is another seed, and another (smaller) population.
    older = _sample(ledger, "--action", "login", "--n", "100", "--checkpoint", "40")
    assert older["population"] == RECORDS // 4 and older["n"] == RECORDS // 4
    # A relative period is re-drawn by the absolute bounds it meant when drawn.
    recent = _sample(ledger, "--since", "3650d", "--until", "2030-01-01", "--n", "3")
    redraw = str(recent["redraw"])
    assert "--since 20" in redraw and "d " not in redraw.split("--since ")[1][:30]
    assert "--until 2030-01-01T00:00:00.000000000Z" in redraw
    again = _sample(ledger, *redraw.split()[2:])
    assert again["records"] == recent["records"]


def test_sample_errors(ledgers: dict[str, Ledger]) -> None:
    result = ledgers["sqlite"].run("sample", "--checkpoint", "3")
    assert result.returncode == 2
    assert "no signed checkpoint at tree size 3" in result.stderr


# -- streaming ----------------------------------------------------------------------

_PEAK = """
import resource, sys
from otaudit.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
sys.exit(code)
"""


def _peak_kib(args: list[str], out: Path) -> int:
    with out.open("w") as sink:
        command = [sys.executable, "-c", _PEAK, *args]
        done = subprocess.run(command, stdout=sink, stderr=subprocess.PIPE, text=True,
                              timeout=600, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return int(done.stderr.strip().splitlines()[-1])


def test_search_streams_in_constant_memory(ledgers: dict[str, Ledger], tmp_path: Path) -> None:
    source = ledgers["sqlite"].data / "ledger.db"
    data = tmp_path / "data"
    data.mkdir()
    big = data / "ledger.db"
    conn = sqlite3.connect(source)
    try:
        conn.execute(f"VACUUM INTO '{big}'")
    finally:
        conn.close()
    conn = sqlite3.connect(big, isolation_level=None)
    try:
        columns = [r[1] for r in conn.execute("PRAGMA table_info(records)")]
        rest = ", ".join(c for c in columns if c not in ("seq", "dedup_key"))
        conn.execute("BEGIN")
        conn.execute(
            f"INSERT INTO records (seq, dedup_key, {rest}) "
            "WITH RECURSIVE k(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM k WHERE n < 2499) "
            f"SELECT seq + n * 1000, randomblob(16), {rest} FROM records, k "
            "WHERE records.pipeline <> 'otaudit' AND records.seq < 40"
        )
        conn.execute("COMMIT")
        total = conn.execute("SELECT count(*) FROM records WHERE pipeline <> 'otaudit'").fetchone()[
            0
        ]
    finally:
        conn.close()
    assert total == 40 * 2500
    small = _peak_kib(["search", "--data", str(data), "--format", "csv", "--limit", "2000"],
                      tmp_path / "small.csv")  # fmt: skip
    large = _peak_kib(["search", "--data", str(data), "--format", "csv", "--service", "accounts"],
                      tmp_path / "large.csv")  # fmt: skip
    with (tmp_path / "large.csv").open() as f:
        assert sum(1 for _ in f) == total + 1
    assert (tmp_path / "large.csv").stat().st_size > 14_000_000
    assert large - small < 10_000, (small, large)  # KiB: the 14+ MB result never sits in memory
