"""Rule files: validated with messages that name the file, the rule and the key; an empty or
invalid file fails closed (``serve`` does not start, ``detect`` does not run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from otaudit.detect.conditions import RuleError
from otaudit.detect.rules import builtin_specs, load_rules
from support import otaudit

GOOD = """\
rules:
  - name: export_burst
    kind: threshold
    severity: low
    where:
      action: {in: [customer.export, report.download]}
      not: {result: failure}
    group_by: [actor]
    threshold: 3
    window: 5m
    summary: "{actor} exported {count} times within {window}"
"""


def write(tmp_path: Path, text: str, name: str = "rules.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_file_adds_rules_and_changes_built_in_ones(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        GOOD
        + """\
  - name: brute_force_user
    threshold: 50
  - name: producer_silent
    enabled: false
""",
    )
    rules = {r.name: r for r in load_rules((path,))}
    assert len(rules) == len(builtin_specs())  # one added, one turned off
    assert rules["brute_force_user"].threshold == 50
    assert rules["brute_force_user"].window_ns == 3600 * 10**9  # the rest stays built in
    assert "producer_silent" not in rules and "export_burst" in rules
    changed = load_rules((path,))[0].fingerprint
    assert changed != load_rules()[0].fingerprint  # a changed rule gives new alert ids


def test_only_the_files_rules(tmp_path: Path) -> None:
    rules = load_rules((write(tmp_path, GOOD),), builtin=False)
    assert [r.name for r in rules] == ["export_burst"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the file defines no rules"),
        ("# nothing but a comment\n", "the file defines no rules"),
        ("rules: []\n", "the file defines no rules"),
        ("rules:\n  - name: [\n", "not valid YAML"),
        ("- name: x\n", "expected a mapping with one key, `rules:`"),
        ("rules: {name: x}\n", "expected a mapping with one key, `rules:`"),
        ("rules:\n  - name: Bad Name\n", "rules[0].name: expected a name"),
        (
            "rules:\n  - name: a\n    kind: match\n    where: {action: x}\n  - name: a\n",
            "rules[1].name: rule 'a' is defined twice",
        ),
        ("rules:\n  - name: a\n    kind: maybe\n", "rules[0] (a).kind: expected one of match"),
        (
            "rules:\n  - name: a\n    kind: threshold\n    where: {action: x}\n",
            "a threshold rule needs 'group_by', 'threshold', 'window'",
        ),
        (
            "rules:\n  - name: a\n    kind: match\n    where: {action: x}\n    window: 5m\n",
            "unknown key 'window' for a match rule",
        ),
        (
            "rules:\n  - name: a\n    kind: match\n    where: {actr: x}\n",
            "rules[0] (a).where.actr: unknown field 'actr'",
        ),
        (
            "rules:\n  - name: a\n    kind: match\n    where: {action: {matches: '(['}}\n",
            "where.action.matches: invalid regular expression",
        ),
        (
            "rules:\n  - name: a\n    kind: match\n    where: {action: {like: x}}\n",
            "where.action.like: unknown test 'like'",
        ),
        (
            "rules:\n  - name: a\n    kind: match\n    where: {action: {in: []}}\n",
            "where.action.in: expected a non-empty list",
        ),
        (
            "rules:\n  - name: a\n    kind: match\n    where: {}\n",
            "where: a condition is a non-empty",
        ),
        (
            "rules:\n  - name: a\n    kind: match\n    where:\n      time: {outside_hours: "
            "{timezone: Mars/Olympus}}\n",
            "timezone: unknown time zone 'Mars/Olympus'",
        ),
        (
            "rules:\n  - name: a\n    kind: match\n    where:\n      time: {outside_hours: "
            "{from: '25:00'}}\n",
            "outside_hours.from: expected a time of day HH:MM",
        ),
        (
            "rules:\n  - name: a\n    kind: match\n    where:\n      time: {outside_hours: "
            "{days: [mon, someday]}}\n",
            "days[1]: 'someday' is not a day",
        ),
        (
            "rules:\n  - name: a\n    kind: threshold\n    where: {action: x}\n"
            "    group_by: [actor]\n    threshold: 0\n    window: 5m\n",
            "threshold: expected a whole number of at least 1",
        ),
        (
            "rules:\n  - name: a\n    kind: threshold\n    where: {action: x}\n"
            "    group_by: [actor]\n    threshold: 3\n    window: 5 minutes\n",
            "window: '5 minutes' is not a duration",
        ),
        (
            "rules:\n  - name: a\n    kind: match\n    severity: urgent\n    where: {action: x}\n",
            "severity: expected one of low, medium, high, critical",
        ),
        (
            "rules:\n  - name: a\n    kind: match\n    where: {action: x}\n    summary: '{who}'\n",
            "summary: unknown placeholder {who}",
        ),
        (
            "rules:\n  - name: brute_force_user\n    threshold: many\n",
            "brute_force_user).threshold: expected a whole number",
        ),
        (
            "rules:\n  - name: a\n    kind: match\n    where: {action: x}\n    enabled: no-ish\n",
            "enabled: expected true or false",
        ),
    ],
)
def test_invalid_files_are_refused_with_a_precise_message(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(RuleError) as raised:
        load_rules((path,))
    assert message in str(raised.value)
    assert str(path) in str(raised.value)


def test_turning_every_rule_off_is_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "rules:\n"
        + "".join(f"  - name: {spec['name']}\n    enabled: false\n" for spec in builtin_specs()),
    )
    with pytest.raises(RuleError, match="no detection rule is enabled"):
        load_rules((path,))


def test_cli_checks_rule_files_and_fails_closed(tmp_path: Path) -> None:
    good, bad = write(tmp_path, GOOD), write(tmp_path, "rules:\n", "empty.yaml")
    ok = otaudit("rules", "check", str(good))
    assert ok.returncode == 0 and "export_burst" in ok.stdout, ok.stderr
    refused = otaudit("rules", "check", str(bad))
    assert refused.returncode == 2
    assert (
        refused.stderr.strip() == f"otaudit: error: {bad}: the file defines no rules "
        "(expected `rules:` with a list)"
    )
    missing = otaudit("rules", "check", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "cannot read rule file" in missing.stderr
    # serve does not start on a broken rule file: it would be running without the monitoring asked
    served = otaudit(
        "serve",
        "--data",
        str(tmp_path / "data"),
        "--http",
        "127.0.0.1:0",
        "--grpc",
        "127.0.0.1:0",
        "--rules",
        str(bad),
    )
    assert served.returncode == 2 and "defines no rules" in served.stderr
    assert not (tmp_path / "data").exists()
    detect = otaudit("detect", "--data", str(tmp_path / "data"), "--rules", str(bad))
    assert detect.returncode == 2 and "defines no rules" in detect.stderr


def test_cli_lists_the_rules_in_effect(tmp_path: Path) -> None:
    listed = otaudit("rules", "list", "--rules", str(write(tmp_path, GOOD)))
    assert listed.returncode == 0, listed.stderr
    for spec in builtin_specs():
        assert spec["name"] in listed.stdout
    assert "export_burst" in listed.stdout


def test_the_rules_in_effect_print_as_a_rule_file_that_loads_the_same(tmp_path: Path) -> None:
    changed = write(tmp_path, GOOD + "  - name: brute_force_user\n    threshold: 50\n")
    printed = otaudit("rules", "list", "--rules", str(changed), "--format", "yaml")
    assert printed.returncode == 0, printed.stderr
    again = write(tmp_path, printed.stdout, "printed.yaml")
    reloaded = load_rules((again,), builtin=False)
    assert [(r.name, r.fingerprint) for r in reloaded] == [
        (r.name, r.fingerprint) for r in load_rules((changed,))
    ]
