"""The user SQL dialect: the article's auditor query runs as written on the SQLite store."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from otaudit.dialect import AUDITOR_QUERY, to_sqlite
from otaudit.errors import QueryError
from otaudit.store.sqlite import SQLiteStore
from support import Server, otaudit

ARTICLE_QUERY = """SELECT
    timestamp,
    attributes['enduser.id'] AS actor,
    attributes['audit.target_user'] AS target,
    attributes['audit.old_value'] AS previous_role,
    attributes['audit.new_value'] AS new_role,
    attributes['audit.result'] AS outcome
FROM audit_spans
WHERE attributes['audit.action'] = 'role_update'
    AND timestamp >= NOW() - INTERVAL '90 days'
ORDER BY timestamp DESC;"""


def test_the_library_holds_the_article_query_verbatim() -> None:
    assert AUDITOR_QUERY == ARTICLE_QUERY


NATIVE_QUERY = """SELECT timestamp, actor, target,
    attributes ->> '$."audit.old_value"' AS previous_role,
    attributes ->> '$."audit.new_value"' AS new_role, result AS outcome
FROM audit_spans WHERE action = 'role_update'
  AND time_unix_nano >= (unixepoch('now', '-90 days') * 1000000000)
ORDER BY time_unix_nano DESC"""


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (
            "SELECT attributes['a.b'] FROM t",
            """SELECT json_extract(attributes, '$."a.b"') FROM t""",
        ),
        (
            "SELECT r.resource ['k'] FROM t r",
            """SELECT json_extract(r.resource, '$."k"') FROM t r""",
        ),
        ("SELECT 'attributes[''k'']' FROM t", "SELECT 'attributes[''k'']' FROM t"),
        ('SELECT "attributes" FROM t', 'SELECT "attributes" FROM t'),
        ("SELECT NOW()", "SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"),
        (
            "WHERE timestamp >= now() - interval '12 hours'",
            "WHERE timestamp >= strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-12 hours')",
        ),
        (
            "WHERE timestamp < CURRENT_TIMESTAMP + INTERVAL '1 week'",
            "WHERE timestamp < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '+7.0 days')",
        ),
        ("SELECT now_column FROM t -- NOW()", "SELECT now_column FROM t -- NOW()"),
        (
            "SELECT r.attributes['audit.action'] FROM t r WHERE attributes['audit.action'] = 'x'",
            "SELECT r.action FROM t r WHERE action = 'x'",
        ),
        (
            "WITH t AS (SELECT attributes FROM x) SELECT attributes['audit.action'] FROM t",
            "WITH t AS (SELECT attributes FROM x)"
            " SELECT json_extract(attributes, '$.\"audit.action\"') FROM t",
        ),
        (
            "SELECT resource['audit.action'] FROM t",
            "SELECT json_extract(resource, '$.\"audit.action\"') FROM t",
        ),
    ],
    ids=[
        "attribute",
        "qualified-resource",
        "inside-string",
        "quoted-identifier",
        "now",
        "now-minus-interval",
        "current-timestamp-plus-week",
        "comment",
        "action-column",
        "action-in-a-cte",
        "action-of-resource",
    ],
)
def test_translation(sql: str, expected: str) -> None:
    assert to_sqlite(sql) == expected


def test_bad_interval_is_a_clear_error() -> None:
    with pytest.raises(QueryError, match="INTERVAL '90 fortnights': expected 'N unit'"):
        to_sqlite("SELECT NOW() - INTERVAL '90 fortnights'")


def _role_update(user: str, target: str, days_ago: float) -> dict[str, object]:
    start = time.time_ns() - int(days_ago * 86400e9)
    attrs = {
        "audit.action": "role_update",
        "enduser.id": user,
        "audit.target_user": target,
        "audit.old_value": "viewer",
        "audit.new_value": "editor",
        "audit.result": "success",
    }
    return {
        "traceId": f"{abs(hash((user, target, days_ago))) % 16**32:032x}",
        "spanId": f"{abs(hash((target, days_ago))) % 16**16:016x}",
        "name": "user.role.update",
        "startTimeUnixNano": str(start),
        "attributes": [{"key": k, "value": {"stringValue": v}} for k, v in attrs.items()],
    }


def test_the_article_query_runs_as_written(server: Server) -> None:
    spans = [
        _role_update("alice", "bob", 1),
        _role_update("alice", "carol", 30),
        _role_update("mallory", "mallory", 89),
        _role_update("alice", "dave", 200),  # outside the 90 days
    ]
    body = {"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]}
    response = httpx.post(
        f"{server.http_url}/v1/traces", content=json.dumps(body),
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    assert response.status_code == 200
    article = otaudit("sql", "--data", str(server.data), "--format", "json", ARTICLE_QUERY)
    assert article.returncode == 0, article.stderr
    rows = json.loads(article.stdout)
    assert [(r["actor"], r["target"]) for r in rows] == [
        ("alice", "bob"), ("alice", "carol"), ("mallory", "mallory"),
    ]  # fmt: skip
    assert list(rows[0]) == ["timestamp", "actor", "target", "previous_role", "new_role", "outcome"]
    native = otaudit("sql", "--data", str(server.data), "--format", "json", NATIVE_QUERY)
    assert native.returncode == 0, native.stderr
    assert json.loads(native.stdout) == rows


def test_the_article_query_is_one_index_range_scan_in_its_order(tmp_path: Path) -> None:
    SQLiteStore(tmp_path / "ledger.db").close()
    conn = sqlite3.connect(tmp_path / "ledger.db")
    try:
        plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + to_sqlite(AUDITOR_QUERY))]
    finally:
        conn.close()
    assert plan == ["SEARCH r USING INDEX records_action_timestamp (action=? AND timestamp>?)"]
