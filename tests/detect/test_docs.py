"""The evidence queries of docs/detection.md, run as written on both stores."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from conftest import query_args
from detect_traffic import DAY, MIN, anchor, background, entries, scenarios
from otaudit import datadir
from otaudit.access import Reader
from otaudit.detect.alerts import alert_entry, triage_entry
from otaudit.detect.rules import load_rules
from otaudit.detect.run import detect_history
from support import otaudit

DOCS = Path(__file__).resolve().parents[2] / "docs" / "detection.md"
NOW = (time.time_ns() // MIN) * MIN


def test_evidence_queries(store_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    trail, backlog = re.findall(r"```sql\n(.*?)```", DOCS.read_text(), re.S)
    start = NOW - 40 * DAY
    a = anchor(start, NOW)
    acts = background(start, NOW, heartbeat_s=None) + scenarios(a)["brute_force_user"]
    acts += [
        act
        for s in scenarios(a - 14 * DAY).values()
        for act in s
        if act.attributes["audit.action"] == "role_update"
    ]  # two weeks old
    store = datadir.open_store(tmp_path, store_url, readonly=False)
    try:
        store.append(list(entries(sorted(acts, key=lambda x: x.received_ns))))
        findings = detect_history(store, load_rules(), since_ns=start, now_ns=NOW).findings
        store.append([alert_entry(f) for f in findings])
        brute = next(f for f in findings if f.rule.name == "brute_force_user")
        store.append([triage_entry(Reader("ana"), brute.alert_id, "resolved", "locked u05")])
        escalation = next(f for f in findings if f.rule.name == "privilege_escalation")
        off_hours = next(f for f in findings if f.rule.name == "admin_change_off_hours")
        store.append(
            [
                triage_entry(Reader("ana"), escalation.alert_id, "resolved", "approved"),
                triage_entry(Reader("ana"), off_hours.alert_id, "investigating", "asked"),
            ]
        )
    finally:
        store.close()
    old = [f for f in findings if f.time_ns < NOW - 7 * DAY]
    assert {f.rule.name for f in findings} == {"brute_force_user", "privilege_escalation",
                                                "admin_change_off_hours"}  # fmt: skip
    assert len(old) == 3

    def sql(text: str) -> list[dict[str, object]]:
        result = otaudit("sql", "--store", store_url, *query_args(store_url, request),
                         "--data", str(tmp_path), "--format", "json", text)  # fmt: skip
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)  # type: ignore[no-any-return]

    rows = sql(trail)
    assert [r["alert_id"] for r in rows] == [f.alert_id for f in findings]
    decided = {r["alert_id"]: (r["triaged_by"], r["decision"], r["note"]) for r in rows
               if r["decision"] is not None}  # fmt: skip
    assert decided == {brute.alert_id: ("ana", "resolved", "locked u05"),
                       escalation.alert_id: ("ana", "resolved", "approved"),
                       off_hours.alert_id: ("ana", "investigating", "asked")}  # fmt: skip
    # Two weeks old: the other escalation (no decision) and the one being investigated.
    assert sql(backlog) == [{"severity": "high", "still_open": 1},
                            {"severity": "medium", "still_open": 1}]  # fmt: skip
