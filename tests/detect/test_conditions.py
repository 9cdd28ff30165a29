"""The condition language on single events: each test, and working hours in a time zone."""

from __future__ import annotations

import calendar
from typing import Any

import pytest

from otaudit.detect.conditions import compile_condition
from otaudit.detect.event import EVENT_COLUMNS, Event, parse_rfc3339_ns


def event(when: str = "2026-12-01T10:00:00Z", **fields: Any) -> Event:
    """An event at ``when`` (UTC) with the given columns; ``attributes`` a dict."""
    parts = (when[0:4], when[5:7], when[8:10], when[11:13], when[14:16], when[17:19])
    ns = calendar.timegm((*(int(x) for x in parts), 0, 0, 0)) * 10**9
    values = {
        "seq": 1,
        "time_unix_nano": ns,
        "received_at": when[:19] + ".000000000Z",
        "pipeline": "otlp",
        "signal": "span",
        "attributes": "{}",
    } | fields
    if isinstance(values["attributes"], dict):
        values["attributes"] = dict(values["attributes"])
    return Event(tuple(values.get(c) for c in EVENT_COLUMNS))


@pytest.mark.parametrize(
    ("spec", "fields", "expected"),
    [
        ({"action": "login"}, {"action": "login"}, True),
        ({"action": "login"}, {"action": "logout"}, False),
        ({"action": {"in": ["a", "b"]}}, {"action": "b"}, True),
        ({"action": {"not_in": ["a", "b"]}}, {"action": "c"}, True),
        ({"action": {"not_equals": "a"}}, {"action": None}, True),
        ({"action": {"matches": "(?i)^LOG"}}, {"action": "login"}, True),
        ({"action": {"matches": "x"}}, {"action": None}, False),
        ({"client_address": {"exists": True}}, {"client_address": ""}, False),
        ({"client_address": {"exists": False}}, {}, True),
        ({"actor": {"same_as": "target"}}, {"actor": "u1", "target": "u1"}, True),
        ({"actor": {"same_as": "target"}}, {"actor": "u1", "target": None}, False),
        ({"actor": {"differs_from": "target"}}, {"actor": "u1", "target": "u2"}, True),
        ({"attributes.audit.sensitive": True}, {"attributes": {"audit.sensitive": "true"}}, True),
        ({"attributes.audit.sensitive": True}, {"attributes": '{"audit.sensitive":"no"}'}, False),
        ({"attributes.n": 3}, {"attributes": {"n": "3"}}, True),
        ({"any": [{"action": "a"}, {"result": "failure"}]}, {"result": "failure"}, True),
        ({"all": [{"action": "a"}, {"result": "failure"}]}, {"result": "failure"}, False),
        ({"not": {"action": "a"}}, {"action": "b"}, True),
        ({"action": "a", "result": {"in": ["x"]}}, {"action": "a", "result": "x"}, True),
    ],
)
def test_tests(spec: dict[str, Any], fields: dict[str, Any], expected: bool) -> None:
    assert compile_condition(spec, "where")(event(**fields)) is expected


HOURS = {
    "from": "08:00",
    "to": "18:00",
    "days": ["mon", "tue", "wed", "thu", "fri"],
    "timezone": "America/New_York",
}


@pytest.mark.parametrize(
    ("when", "outside"),
    [
        ("2026-12-01T13:00:00Z", False),  # Tuesday 08:00 in New York (UTC-5)
        ("2026-12-01T12:59:00Z", True),  # 07:59
        ("2026-12-01T22:59:00Z", False),  # 17:59
        ("2026-12-01T23:00:00Z", True),  # 18:00: the end is exclusive
        ("2026-12-05T15:00:00Z", True),  # Saturday 10:00
        ("2026-07-01T12:30:00Z", False),  # summer time (UTC-4): 08:30
    ],
)
def test_working_hours_in_a_time_zone(when: str, outside: bool) -> None:
    check = compile_condition({"time": {"outside_hours": HOURS}}, "where")
    assert check(event(when)) is outside


def test_overnight_shift_belongs_to_the_day_it_starts() -> None:
    night = {"from": "22:00", "to": "06:00", "days": ["fri"], "timezone": "UTC"}
    within = compile_condition({"time": {"within_hours": night}}, "where")
    assert within(event("2026-12-04T23:00:00Z"))  # Friday 23:00
    assert within(event("2026-12-05T05:59:00Z"))  # Saturday 05:59, Friday's shift
    assert not within(event("2026-12-05T23:00:00Z"))  # Saturday's night is not a shift
    assert not within(event("2026-12-04T05:00:00Z"))  # Friday 05:00 is Thursday's shift


def test_stored_times_parse_to_nanoseconds() -> None:
    assert parse_rfc3339_ns("1970-01-01T00:00:01.000000002Z") == 1_000_000_002
    assert parse_rfc3339_ns("2026-12-01T10:00:00.5Z") == 1796119200_500000000
