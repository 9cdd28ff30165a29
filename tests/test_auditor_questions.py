"""The auditor questions of docs/querying.md, run as written on both stores: same rows.

The SQL is read from the documentation itself, so the docs cannot drift from
what works. The records are one OTLP export sealed into a SQLite ledger and
into a PostgreSQL ledger.
"""

from __future__ import annotations

import calendar
import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from pgcluster import PgServer
from support import Server, otaudit, post

DOCS = Path(__file__).resolve().parent.parent / "docs" / "querying.md"
DAY_S = 86_400
NOW_S = int(time.time())


def days_ago(days: int) -> int:
    """21:00 UTC ``days`` (at least 1) days ago: outside business hours whenever the
    suite runs, so that the questions about hours have the same answer at any time."""
    return NOW_S - NOW_S % DAY_S - days * DAY_S + 21 * 3600


def at(text: str) -> int:
    """Seconds since the epoch of a UTC ``YYYY-MM-DDTHH:MM``."""
    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M"))


# (when, action, actor, role, target, resource_type, result, client address, other attributes)
EVENTS: list[tuple[int, str, str, str | None, str | None, str | None, str, str | None,
                   dict[str, str]]] = [
    (at("2026-01-05T08:00"), "login", "alice", "user", None, "session", "failure", "10.0.0.1", {}),
    (at("2026-01-05T08:01"), "login", "alice", "user", None, "session", "failure", "10.0.0.1", {}),
    (at("2026-01-05T08:02"), "login", "alice", "user", None, "session", "failure", "10.0.0.1", {}),
    (at("2026-01-05T08:03"), "login", "alice", "user", None, "session", "success", "10.0.0.1", {}),
    (at("2026-02-01T12:00"), "login", "bob", "user", None, "session", "failure", "10.0.0.2", {}),
    (at("2026-01-09T09:00"), "role_update", "dana", "admin", "bob", "user_permission", "success",
     "10.0.0.9", {"audit.old_value": "viewer", "audit.new_value": "editor"}),
    (at("2026-02-03T22:30"), "permission_grant", "dana", "admin", "carol", "user_permission",
     "success", "10.0.0.9", {"audit.new_value": "billing:read"}),
    (at("2026-02-14T03:00"), "role_update", "mallory", "user", "mallory", "user_permission",
     "failure", "192.0.2.66", {"audit.old_value": "viewer", "audit.new_value": "admin"}),
    (at("2026-03-07T10:00"), "config_change", "dana", "admin", "mfa_required", "setting",
     "success", "10.0.0.9",
     {"audit.old_value": "true", "audit.new_value": "false", "audit.severity": "high"}),
    (at("2026-02-20T12:00"), "config_change", "frank", "manager", "theme", "setting", "success",
     "10.0.0.5", {"audit.old_value": "light", "audit.new_value": "dark", "audit.severity": "low"}),
    (at("2026-03-20T11:00"), "permission_revoke", "frank", "manager", "erin", "user_permission",
     "success", "10.0.0.5", {"audit.old_value": "records:write"}),
    (at("2026-04-02T10:00"), "role_update", "dana", "admin", "bob", "user_permission", "success",
     "10.0.0.9", {"audit.old_value": "editor", "audit.new_value": "admin"}),
    (at("2026-01-12T10:00"), "record_read", "alice", "user", "patient-17", "patient_record",
     "success", "10.0.0.1", {}),
    (at("2026-01-12T10:05"), "record_read", "alice", "user", "patient-18", "patient_record",
     "success", "10.0.0.1", {}),
    (at("2026-03-10T15:00"), "login", "erin", "user", None, "session", "success", "10.0.0.7", {}),
    (at("2026-03-16T09:00"), "record_read", "erin", "user", "patient-17", "patient_record",
     "success", "203.0.113.9", {}),
    (at("2026-03-17T07:00"), "login", "erin", "user", None, "session", "success", "203.0.113.9",
     {}),
    (at("2026-02-10T09:00"), "record_read", "alice", "user", "order-1", "order", "success",
     "10.0.0.1", {"customer.id": "cust-42"}),
    (at("2026-02-11T09:00"), "record_read", "alice", "user", "order-2", "order", "success",
     "10.0.0.1", {"customer.id": "cust-42"}),
    (at("2026-02-12T09:00"), "record_update", "bob", "user", "order-2", "order", "success",
     "10.0.0.2", {"customer.id": "cust-42"}),
    (at("2026-02-13T16:00"), "export", "carol", "user", "orders", "order", "success", "10.0.0.3",
     {"customer.id": "cust-42"}),
    (at("2026-02-13T16:30"), "export", "carol", "user", "orders", "order", "success", "10.0.0.3",
     {"customer.id": "cust-7"}),
    (days_ago(20), "login", "alice", "user", None, "session", "success", "10.0.0.1", {}),
    (days_ago(3), "login", "alice", "user", None, "session", "success", "198.51.100.7", {}),
    (days_ago(30), "login", "bob", "user", None, "session", "success", "10.0.0.2", {}),
    (days_ago(1), "login", "bob", "user", None, "session", "success", "10.0.0.2", {}),
    (days_ago(10), "role_update", "dana", "admin", "zoe", "user_permission", "success",
     "10.0.0.9", {"audit.target_user": "zoe", "audit.old_value": "viewer",
                  "audit.new_value": "editor"}),
    (days_ago(100), "role_update", "dana", "admin", "yann", "user_permission", "success",
     "10.0.0.9", {"audit.target_user": "yann", "audit.old_value": "viewer",
                  "audit.new_value": "admin"}),
]  # fmt: skip


