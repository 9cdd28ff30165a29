"""Detection memory is bounded per rule (groups and bytes, and per group), forgets the least
useful groups first, and counts and logs what it forgot (issue 14, finding 5)."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from detect_traffic import DAY, MIN, S
from otaudit.detect.bounds import ITEM_BYTES, OBJECT_BYTES, Bounds, key_bytes, text_bytes
from otaudit.detect.conditions import RuleError
from otaudit.detect.engine import Engine
from otaudit.detect.event import EVENT_COLUMNS, Event
from otaudit.detect.rules import Rule, build_rule, load_rules
from otaudit.detect.state import Finding

NOW = (time.time_ns() // MIN) * MIN
SMALL = Bounds(max_groups=200, max_bytes=256 * 1024, max_group_records=50,
               max_group_bytes=16 * 1024)  # fmt: skip


def event(seq: int, time_ns: int, **fields: Any) -> Event:
    """An event with the given columns, received when it happened."""
    seconds, fraction = divmod(time_ns, S)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{fraction:09d}Z"
    values = {"seq": seq, "time_unix_nano": time_ns, "received_at": stamp,
              "pipeline": "otlp", "signal": "span", "attributes": "{}"} | fields  # fmt: skip
    return Event(tuple(values.get(c) for c in EVENT_COLUMNS))


def failed_login(seq: int, time_ns: int, actor: str, address: str = "10.0.0.9") -> Event:
    return event(seq, time_ns, action="user.login", result="failure", actor=actor,
                 client_address=address)  # fmt: skip


def builtin(name: str) -> list[Rule]:
    return [rule for rule in load_rules() if rule.name == name]


def groups(engine: Engine) -> dict[str, Any]:
    """Each rule's group table (the engine's private state, read to check the bounds)."""
    return {s.rule.name: s.groups for s in engine._states if hasattr(s, "groups")}


def test_a_flood_of_actors_does_not_hide_a_brute_force(caplog: pytest.LogCaptureFixture) -> None:
    # 20 failures for alice within an hour, each behind 100 failures of invented accounts
    # (2,000 in all, ten times the rule's bound): alice's group is kept, the alert raised.
    engine = Engine(builtin("brute_force_user"), SMALL)
    found: list[Finding] = []
    seq = 0
    with caplog.at_level(logging.WARNING, logger="otaudit.detect"):
        for i in range(20):
            for j in range(100):
                seq += 1
                found += engine.feed(failed_login(seq, NOW - 50 * MIN + seq * S, f"x{i}-{j}"))
            seq += 1
            found += engine.feed(failed_login(seq, NOW - 50 * MIN + seq * S, "alice"))
    assert [(f.rule.name, f.group, f.count) for f in found] == [
        ("brute_force_user", {"actor": "alice"}, 20)
    ]
    table = groups(engine)["brute_force_user"]
    assert len(table) <= SMALL.max_groups and table.nbytes <= SMALL.max_bytes
    assert engine.evictions["brute_force_user"] >= 2000 - SMALL.max_groups
    assert caplog.text.count("rule brute_force_user: over its bound of 200 groups") == 1


def test_long_keys_are_bounded_by_bytes() -> None:
    # 16 KiB account names: the byte bound, not the group count, holds them.
    engine = Engine(builtin("brute_force_user"), SMALL)
    for seq in range(300):
        engine.feed(failed_login(seq, NOW - 50 * MIN + seq * S, f"{seq:04d}" + "x" * 16_384))
    table = groups(engine)["brute_force_user"]
    assert table.nbytes <= SMALL.max_bytes and len(table) < SMALL.max_bytes // 16_384
    assert engine.evictions["brute_force_user"] > 250


def test_one_groups_window_keeps_its_newest_records() -> None:
    rule = build_rule({"name": "many", "kind": "threshold", "where": {"action": "a"},
                       "group_by": ["actor"], "threshold": 50, "window": "1h"}, "rule")  # fmt: skip
    engine = Engine([rule], SMALL)
    found: list[Finding] = []
    hour = 60 * MIN
    start = (NOW // hour - 1) * hour  # the 1,000 records fall in one period of the window
    for seq in range(1000):
        found += engine.feed(event(seq, start + seq * S, action="a", actor="bob"))
    (window,) = groups(engine)["many"].values()
    assert len(window.times) == SMALL.max_group_records
    assert window.items[0][0] == 1000 - SMALL.max_group_records  # the newest are kept
    assert [f.count for f in found] == [50]  # one alert per window period, as before


def test_distinct_values_are_kept_as_digests() -> None:
    engine = Engine(builtin("mass_access"), SMALL)
    found: list[Finding] = []
    for seq in range(60):
        found += engine.feed(event(seq, NOW - 9 * MIN + seq * S, action="customer.read",
                                   actor="mallory", target=f"{seq:02d}" + "t" * 100_000,
                                   attributes='{"audit.sensitive": "true"}'))  # fmt: skip
    assert [f.count for f in found] == [50]  # 50 distinct 100 KB targets still count
    table = groups(engine)["mass_access"]
    assert table.nbytes < 32 * 1024 and engine.evictions["mass_access"] == 0


def test_established_baselines_outlast_a_flood_of_newcomers() -> None:
    # bob has acted for 8 days from one address; then 1,000 new actors arrive, then bob
    # acts from a new address: still reported (learning groups are forgotten first).
    engine = Engine(builtin("new_client_address"), SMALL)
    seq = 0
    for day in range(8):
        seq += 1
        engine.feed(event(seq, NOW - 10 * DAY + day * DAY, action="doc.update", result="ok",
                          actor="bob", client_address="10.0.0.1"))  # fmt: skip
    for i in range(1000):
        seq += 1
        engine.feed(event(seq, NOW - 2 * DAY + i * S, action="doc.update", result="ok",
                          actor=f"new{i}", client_address="10.0.0.2"))  # fmt: skip
    found = engine.feed(event(seq + 1, NOW - DAY, action="doc.update", result="ok",
                              actor="bob", client_address="203.0.113.7"))  # fmt: skip
    assert [(f.group, f.value) for f in found] == [({"actor": "bob"}, "203.0.113.7")]
    assert engine.evictions["new_client_address"] >= 1000 - SMALL.max_groups


def test_steady_services_outlast_a_flood_of_one_record_services() -> None:
    engine = Engine(builtin("producer_silent"), SMALL)
    seq = 0
    for minute in range(0, 8 * 24 * 60, 2):  # billing: every two minutes for 8 days
        seq += 1
        engine.feed(event(seq, NOW - 9 * DAY + minute * MIN, service="billing", action="run"))
        if minute % 10 == 0 and minute > 7 * 24 * 60:  # and 1,000 services once each
            for i in range(7):
                seq += 1
                at = NOW - 9 * DAY + minute * MIN + i
                engine.feed(event(seq, at, service=f"svc{seq}", action="run"))
    assert "billing" in {key[0] for key in groups(engine)["producer_silent"]}
    found = engine.tick(NOW - 9 * DAY + 8 * DAY + 40 * MIN)
    assert [f.group for f in found] == [{"service": "billing"}]
    assert engine.evictions["producer_silent"] > 0


def test_the_byte_count_is_kept_exactly() -> None:
    # The estimate is maintained incrementally; it must equal a recount after any mix of
    # adds, forgetting old records, evictions and pruning.
    engine = Engine(load_rules(), SMALL)
    for seq in range(3000):
        at = NOW - 3 * DAY + seq * 30 * S
        engine.feed(event(seq, at, action="user.login", result="failure" if seq % 3 else "ok",
                          actor=f"a{seq % 400}" * (1 + seq % 7), service=f"s{seq % 250}",
                          client_address=f"10.0.{seq % 5}.{seq % 251}"))  # fmt: skip
    for name, table in groups(engine).items():
        recount = 0
        for key, group in table.items():
            recount += key_bytes(key)
            if hasattr(group, "times"):  # a window
                assert group.nbytes == 3 * OBJECT_BYTES + sum(
                    ITEM_BYTES + text_bytes(v) for _, v in group.items
                ), name
            recount += group.nbytes
        assert table.nbytes == recount, name
        assert len(table) <= SMALL.max_groups, name


def test_a_threshold_beyond_what_a_window_keeps_is_refused() -> None:
    spec = {"name": "huge", "kind": "threshold", "where": {"action": "a"},
            "group_by": ["actor"], "threshold": 10_001, "window": "1h"}  # fmt: skip
    with pytest.raises(RuleError, match=r"rule\.threshold: at most 10000 .* got 10001"):
        build_rule(spec, "rule")


def test_a_rule_may_set_its_own_bounds() -> None:
    spec = {"name": "many", "kind": "threshold", "where": {"action": "a"},
            "group_by": ["actor"], "threshold": 5, "window": "1h", "max_groups": 10,
            "max_bytes": "1MiB"}  # fmt: skip
    engine = Engine([build_rule(spec, "rule")])
    for seq in range(50):
        engine.feed(event(seq, NOW - 50 * MIN + seq * S, action="a", actor=f"u{seq}"))
    assert len(groups(engine)["many"]) <= 10 and engine.evictions["many"] >= 40
    for bad in ("lots", "1TB", 1024, True):
        with pytest.raises(RuleError, match=r"rule\.max_bytes: expected a size of at least"):
            build_rule(spec | {"max_bytes": bad}, "rule")
    # How much a rule may remember is not part of what it finds: alert ids stay the same.
    plain = {k: v for k, v in spec.items() if not k.startswith("max_")}
    assert build_rule(spec, "rule").fingerprint == build_rule(plain, "rule").fingerprint
