"""Fuzzing rule files: any YAML gives rules or a RuleError naming where, never a traceback;
and rules built from odd specs judge odd records without raising."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otaudit.detect.conditions import RuleError
from otaudit.detect.engine import Engine
from otaudit.detect.event import EVENT_COLUMNS, Event
from otaudit.detect.rules import build_rule, load_rules

FIELDS = ["action", "actor", "target", "result", "client_address", "time", "attributes.k",
          "any", "all", "not", "actr", "seq"]  # fmt: skip
OPS = ["equals", "not_equals", "in", "not_in", "matches", "exists", "same_as", "differs_from",
       "outside_hours", "within_hours", "like"]  # fmt: skip
KEYS = ["name", "kind", "severity", "where", "then", "group_by", "threshold", "window",
        "distinct", "field", "baseline", "learning", "after", "min_records", "summary",
        "enabled", "description", "from", "to", "days", "timezone"]  # fmt: skip

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 100), st.floats(allow_nan=False),
    st.sampled_from(["login", "failure", "10m", "0s", "actor", "(", "08:00", "25:00", "mon",
                     "UTC", "Mars/Olympus", "threshold", "match", "new_value", "silence",
                     "sequence", "{count}", "{nope}", "high", "x" * 70]),
    st.text(max_size=8),
)  # fmt: skip
values: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(FIELDS + OPS + KEYS), inner, max_size=4),
    ),
    max_leaves=20,
)
rule_specs = st.fixed_dictionaries(
    {"name": st.sampled_from(["r1", "r2", "brute_force_user"])},
    optional={key: values for key in KEYS if key != "name"},
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=st.one_of(values, st.fixed_dictionaries({"rules": st.lists(rule_specs, max_size=3)})))
def test_any_rule_file_loads_or_says_where(tmp_path: Path, doc: Any) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(doc))
    try:
        rules = load_rules((path,))
    except RuleError as exc:
        assert str(exc)
        return
    assert rules


def _event(values: dict[str, Any]) -> Event:
    row = {"seq": 1, "time_unix_nano": 1_764_288_000_000_000_000,
           "received_at": "2025-11-28T00:00:00.000000000Z", "pipeline": "otlp",
           "signal": "span", "attributes": "{}"} | values  # fmt: skip
    return Event(tuple(row.get(c) for c in EVENT_COLUMNS))


texts = st.one_of(st.none(), st.sampled_from(["", "login", "failure", "success", "u1", "admin"]))


@given(
    spec=rule_specs,
    records=st.lists(
        st.fixed_dictionaries(
            {
                c: texts
                for c in ("action", "actor", "target", "result", "client_address", "service")
            },
            optional={
                "attributes": st.dictionaries(
                    st.sampled_from(["k", "audit.new_value"]), st.text(max_size=5), max_size=2
                )
            },
        ),
        max_size=30,
    ),
)
def test_valid_rules_judge_any_records(spec: dict[str, Any], records: list[dict[str, Any]]) -> None:
    try:
        rule = build_rule(spec, "fuzz")
    except RuleError:
        return
    engine = Engine([rule])
    for i, record in enumerate(records):
        engine.feed(_event(record | {"seq": i, "time_unix_nano": 1_764_288_000_000_000_000 + i}))
    engine.tick(1_764_288_000_000_000_000 + 10**15)