def _kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def export_request() -> bytes:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.append(_kv("service.name", "clinic"))
    spans = resource_spans.scope_spans.add().spans
    for n, (when, action, actor, role, target, rtype, result, address, extra) in enumerate(EVENTS):
        attributes = {"audit.action": action, "enduser.id": actor, "audit.result": result}
        for key, value in (
            ("enduser.role", role),
            ("audit.target", target),
            ("audit.resource_type", rtype),
            ("client.address", address),
        ):
            if value is not None:
                attributes[key] = value
        attributes |= extra
        span = Span(
            trace_id=(0xA0D17 << 64 | n).to_bytes(16, "big"),
            span_id=(n + 1).to_bytes(8, "big"),
            name=action,
            start_time_unix_nano=when * 10**9,
            end_time_unix_nano=when * 10**9 + 5,
        )
        span.attributes.extend(_kv(k, v) for k, v in attributes.items())
        spans.append(span)
    return request.SerializeToString()


def questions() -> list[tuple[str, str]]:
    """(title, SQL) of every question in docs/querying.md, in order."""
    text = DOCS.read_text()
    section = text.split("## Ten auditor questions", 1)[1].split("\n## ", 1)[0]
    found = re.findall(r"^### (\d+\. [^\n]+)\n.*?```sql\n(.*?)```", section, re.S | re.M)
    return [(title, sql) for title, sql in found]


def article_query() -> str:
    text = DOCS.read_text()
    return text.split("## The SQL dialect", 1)[1].split("```sql\n", 1)[1].split("```", 1)[0]


