"""``otaudit demo`` and the README example run as a new user would run them."""

from __future__ import annotations

import json
import re
from pathlib import Path

from otaudit.dialect import AUDITOR_QUERY
from support import Server, otaudit

README = Path(__file__).parents[2] / "README.md"


def test_demo_tells_the_whole_story(tmp_path: Path) -> None:
    result = otaudit("demo", "--keep", str(tmp_path / "demo"))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    steps = (
        "1. Start otaudit serve",
        "2. Send instrumented traffic",
        "3. What the server",
        "4. Stop the server and verify",
        "5. Monitoring: the alerts",
        "6. The auditor asks",
        "7. The latest signed",
    )
    for step in steps:
        assert step in out
    assert "2b. Requests to an example service" in out
    assert 'otaudit_records_sealed_total{signal="span"} 22.0' in out
    assert 'otaudit_records_dropped_total{reason="not_audit",signal="span"} 22.0' in out
    # The detection rules run in the demo: dave's failed logins then success, alice making
    # carol an admin and carol changing her own role are alerts (sealed log records); changes
    # outside working hours (UTC) add more, depending on when the demo runs.
    listed = otaudit("alerts", "--data", str(tmp_path / "demo"), "--format", "json")
    alerts = json.loads(listed.stdout)
    rules = sorted(a["rule"] for a in alerts if a["rule"] != "admin_change_off_hours")
    assert rules == ["failures_then_success", "privilege_escalation", "privilege_escalation"]
    assert f"OK: {25 + len(alerts)} records" in out
    assert f"{len(alerts)} alert(s)" in out
    assert "4 row(s)" in out
    verify = otaudit("verify", "--data", str(tmp_path / "demo"))
    assert verify.returncode == 0, verify.stderr
    # The example service's records come from otaudit.instrument: actor, result, numbering.
    query = (
        "SELECT action, actor, result, producer_seq FROM audit_records "
        "WHERE service = 'accounts-api' AND producer IS NOT NULL ORDER BY seq"
    )
    rows = otaudit("sql", "--data", str(tmp_path / "demo"), "--format", "csv", query)
    assert rows.stdout.splitlines() == [
        "action,actor,result,producer_seq",
        "login,alice,success,1",
        "login,dave,failure,2",
        "login,dave,failure,3",
        "role_update,alice,success,4",
        "read,bob,success,5",
        "config_change,alice,success,6",
    ]
    gaps = otaudit("gaps", "--data", str(tmp_path / "demo"))
    assert gaps.returncode == 0, gaps.stdout + gaps.stderr


def test_readme_example_runs_against_a_server(server: Server) -> None:
    code = re.search(r"## Instrumenting a service.*?```python\n(.*?)```", README.read_text(), re.S)
    assert code is not None
    source = code.group(1).replace("http://127.0.0.1:4318", server.http_url)
    namespace: dict[str, object] = {}
    exec(compile(source, "README.md", "exec"), namespace)
    namespace["update_user_role"]("alice", "bob", "viewer", "editor")  # type: ignore[operator]
    namespace["provider"].shutdown()  # type: ignore[attr-defined]
    server.stop()
    rows = otaudit("sql", "--data", str(server.data), "--format", "csv",
                   "SELECT actor, action, target, result, service FROM audit_spans")  # fmt: skip
    assert rows.stdout.splitlines() == [
        "actor,action,target,result,service",
        "alice,role_update,bob,success,accounts-api",
    ]
    # The article's query, verbatim, fills every column for the README's record.
    article = otaudit("sql", "--data", str(server.data), "--format", "json", AUDITOR_QUERY)
    assert article.returncode == 0, article.stderr
    (row,) = json.loads(article.stdout)
    assert all(row.values()), row
    assert [row[k] for k in ("actor", "target", "previous_role", "new_role", "outcome")] == [
        "alice",
        "bob",
        "viewer",
        "editor",
        "success",
    ]
