"""Completeness (``otaudit gaps``) and conformance (``otaudit conformance``).

One real server receives audit records over OTLP/HTTP from three producers
and from instrumentation without producer numbering:

- service ``billing``: producer GAPS numbers 1..10 but 4, 7 and 8 never
  arrive; its record 9 has no actor;
- service ``accounts``: producer OK sends 1..4 as spans and 5..6 as log
  records (one numbering for both signals), complete; producer DUP sends
  1, 2, 3 and then 2, 3 again (a restart without a new id); two unnumbered
  spans lack the result, or the actor and the result;
- service ``legacy``: three unnumbered spans, one conforming, one without
  actor, one without actor and result.

The derived columns ``producer``, ``producer_seq`` and ``missing`` are
rechecked by ``otaudit verify``, so editing them is detected.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from conftest import STORE_KINDS, new_store_url, query_args
from otaudit.completeness import producer_reports, service_reports
from otaudit.otlp.convert import select_spans
from otaudit.record import seal
from otaudit.store.base import Store
from support import Server, otaudit

GAPS = "5f0c2a4e-0000-4000-8000-000000000001"
OK = "5f0c2a4e-0000-4000-8000-000000000002"
DUP = "5f0c2a4e-0000-4000-8000-000000000003"
T0 = 1_764_288_000_000_000_000  # 2025-11-28T00:00:00Z
SECOND = 1_000_000_000
_ids = iter(range(1, 1 << 30))


def _kv(key: str, value: str | int) -> KeyValue:
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


@dataclass
class Rec:
    """One audit record to send: numbering, actor and result may each be absent."""

    producer: str | None
    seq: int | None
    at_s: int
    actor: str | None = "alice"
    result: str | None = "success"

    def attributes(self) -> list[KeyValue]:
        attrs = [_kv("audit.action", "update"), _kv("audit.target", "doc-1")]
        if self.producer is not None and self.seq is not None:
            attrs += [_kv("audit.producer.id", self.producer), _kv("audit.producer.seq", self.seq)]
        if self.actor is not None:
            attrs.append(_kv("user.id", self.actor))
        if self.result is not None:
            attrs.append(_kv("audit.result", self.result))
        return attrs


def spans_request(service: str, records: list[Rec]) -> bytes:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.append(_kv("service.name", service))
    ss = rs.scope_spans.add()
    for r in records:
        n = next(_ids)
        ss.spans.append(
            Span(
                trace_id=(0xC0DE << 64 | n).to_bytes(16, "big"),
                span_id=n.to_bytes(8, "big"),
                name="doc.update",
                start_time_unix_nano=T0 + r.at_s * SECOND,
                end_time_unix_nano=T0 + r.at_s * SECOND + 1000,
                attributes=r.attributes(),
                status=Status(code=Status.STATUS_CODE_UNSET),  # no result from the status
            )
        )
    return req.SerializeToString()


def logs_request(service: str, records: list[Rec]) -> bytes:
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    rl.resource.attributes.append(_kv("service.name", service))
    sl = rl.scope_logs.add()
    for r in records:
        sl.log_records.append(
            LogRecord(
                time_unix_nano=T0 + r.at_s * SECOND,
                body=AnyValue(string_value="document updated"),
                attributes=r.attributes(),
            )
        )
    return req.SerializeToString()


BILLING = [Rec(GAPS, n, n, actor=None if n == 9 else "alice") for n in range(1, 11)
           if n not in (4, 7, 8)]  # fmt: skip
ACCOUNTS_SPANS = [
    *(Rec(OK, n, n) for n in range(1, 5)),
    *(Rec(DUP, n, 100 + n) for n in (1, 2, 3)),
    *(Rec(DUP, n, 200 + n, actor="bob") for n in (2, 3)),  # restarted: different records
    Rec(None, None, 300, result=None),
    Rec(None, None, 301, actor=None, result=None),
]
ACCOUNTS_LOGS = [Rec(OK, 5, 5), Rec(OK, 6, 6)]
LEGACY = [
    Rec(None, None, 400),
    Rec(None, None, 401, actor=None),
    Rec(None, None, 402, actor=None, result=None),
]


def _post(client: httpx.Client, path: str, body: bytes) -> None:
    response = client.post(path, content=body, headers={"content-type": "application/x-protobuf"})
    assert response.status_code == 200, response.text
    assert response.content == b""


@dataclass(frozen=True)
class Ledger:
    data: Path
    metrics: dict[str, float]
    store_args: tuple[str, ...] = ()
    sql_args: tuple[str, ...] = ()  # --query-store, for `otaudit sql` on PostgreSQL


def _fill(directory: Path, store_args: tuple[str, ...]) -> Ledger:
    """A stopped server's data directory holding the records above, and its final metrics."""
    data = directory / "data"
    srv = Server(data, extra_args=list(store_args)).start()
    try:
        billing = spans_request("billing", BILLING)
        with httpx.Client(base_url=srv.http_url, timeout=30) as client:
            _post(client, "/v1/traces", billing)
            _post(client, "/v1/traces", spans_request("accounts", ACCOUNTS_SPANS))
            _post(client, "/v1/logs", logs_request("accounts", ACCOUNTS_LOGS))
            _post(client, "/v1/traces", spans_request("legacy", LEGACY))
            _post(client, "/v1/traces", billing)  # a retry: already held, not counted again
        metrics = srv.metrics()
    finally:
        assert srv.stop() == 0
    return Ledger(data, metrics, store_args)


