"""Rule patterns run on RE2: a pattern that backtracks in Python's ``re`` costs one record
linear time, patterns RE2 cannot run are refused naming the rule, the field and the
reason, and the built-in patterns find what they found before (issue 14, finding 8)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from detect_traffic import MIN, S
from otaudit.detect.conditions import RuleError, compile_condition
from otaudit.detect.engine import Engine
from otaudit.detect.event import EVENT_COLUMNS, Event
from otaudit.detect.rules import builtin_specs, load_rules
from support import otaudit

CATASTROPHIC = r"^([a-z0-9]+\s?)*$"
HOSTILE = "a" * 39 + "!"  # 40 characters: 2^39 ways for Python's re to fail
NOW = (time.time_ns() // MIN) * MIN
RULES = f"""\
rules:
  - name: odd_target
    kind: match
    severity: low
    where:
      target: {{matches: '{CATASTROPHIC}'}}
"""


def event(seq: int, time_ns: int, **fields: Any) -> Event:
    """An event with the given columns (received when it happened)."""
    seconds, fraction = divmod(time_ns, 1_000_000_000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{fraction:09d}Z"
    values = {"seq": seq, "time_unix_nano": time_ns, "received_at": stamp,
              "pipeline": "otlp", "signal": "span", "attributes": "{}"} | fields  # fmt: skip
    return Event(tuple(values.get(c) for c in EVENT_COLUMNS))


def test_a_catastrophic_pattern_costs_one_record_linear_time(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    engine = Engine(load_rules((path,)))
    started = time.monotonic()
    assert engine.feed(event(0, NOW - 30 * MIN, action="doc.read", target=HOSTILE)) == []
    assert time.monotonic() - started < 0.5
    # A brute force after it is still found.
    found = []
    for i in range(20):
        at = NOW - 20 * MIN + i * 10 * S
        found += engine.feed(event(i + 1, at, action="user.login", result="failure",
                                   actor="bob", client_address="10.0.0.9"))  # fmt: skip
    assert [f.rule.name for f in found] == ["brute_force_user"]


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (r"(a)\1", "invalid escape sequence: \\1"),
        ("(?=admin)", "invalid perl operator: (?="),
        ("(?<!x)admin", "invalid perl operator: (?<"),
        ("a{2000}", "invalid repetition size: {2000}"),
    ],
)
def test_patterns_re2_cannot_run_are_refused(tmp_path: Path, pattern: str, reason: str) -> None:
    rule = {"name": "odd", "kind": "match", "where": {"attributes.x": {"matches": pattern}}}
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"rules": [rule]}))
    with pytest.raises(RuleError) as refused:
        load_rules((path,), builtin=False)
    message = str(refused.value)
    assert message.startswith(f"{path}: rules[0] (odd).where.attributes.x.matches: invalid")
    assert reason in message and "RE2" in message


def test_rules_check_refuses_a_backreference(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES.replace(CATASTROPHIC, r"^(\w+)-\1$"))
    checked = otaudit("rules", "check", str(path))
    assert checked.returncode == 2
    assert "rules[0] (odd_target).where.target.matches: invalid regular expression" in (
        checked.stderr
    )
    assert "RE2" in checked.stderr


def _builtin_patterns() -> list[str]:
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "matches":
                    found.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(builtin_specs())
    return sorted(set(found))


PATTERNS = _builtin_patterns()
WORDS = ["login", "LogIn", "user.login", "auth:signin", "sign_in", "authenticate", "x_logon",
         "failure", "Failed", "denied", "unauthorised", "success", "OK", "granted", "role",
         "group-member", "admin", "org_owner", "adminton", "super_admin", "read", "export",
         "PII", "phi", "confidential", "token", "api_key", "password_reset", "user_create",
         "K", "\u212a", "\u017f", "\u00e9", " ", ".", "-", "_", ":"]  # fmt: skip


CHECKS = [(p, compile_condition({"action": {"matches": p}}, "where")) for p in PATTERNS]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(WORDS) | st.text(max_size=3), max_size=5).map("".join))
def test_builtin_patterns_match_as_python_re_did(value: str) -> None:
    # Python's ``$`` also matches before a final newline, RE2's only at the end (below);
    # Python's (?i) takes the dotted capital I for an i, RE2 does not (docs/detection.md).
    value = value.replace("\n", " ").replace("\u0130", "I")
    for pattern, check in CHECKS:
        expected = re.search(pattern, value) is not None
        assert check(event(0, NOW, action=value)) is expected, (pattern, value)


def test_dollar_is_the_end_of_the_text() -> None:
    check = compile_condition({"action": {"matches": "(?i)login$"}}, "where")
    assert check(event(0, NOW, action="user.login"))
    assert not check(event(0, NOW, action="user.login\n"))  # Python's re: a match


def test_builtin_patterns_compile() -> None:
    assert len(PATTERNS) >= 5
    for pattern in PATTERNS:
        compile_condition({"action": {"matches": pattern}}, "where")


def test_a_long_value_is_searched_but_not_remembered() -> None:
    check = compile_condition({"action": {"matches": "login$"}}, "where")
    long = "x" * 1_000_000 + "login"
    assert check(event(0, NOW, action=long))
    assert not check(event(1, NOW, action=long[:-1]))
    cells = [c.cell_contents for c in check.__closure__ or () if isinstance(c.cell_contents, dict)]
    assert cells == [{}]  # neither million-character value is kept