@pytest.fixture(scope="module")
def stores(pg: PgServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """The CLI arguments that read each store's ledger of EVENTS."""
    body = export_request()
    out = {}
    for kind, store_args in (("sqlite", []), ("postgresql", ["--store", pg.database()])):
        server = Server(tmp_path_factory.mktemp(kind) / "data", extra_args=store_args).start()
        assert post(server, body).status_code == 200
        assert server.stop() == 0
        sql_args = ["--query-store", pg.query_url(store_args[1])] if store_args else []
        out[kind] = ["--data", str(server.data), *store_args, *sql_args]
    return out


_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z$")


def _same_instant(value: Any) -> Any:
    """RFC 3339 text at the precision both stores keep (SQLite: ns, PostgreSQL: us)."""
    if isinstance(value, str) and (m := _TIME.match(value)):
        fraction = (m[2] or "").ljust(6, "0")[:6].rstrip("0")
        return m[1] + (f".{fraction}" if fraction else "") + "Z"
    return value


def run(args: list[str], sql: str) -> list[dict[str, Any]]:
    result = otaudit("sql", "--format", "json", *args, sql)
    assert result.returncode == 0, result.stderr
    return [{k: _same_instant(v) for k, v in row.items()} for row in json.loads(result.stdout)]


def _utc(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_the_docs_hold_ten_questions() -> None:
    assert [title.split(".")[0] for title, _ in questions()] == [str(n) for n in range(1, 11)]


EXPECTED: dict[int, Any] = {
    1: [("dana", "role_update", "bob"), ("dana", "permission_grant", "carol"),
        ("mallory", "role_update", "mallory"), ("frank", "permission_revoke", "erin")],
    2: [("alice", "record_read"), ("erin", "record_read")],
    3: [{"actor": "alice", "failures": 3, "first_failure": "2026-01-05T08:00:00Z",
         "last_failure": "2026-01-05T08:02:00Z"},
        {"actor": "bob", "failures": 1, "first_failure": "2026-02-01T12:00:00Z",
         "last_failure": "2026-02-01T12:00:00Z"}],
    5: [{"actor": "alice", "client_address": "198.51.100.7",
         "first_seen": _utc(days_ago(3)), "uses": 1}],
    7: [{"timestamp": "2026-03-07T10:00:00Z", "actor": "dana", "setting": "mfa_required",
         "old_value": "true", "new_value": "false"}],
    8: [{"actor": "alice", "action": "record_read", "times": 2,
         "first": "2026-02-10T09:00:00Z", "last": "2026-02-11T09:00:00Z"},
        {"actor": "bob", "action": "record_update", "times": 1,
         "first": "2026-02-12T09:00:00Z", "last": "2026-02-12T09:00:00Z"},
        {"actor": "carol", "action": "export", "times": 1,
         "first": "2026-02-13T16:00:00Z", "last": "2026-02-13T16:00:00Z"}],
    9: [("record_read", "patient-17", "203.0.113.9"), ("login", None, "203.0.113.9")],
}  # fmt: skip


def _outside_hours(seconds: int) -> bool:
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.hour < 8 or moment.hour >= 18 or moment.weekday() >= 5


@pytest.mark.parametrize(("title", "sql"), questions(), ids=lambda v: v.split(".")[0][:2])
def test_question_runs_as_written_on_both_stores(
    stores: dict[str, list[str]], title: str, sql: str
) -> None:
    on_sqlite, on_postgres = run(stores["sqlite"], sql), run(stores["postgresql"], sql)
    assert on_sqlite == on_postgres
    rows, number = on_sqlite, int(title.split(".")[0])
    assert rows, "every question has an answer in the test data"
    if number in (1, 10):
        assert [(r["actor"], r["action"], r["target"]) for r in rows] == EXPECTED[1]
    elif number == 2:
        assert [(r["actor"], r["action"]) for r in rows] == EXPECTED[2]
    elif number == 4:
        admin = [e for e in EVENTS if e[3] == "admin" and _outside_hours(e[0])]
        assert [r["timestamp"] for r in rows] == sorted(_utc(e[0]) for e in admin)
        assert len(rows) >= 3
    elif number == 6:
        assert [r["target"] for r in rows] == ["bob", "carol", "mfa_required", "bob", "yann", "zoe"]
    elif number == 9:
        assert [(r["action"], r["target"], r["client_address"]) for r in rows] == EXPECTED[9]
    else:
        assert rows == EXPECTED[number]


def test_the_article_query_runs_as_written_on_both_stores(stores: dict[str, list[str]]) -> None:
    sql = article_query()
    assert "attributes['audit.action'] = 'role_update'" in sql
    rows = run(stores["sqlite"], sql)
    assert rows == run(stores["postgresql"], sql)
    assert rows == [
        {"timestamp": _utc(days_ago(10)), "actor": "dana", "target": "zoe",
         "previous_role": "viewer", "new_role": "editor", "outcome": "success"},
    ]  # fmt: skip