@pytest.fixture(scope="module", params=STORE_KINDS)
def ledger(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Ledger:
    """The records above on each store."""
    directory = tmp_path_factory.mktemp("completeness")
    store_args: tuple[str, ...] = ()
    if request.param != "sqlite":
        store_args = ("--store", new_store_url(request.param, directory, request))
    sql_args = tuple(query_args(store_args[-1] if store_args else None, request))
    return replace(_fill(directory, store_args), sql_args=sql_args)


@pytest.fixture(scope="module")
def sqlite_ledger(tmp_path_factory: pytest.TempPathFactory) -> Ledger:
    """The records above in a SQLite ledger, whose file the tamper tests edit."""
    return _fill(tmp_path_factory.mktemp("completeness-sqlite"), ())


def _run(ledger: Ledger, *args: str) -> tuple[int, str, str]:
    extra = ledger.sql_args if args[0] == "sql" else ()
    result = otaudit(*args, "--data", str(ledger.data), *ledger.store_args, *extra)
    return result.returncode, result.stdout, result.stderr


def test_records_are_sealed_and_nonconforming_ones_counted(ledger: Ledger) -> None:
    m = ledger.metrics
    assert m["otaudit_tree_size"] == 7 + 11 + 2 + 3
    assert m['otaudit_records_duplicate_total{signal="span"}'] == 7  # the retried request
    nonconforming = {k: v for k, v in m.items()
                     if k.startswith("otaudit_records_nonconforming_total{")}  # fmt: skip
    assert nonconforming == {
        'otaudit_records_nonconforming_total{missing="actor",service="billing"}': 1,
        'otaudit_records_nonconforming_total{missing="result",service="accounts"}': 1,
        'otaudit_records_nonconforming_total{missing="actor,result",service="accounts"}': 1,
        'otaudit_records_nonconforming_total{missing="actor",service="legacy"}': 1,
        'otaudit_records_nonconforming_total{missing="actor,result",service="legacy"}': 1,
    }


def test_columns_in_the_views(ledger: Ledger) -> None:
    code, out, err = _run(
        ledger, "sql", "--format", "json",
        "SELECT producer, producer_seq, missing FROM audit_logs ORDER BY seq",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out) == [
        {"producer": OK, "producer_seq": 5, "missing": None},
        {"producer": OK, "producer_seq": 6, "missing": None},
    ]
    code, out, err = _run(
        ledger, "sql", "--format", "csv",
        "SELECT service, missing, count(*) AS n FROM audit_spans WHERE missing IS NOT NULL "
        "GROUP BY service, missing ORDER BY service, missing",
    )  # fmt: skip
    assert code == 0, err
    assert out == (
        'service,missing,n\naccounts,"actor,result",1\naccounts,result,1\n'
        'billing,actor,1\nlegacy,actor,1\nlegacy,"actor,result",1\n'
    )


GAP_ROWS = [
    {"producer": GAPS, "first_seq": 1, "last_seq": 10, "records": 7, "missing_count": 3,
     "missing": "4, 7-8", "duplicate_count": 0, "duplicates": ""},
    {"producer": OK, "first_seq": 1, "last_seq": 6, "records": 6, "missing_count": 0,
     "missing": "", "duplicate_count": 0, "duplicates": ""},
    {"producer": DUP, "first_seq": 1, "last_seq": 3, "records": 5, "missing_count": 0,
     "missing": "", "duplicate_count": 2, "duplicates": "2-3"},
]  # fmt: skip


def test_gaps_json(ledger: Ledger) -> None:
    code, out, err = _run(ledger, "gaps", "--format", "json")
    assert (code, err) == (1, "")
    assert json.loads(out) == GAP_ROWS
    assert [list(row) for row in json.loads(out)] == [list(GAP_ROWS[0])] * 3


def test_gaps_table(ledger: Ledger) -> None:
    code, out, err = _run(ledger, "gaps")
    assert (code, err) == (1, "")
    assert out == (
        "producer                              first_seq  last_seq  records  missing_count"
        "  missing  duplicate_count  duplicates\n"
        f"{GAPS}          1        10        7              3  4, 7-8                 0  -\n"
        f"{OK}          1         6        6              0  -                      0  -\n"
        f"{DUP}          1         3        5              0  -                      2  2-3\n"
        "GAPS: 1 of 3 producer(s) missing 3 number(s); 1 of 3 producer(s) with 2 duplicated "
        "record(s)\n"
    )


def test_gaps_csv(ledger: Ledger) -> None:
    code, out, _ = _run(ledger, "gaps", "--format", "csv", "--producer", GAPS)
    assert code == 1
    assert out == (
        "producer,first_seq,last_seq,records,missing_count,missing,duplicate_count,duplicates\n"
        f'{GAPS},1,10,7,3,"4, 7-8",0,\n'
    )


def test_gaps_of_one_producer(ledger: Ledger) -> None:
    code, out, err = _run(ledger, "gaps", "--producer", OK)
    assert (code, err) == (0, "")
    assert out.endswith("OK: 1 producer(s), 6 numbered records, no missing or duplicated numbers\n")
    code, out, _ = _run(ledger, "gaps", "--producer", DUP, "--format", "json")
    assert code == 1  # duplicates: a restart without a new id can hide lost records
    assert json.loads(out) == [GAP_ROWS[2]]


def test_gaps_since(ledger: Ledger) -> None:
    # From 00:00:05: GAPS has 5, 6, 9, 10 in the window; numbers before 5 are not checked.
    code, out, _ = _run(
        ledger, "gaps", "--producer", GAPS, "--since", "2025-11-28T00:00:05Z", "--format", "json"
    )
    assert code == 1
    assert json.loads(out) == [{**GAP_ROWS[0], "first_seq": 5, "records": 4,
                                "missing_count": 2, "missing": "7-8"}]  # fmt: skip
    code, out, _ = _run(ledger, "gaps", "--producer", GAPS, "--since", "2025-11-28T00:00:09Z")
    assert code == 0
    code, out, _ = _run(ledger, "gaps", "--since", "2025-11-28T00:00:00Z", "--format", "json")
    assert code == 1
    # A duration back from now: everything here is older than a day... but not than 10000 weeks.
    assert _run(ledger, "gaps", "--since", "1d", "--format", "json")[:2] == (0, "[]\n")
    assert _run(ledger, "gaps", "--since", "10000w", "--format", "json")[0] == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "yesterday"], "neither RFC 3339 nor a duration"),
        (["--format", "xml"], "Invalid value for '--format'"),
        (["--producer", "no-such-producer"], "no numbered audit records from producer"),
    ],
)
def test_gaps_usage_errors(ledger: Ledger, args: list[str], message: str) -> None:
    code, out, err = _run(ledger, "gaps", *args)
    assert (code, out) == (2, "")
    assert message in err


