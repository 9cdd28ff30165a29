"""Each built-in rule on realistic traffic: it finds its attack, and nothing in ordinary days
or in activity just under its threshold. The ledgers are built through the library with chosen
receive times (silence is about receive time); ``test_streaming`` sends through the SDK."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from detect_traffic import (
    DAY,
    HOUR,
    MIN,
    PAUSE,
    SILENCE,
    Act,
    anchor,
    background,
    entries,
    heartbeat,
    near_misses,
    scenarios,
)
from otaudit.detect.rules import load_rules
from otaudit.detect.run import detect_history
from otaudit.detect.state import Finding
from otaudit.store.sqlite import SQLiteStore

NOW = (time.time_ns() // MIN) * MIN
START = NOW - 11 * DAY
A = anchor(START, NOW)


def _ledger(path: Path, acts: list[Act]) -> SQLiteStore:
    store = SQLiteStore(path)
    batch = list(entries(sorted(acts, key=lambda a: a.received_ns)))
    for at in range(0, len(batch), 5000):
        store.append(batch[at : at + 5000])
    return store


def _findings(store: SQLiteStore, since_ns: int | None = START) -> list[Finding]:
    return detect_history(store, load_rules(), since_ns=since_ns, now_ns=NOW).findings


@pytest.fixture(scope="module")
def attacked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SQLiteStore]:
    gap = (A + SILENCE[0], A + SILENCE[1])
    acts = background(START, NOW, gaps=[gap])
    for scenario in scenarios(A).values():
        acts += scenario
    store = _ledger(tmp_path_factory.mktemp("attacked") / "ledger.db", acts)
    yield store
    store.close()


@pytest.fixture(scope="module")
def found(attacked: SQLiteStore) -> dict[str, list[Finding]]:
    by_rule: dict[str, list[Finding]] = {}
    for f in _findings(attacked):
        by_rule.setdefault(f.rule.name, []).append(f)
    return by_rule


def test_ordinary_days_raise_nothing(tmp_path: Path) -> None:
    store = _ledger(tmp_path / "ledger.db", background(START, NOW))
    try:
        assert store.tree_size() > 15_000
        assert _findings(store) == []
    finally:
        store.close()


def test_activity_just_under_every_threshold_raises_nothing(tmp_path: Path) -> None:
    pause = [(A + PAUSE[0], A + PAUSE[1])]  # the billing job pauses 25 minutes, not 30
    store = _ledger(tmp_path / "ledger.db", background(START, NOW, gaps=pause) + near_misses(A))
    try:
        assert _findings(store) == []
    finally:
        store.close()


def test_every_rule_finds_its_attack(found: dict[str, list[Finding]]) -> None:
    assert set(found) == {r.name for r in load_rules()}


def test_brute_force(found: dict[str, list[Finding]]) -> None:
    (f,) = found["brute_force_user"]  # 25 failures: one alert at the 20th, 5 left over
    assert f.group == {"actor": "u05"}
    assert f.count == 20 and len(f.evidence) == 20
    assert f.time_ns == A + 19 * MIN
    assert f.summary == "20 failed logins for account u05 within 60m"


def test_password_spray(found: dict[str, list[Finding]]) -> None:
    (f,) = found["password_spray"]
    assert f.group == {"client_address": "203.0.113.50"} and f.count == 5
    assert f.summary == "failed logins from 203.0.113.50 against 5 accounts within 10m"


def test_failures_then_success(found: dict[str, list[Finding]]) -> None:
    (f,) = found["failures_then_success"]
    assert f.group == {"actor": "u07"} and f.count == 6 and len(f.evidence) == 7
    assert "198.51.100.77" in f.summary


def test_privilege_escalation(found: dict[str, list[Finding]]) -> None:
    groups = [f.group for f in found["privilege_escalation"]]
    assert groups == [{"actor": "u01", "target": "u20"}, {"actor": "u15", "target": "u15"}]
    assert found["privilege_escalation"][0].summary == "u01 changed the role of u20 to admin"


def test_admin_change_off_hours(found: dict[str, list[Finding]]) -> None:
    (f,) = found["admin_change_off_hours"]
    assert f.group == {"actor": "u01"} and f.time_ns == A - 11 * HOUR


def test_mass_access(found: dict[str, list[Finding]]) -> None:
    (f,) = found["mass_access"]
    assert f.group == {"actor": "u30"} and f.count == 50


def test_sensitive_new_reader(found: dict[str, list[Finding]]) -> None:
    readers = Counter(f.value for f in found["sensitive_new_reader"])
    # u25 on one account; u30's mass read is new on each of the 60 accounts it read.
    assert readers == {"u25": 1, "u30": 60}
    (f,) = [f for f in found["sensitive_new_reader"] if f.value == "u25"]
    assert f.group == {"target": "acct-03-0"}


def test_new_client_address(found: dict[str, list[Finding]]) -> None:
    values = sorted((f.group["actor"], f.value) for f in found["new_client_address"])
    # u12's new address, and u07's successful login after the failures.
    assert values == [("u07", "198.51.100.77"), ("u12", "192.0.2.200")]


def test_producer_silent(found: dict[str, list[Finding]]) -> None:
    (f,) = found["producer_silent"]
    assert f.group == {"service": "billing-api"}
    last_beat = max(t for t in range(START, A + SILENCE[0], 60_000_000_000))
    assert f.time_ns == last_beat + 30 * MIN + 200_000_000
    assert f.summary == (
        "service billing-api has sent no audit records for 30m, where it usually sends "
        "(at least 30 in the same 30m a day and a week earlier)"
    )


def test_silence_that_begins_at_a_quiet_hour_is_found_when_the_service_is_usually_busy(
    tmp_path: Path,
) -> None:
    # A job that reports every 10 minutes at night and every minute by day dies at 03:00:
    # too quiet at 03:00 to call it silence, but by 08:30 it has missed half an hour of work.
    day0 = NOW - NOW % DAY - 9 * DAY
    died = day0 + 8 * DAY + 3 * HOUR
    beats = []
    t = day0
    while t < died:
        beats.append(heartbeat(t))
        hour = t % DAY // HOUR
        t += MIN if 8 <= hour < 20 else 10 * MIN
    store = _ledger(tmp_path / "ledger.db", beats)
    try:
        (f,) = detect_history(store, load_rules(), since_ns=None, now_ns=died + DAY).findings
    finally:
        store.close()
    assert f.rule.name == "producer_silent"
    assert died + 5 * HOUR + 30 * MIN <= f.time_ns <= died + 5 * HOUR + 36 * MIN
    assert f.trigger_seq == len(beats) - 1


def test_verification_failed(found: dict[str, list[Finding]]) -> None:
    # otaudit's own record only; clients' records claiming the same are near misses.
    (f,) = found["verification_failed"]
    assert f.rule.severity == "critical"
    assert f.summary.endswith(": checkpoint at tree size 40 is not consistent")


def test_alert_ids_are_stable_and_distinct(attacked: SQLiteStore) -> None:
    first = [f.alert_id for f in _findings(attacked)]
    again = [f.alert_id for f in _findings(attacked)]
    assert first == again and len(set(first)) == len(first)


def test_since_judges_from_a_point_with_the_history_before_it(attacked: SQLiteStore) -> None:
    # Starting a day before the attacks, with 30 days of lookback read first, finds the same.
    everything = {f.alert_id for f in _findings(attacked) if f.time_ns >= A - DAY}
    later = {f.alert_id for f in _findings(attacked, since_ns=A - DAY)}
    assert later == everything and len(later) > 70


def test_a_weekday_service_that_stops_on_friday_is_found_on_monday(tmp_path: Path) -> None:
    monday = NOW - NOW % DAY - ((NOW // DAY + 3) % 7) * DAY - 14 * DAY  # two weeks back
    beats = [heartbeat(day + t)
             for day in range(monday, monday + 12 * DAY, DAY) if (day // DAY + 3) % 7 < 5
             for t in range(8 * HOUR, 18 * HOUR, MIN)]  # fmt: skip
    last_friday = monday + 11 * DAY
    store = _ledger(tmp_path / "ledger.db", beats)
    try:
        found = detect_history(store, load_rules(), since_ns=None, now_ns=last_friday + 5 * DAY)
    finally:
        store.close()
    (f,) = found.findings  # not on the weekend: a week earlier it was quiet then too
    next_monday = last_friday + 3 * DAY
    assert next_monday + 8 * HOUR + 30 * MIN <= f.time_ns <= next_monday + 8 * HOUR + 36 * MIN


def test_a_refused_or_failed_role_change_is_no_escalation(tmp_path: Path) -> None:
    def change(t: int, result: str | None) -> Act:
        attributes = {
            "audit.action": "role_update",
            "enduser.id": "u01",
            "audit.target_user": "u20",
            "audit.new_value": "owner",
            **({} if result is None else {"audit.result": result}),
        }
        return Act(t, "accounts-api", "user.role.update", attributes)

    results = ("denied", "failure", "Forbidden", None, "success")
    store = _ledger(tmp_path / "ledger.db", [change(A + i * MIN, r) for i, r in enumerate(results)])
    try:
        escalations = [f for f in _findings(store) if f.rule.name == "privilege_escalation"]
    finally:
        store.close()
    # Without a result the change may have happened: it counts, as a success does.
    assert [f.time_ns for f in escalations] == [A + 3 * MIN, A + 4 * MIN]
    assert escalations[1].summary == "u01 changed the role of u20 to owner"