def test_gaps_without_a_ledger(tmp_path: Path) -> None:
    result = otaudit("gaps", "--data", str(tmp_path / "none"))
    assert result.returncode == 2
    assert "does not exist" in result.stderr


CONFORMANCE_ROWS = [
    {"service": "legacy", "records": 3, "nonconforming": 2, "missing_actor": 2,
     "missing_result": 1, "unnumbered": 3, "conforming_pct": 33.3},
    {"service": "accounts", "records": 13, "nonconforming": 2, "missing_actor": 1,
     "missing_result": 2, "unnumbered": 2, "conforming_pct": 84.6},
    {"service": "billing", "records": 7, "nonconforming": 1, "missing_actor": 1,
     "missing_result": 0, "unnumbered": 0, "conforming_pct": 85.7},
]  # fmt: skip


def test_conformance(ledger: Ledger) -> None:
    code, out, err = _run(ledger, "conformance", "--format", "json")
    assert (code, err) == (0, "")
    assert json.loads(out) == CONFORMANCE_ROWS
    code, out, err = _run(ledger, "conformance")
    assert (code, err) == (0, "")
    assert out == (
        "service   records  nonconforming  missing_actor  missing_result  unnumbered"
        "  conforming_pct\n"
        "legacy          3              2              2               1           3"
        "            33.3\n"
        "accounts       13              2              1               2           2"
        "            84.6\n"
        "billing         7              1              1               0           0"
        "            85.7\n"
        "all services: 23 audit records, 5 non-conforming (78.3 % conforming), "
        "5 without producer numbering\n"
    )
    code, out, _ = _run(ledger, "conformance", "--format", "csv", "--since", "2025-11-28T00:06:40Z")
    assert code == 0
    assert out == (
        "service,records,nonconforming,missing_actor,missing_result,unnumbered,conforming_pct\n"
        "legacy,3,2,2,1,3,33.3\n"
    )
    assert _run(ledger, "conformance", "--since", "1d")[:2] == (0, "no audit records\n")


def test_verify_rechecks_the_new_columns(ledger: Ledger) -> None:
    code, out, err = _run(ledger, "verify")
    assert code == 0, err
    verified = re.match(r"OK: (\d+) records verified", out)
    assert verified is not None, out
    assert int(verified[1]) >= 23  # the 23 sent, and a record of each read the tests ran


def _seq_of(conn: sqlite3.Connection, where: str) -> int:
    rows = conn.execute(f"SELECT seq FROM records WHERE {where}").fetchall()
    assert len(rows) == 1, rows
    return int(rows[0][0])


@pytest.mark.parametrize(
    ("where", "update", "column"),
    [
        ("service = 'billing' AND missing = 'actor'", "missing = NULL", "missing"),
        (f"producer = '{GAPS}' AND producer_seq = 5", "producer_seq = 4", "producer_seq"),
        (f"producer = '{OK}' AND producer_seq = 2", f"producer = '{DUP}'", "producer"),
    ],
    ids=["missing-cleared", "gap-filled", "producer-moved"],
)
def test_tampered_columns_are_detected(
    sqlite_ledger: Ledger, tmp_path: Path, where: str, update: str, column: str
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(sqlite_ledger.data, copy)
    conn = sqlite3.connect(copy / "ledger.db", isolation_level=None)
    try:
        triggers = [
            r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        ]
        for name in triggers:
            conn.execute(f'DROP TRIGGER "{name}"')
        seq = _seq_of(conn, where)
        conn.execute(f"UPDATE records SET {update} WHERE seq = ?", (seq,))
    finally:
        conn.close()
    result = otaudit("verify", "--data", str(copy))
    assert result.returncode == 1, result.stdout
    assert result.stderr.startswith(f"FAILED: seq {seq}: column {column} is ")


# -- the derivation and the SQL, in process ---------------------------------------


def _columns(*attributes: KeyValue) -> tuple[object, object, object]:
    req = ExportTraceServiceRequest()
    span = (
        req.resource_spans.add()
        .scope_spans.add()
        .spans.add(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="x", start_time_unix_nano=T0)
    )
    span.attributes.extend([_kv("audit.action", "a"), *attributes])
    ((obj, content),) = select_spans(req, "audit.action").records
    c = seal(obj, content, "otlp", T0).columns
    return c.producer, c.producer_seq, c.missing


@pytest.mark.parametrize(
    ("seq_value", "expected"),
    [
        (AnyValue(int_value=7), 7),
        (AnyValue(int_value=-3), -3),
        (AnyValue(string_value="42"), 42),
        (AnyValue(string_value="007"), 7),
        (AnyValue(string_value="9223372036854775807"), 2**63 - 1),
        (AnyValue(string_value="9223372036854775808"), None),  # beyond int64
        (AnyValue(string_value="1" * 5000), None),
        (AnyValue(string_value="4x"), None),
        (AnyValue(string_value="-4"), None),
        (AnyValue(string_value="٣"), None),  # a digit, but not ASCII
        (AnyValue(string_value=""), None),
        (AnyValue(double_value=4.0), None),
        (AnyValue(bool_value=True), None),
        (AnyValue(), None),
    ],
)
def test_producer_seq_column(seq_value: AnyValue, expected: int | None) -> None:
    producer = _kv("audit.producer.id", "p")
    number = KeyValue(key="audit.producer.seq", value=seq_value)
    assert _columns(producer, number)[:2] == ("p", expected)


def test_producer_and_missing_columns() -> None:
    assert _columns() == (None, None, "actor,result")
    assert _columns(_kv("user.id", "u")) == (None, None, "result")
    assert _columns(_kv("audit.result", "ok")) == (None, None, "actor")
    assert _columns(_kv("enduser.id", "u"), _kv("audit.result", "ok")) == (None, None, None)
    assert _columns(_kv("audit.producer.id", 12), _kv("audit.producer.seq", 1))[:2] == ("12", 1)


def test_reports_over_a_store(any_store: Store) -> None:
    """Numbering that does not start at 1, repeats, negative numbers, and --since."""
    store = any_store
    numbering = {"a": [3, 4, 4, 4, 6, 9, 10, 11, 13], "b": [-2, -1, 0, 2], "c": [1]}
    entries = []
    for producer, numbers in numbering.items():
        for i, n in enumerate(numbers):
            req = ExportTraceServiceRequest()
            span = req.resource_spans.add().scope_spans.add().spans.add(
                trace_id=b"\x01" * 16, span_id=(n + 100).to_bytes(8, "big"), name=producer,
                start_time_unix_nano=T0 + i * SECOND,
            )  # fmt: skip
            span.attributes.extend(
                [_kv("audit.action", "a"), _kv("audit.producer.id", producer),
                 _kv("audit.producer.seq", n), _kv("user.id", f"u{i}")]
            )  # fmt: skip
            ((obj, content),) = select_spans(req, "audit.action").records
            entries.append(seal(obj, content, "otlp", T0))
    store.append(entries)
    reports = {r.producer: r for r in producer_reports(store)}
    a, b, c = reports["a"], reports["b"], reports["c"]
    assert (a.first_seq, a.last_seq, a.records) == (3, 13, 9)
    assert (a.missing, a.missing_count) == ([(1, 2), (5, 5), (7, 8), (12, 12)], 6)
    assert (a.duplicates, a.duplicate_count) == ([(4, 4)], 2)
    assert (b.missing, b.duplicates, b.complete) == ([(1, 1)], [], False)
    assert c.complete
    assert [r.producer for r in producer_reports(store, producer="b")] == ["b"]
    # From the 5th record of each producer on: "a" has 6, 9, 10, 11, 13 in the window.
    windowed = list(producer_reports(store, since_ns=T0 + 4 * SECOND, producer="a"))
    assert [(r.first_seq, r.missing) for r in windowed] == [(6, [(7, 8), (12, 12)])]
    (service,) = service_reports(store)
    assert (service.service, service.records, service.nonconforming, service.unnumbered) == (
        None, 14, 14, 0,
    )  # fmt: skip
    assert (service.missing_actor, service.missing_result, service.conforming_pct) == (0, 14, 0.0)
    store.close()
