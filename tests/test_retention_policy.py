"""The retention policy file: what it accepts, each mistake named by its line, which rule
keeps a record, the SQL that finds the records past their keep, and the policy record."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from otaudit import datadir
from otaudit.access import Reader
from otaudit.errors import ConfigError
from otaudit.ownrecords import DirectAppender
from otaudit.retention.policy import (
    HASH_ATTRIBUTE,
    STRUCTURAL_ACTIONS,
    TEXT_ATTRIBUTE,
    Policy,
    current_policy_record,
    is_structural,
    load_policy,
    parse_policy,
    record_policy,
    row_attributes,
)
from otaudit.store.base import Store
from retention_records import DAY_NS, NOW_NS, log_record, span_record

GOOD = """\
minimum: 365d          # a rule shorter than this needs --allow-short
default: 400d
archive: 10y
rules:
  - match: {action: login}
    keep: 90d
  - match:
      service: [billing, ledger]
      signal: span
    keep: 2y
    archive: 7y
  - match: {resource_type: document, pipeline: otlp}
    keep: 52w
"""
DAY_S = 86_400


def _policy(text: str = GOOD, allow_short: bool = True) -> Policy:
    return parse_policy(text, "retention.yaml", allow_short=allow_short)


def test_a_good_policy_keeps_its_text_hash_and_rules_in_order() -> None:
    policy = _policy()
    assert policy.text == GOOD
    assert len(policy.sha256) == 64
    assert (policy.minimum.text, policy.minimum.seconds) == ("365d", 365 * DAY_S)
    assert policy.default.seconds == 400 * DAY_S
    assert [r.keep.text for r in policy.rules] == ["90d", "2y", "52w"]
    assert [r.line for r in policy.rules] == [5, 7, 12]
    assert policy.rules[1].match == (("service", ("billing", "ledger")), ("signal", ("span",)))


def test_units_are_seconds_to_years() -> None:
    for text, seconds in (("30s", 30), ("5m", 300), ("2h", 7200), ("3d", 3 * DAY_S),
                          ("2w", 14 * DAY_S), ("7y", 7 * 365 * DAY_S)):  # fmt: skip
        policy = _policy(f"minimum: 1s\ndefault: {text}\n")
        assert policy.default.seconds == seconds
        assert policy.rules == ()


def test_the_first_matching_rule_wins_else_the_default() -> None:
    policy = _policy()
    login = {"action": "login", "service": "billing", "signal": "span"}
    assert policy.keep_for(login) == 90 * DAY_S  # rules 1 and 2 match: the first wins
    assert policy.keep_for({"service": "ledger", "signal": "span"}) == 2 * 365 * DAY_S
    assert policy.keep_for({"service": "ledger", "signal": "log"}) == 400 * DAY_S
    assert policy.keep_for({"resource_type": "document", "pipeline": "otlp"}) == 52 * 7 * DAY_S
    assert policy.keep_for({"resource_type": "document", "pipeline": "x"}) == 400 * DAY_S
    assert policy.keep_for({}) == 400 * DAY_S
    assert policy.archive_for({"service": "ledger", "signal": "span"}) == 7 * 365 * DAY_S
    assert policy.archive_for(login) == 10 * 365 * DAY_S  # the policy's own archive
    assert _policy("minimum: 1d\ndefault: 1d\n").archive_for(login) is None
    assert is_structural({"pipeline": "otaudit", "action": "otaudit.hold_create"})
    assert not is_structural({"pipeline": "otaudit", "action": "audit_log.query"})
    assert not is_structural({"pipeline": "otlp", "action": "otaudit.hold_create"})


def test_a_rule_under_the_minimum_is_refused_unless_allowed() -> None:
    with pytest.raises(ConfigError) as caught:
        _policy(allow_short=False)
    assert str(caught.value) == (
        "retention.yaml:6: rules[0].keep: 90d is shorter than minimum 365d "
        "(refused unless --allow-short)"
    )
    assert _policy(allow_short=True).rules[0].keep.text == "90d"


# Each mistake, and the line and words of its error.
ERRORS = {
    "invalid-yaml": ("minimum: 1d\ndefault: [1d\n", ":3: not valid YAML"),
    "empty-file": ("", ":1: the policy is empty"),
    "not-a-mapping": ("- 1d\n", ":1: the policy: expected a mapping"),
    "unknown-top-key": ("minimum: 1d\ndefault: 2d\nkeep: 3d\n",
                        ":3: the policy: unknown key 'keep'"),
    "duplicate-key": ("minimum: 1d\ndefault: 2d\ndefault: 3d\n",
                      ":3: the policy: 'default' is given twice (first on line 2)"),
    "missing-default": ("minimum: 1d\n", ":1: the policy needs 'default'"),
    "missing-minimum": ("default: 1d\n", ":1: the policy needs 'minimum'"),
    "default-under-minimum": ("minimum: 2d\ndefault: 1d\n",
                              ":2: default 1d is shorter than minimum 2d"),
    "no-unit": ("minimum: 365\ndefault: 400d\n", ":1: minimum: '365' is not a duration"),
    "bad-unit": ("minimum: 1d\ndefault: 3mo\n", ":2: default: '3mo' is not a duration"),
    "zero": ("minimum: 0d\ndefault: 1d\n", ":1: minimum: must be longer than 0"),
    "rules-not-a-list": ("minimum: 1d\ndefault: 1d\nrules: {match: {action: x}}\n",
                         ":3: rules: expected a list"),
    "empty-match": ("minimum: 1d\ndefault: 1d\nrules:\n  - match: {}\n    keep: 2d\n",
                    ":4: rules[0].match: name at least one of"),
    "unknown-match-field": ("minimum: 1d\ndefault: 1d\nrules:\n  - match:\n      actor: bob\n"
                            "    keep: 2d\n", ":5: rules[0].match: unknown key 'actor'"),
    "match-not-a-string": ("minimum: 1d\ndefault: 1d\nrules:\n  - match: {action: 7}\n"
                           "    keep: 2d\n", ":4: rules[0].match.action: expected a non-empty"),
    "match-empty-list": ("minimum: 1d\ndefault: 1d\nrules:\n  - match: {action: []}\n"
                         "    keep: 2d\n", ":4: rules[0].match.action: expected at least one"),
    "bad-signal": ("minimum: 1d\ndefault: 1d\nrules:\n  - match: {signal: metric}\n    keep: 2d\n",
                   ":4: rules[0].match.signal: expected span or log, got 'metric'"),
    "unknown-rule-key": ("minimum: 1d\ndefault: 1d\nrules:\n  - match: {action: x}\n"
                         "    keep: 2d\n    kept: 3d\n", ":6: rules[0]: unknown key 'kept'"),
    "rule-without-keep": ("minimum: 1d\ndefault: 1d\nrules:\n  - match: {action: x}\n",
                          ":4: rules[0]: a rule needs 'keep'"),
    "duplicate-match-field": ("minimum: 1d\ndefault: 1d\nrules:\n  - match:\n      action: a\n"
                              "      action: b\n    keep: 2d\n",
                              ":6: rules[0].match: 'action' is given twice (first on line 5)"),
    "rule-archive-under-keep": ("minimum: 1d\ndefault: 1d\nrules:\n  - match: {action: x}\n"
                                "    keep: 3d\n    archive: 2d\n",
                                ":6: rules[0].archive: 2d is shorter than keep 3d"),
    "archive-under-default": ("minimum: 1d\ndefault: 5d\narchive: 2d\n",
                              ":3: archive 2d is shorter than the keep 5d it applies to"),
    "merge-key": ("base: &b {minimum: 1d}\n<<: *b\ndefault: 1d\n", ":2: aliases (*b) are not"),
    "alias": ("minimum: &m 1d\ndefault: *m\n", ":2: aliases (*m) are not allowed"),
    "two-documents": ("minimum: 1d\ndefault: 1d\n---\nminimum: 1d\n", ":3: not valid YAML"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_each_mistake_is_an_error_naming_its_line(case: str) -> None:
    text, expected = ERRORS[case]
    with pytest.raises(ConfigError) as caught:
        parse_policy(text, "retention.yaml")
    assert str(caught.value).startswith("retention.yaml" + expected), str(caught.value)


def test_load_policy_reads_a_file_and_names_it(tmp_path: Path) -> None:
    path = tmp_path / "retention.yaml"
    path.write_text(GOOD)
    assert load_policy(path, allow_short=True).sha256 == _policy().sha256
    with pytest.raises(ConfigError, match=f"^{path}:6: rules"):
        load_policy(path)
    path.write_bytes(b"minimum: 1d\ndefault: \xff\n")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_policy(path)
    path.write_text("# " + "x" * 40_000)
    with pytest.raises(ConfigError, match="at most 32768 bytes"):
        load_policy(path)
    with pytest.raises(ConfigError, match="cannot read retention policy"):
        load_policy(tmp_path / "absent.yaml")


@pytest.fixture
def store(store_url: str, tmp_path: Path) -> Iterator[Store]:
    opened = datadir.open_store(tmp_path, store_url, readonly=False)
    yield opened
    opened.close()


def _matching(store: Store, condition: tuple[str, list[Any]]) -> list[int]:
    """The seqs of the records that ``condition`` (SQL over ``records``) selects."""
    sql_store: Any = store  # the SQL of the one store implementation, as prune runs it
    sql = f"SELECT seq FROM {sql_store._records} WHERE {condition[0]} ORDER BY seq"
    return [int(row[0]) for row in sql_store._db.stream("testing", sql, condition[1])]


def test_expired_records_are_those_older_than_their_rules_keep(store: Store) -> None:
    policy = _policy()
    ph: str = getattr(store, "_db").placeholder  # noqa: B009 (the store's SQL driver)
    day = DAY_NS
    entries = [
        log_record("login", NOW_NS - 91 * day),  # 0: login, 90d: expired
        log_record("login", NOW_NS - 89 * day),  # 1: not yet
        log_record("login", NOW_NS - 90 * day),  # 2: exactly 90d old: kept
        span_record("pay", NOW_NS - 731 * day, service="billing"),  # 3: 2y: expired
        span_record("pay", NOW_NS - 729 * day, service="billing"),  # 4: kept
        log_record("pay", NOW_NS - 399 * day, service="billing", resource_type="invoice"),  # 5
        log_record("read", NOW_NS - 365 * day),  # 6: document on otlp, 52w: expired
        log_record("read", NOW_NS - 363 * day),  # 7: kept
        log_record("read", NOW_NS - 401 * day, resource_type="file"),  # 8: default: expired
        log_record("read", NOW_NS - 399 * day, resource_type="file"),  # 9: kept
        # the client's time says old, the receive time says new: kept
        log_record("login", NOW_NS - day, time_ns=NOW_NS - 1000 * day),  # 10
    ]
    own = [log_record(action, NOW_NS - 3000 * day, pipeline="otaudit", service="otaudit")
           for action in STRUCTURAL_ACTIONS]  # fmt: skip
    read = log_record("audit_log.query", NOW_NS - 3000 * day, pipeline="otaudit")
    seqs = store.append([*entries, *own, read]).seqs
    assert _matching(store, policy.expired_condition(NOW_NS, ph)) == [
        seqs[i] for i in (0, 3, 6, 8)
    ] + [seqs[-1]]  # structural own records stay; an old read record goes by the default
    # two days later, everything but the record received a day ago (5: a log of billing is
    # not rule 2's, so the default's 400d applies)
    assert _matching(store, policy.expired_condition(NOW_NS + 2 * day, ph)) == [
        seqs[i] for i in range(10)
    ] + [seqs[-1]]
    bare = _policy("minimum: 1d\ndefault: 100y\n")
    assert _matching(store, bare.expired_condition(NOW_NS, ph)) == []


def test_a_changed_policy_is_recorded_once(store: Store) -> None:
    appender, reader = DirectAppender(store), Reader("ops")
    assert current_policy_record(store) is None
    first = _policy()
    seq = record_policy(appender, reader, store, first)
    assert seq is not None
    assert current_policy_record(store) == (seq, first.sha256)
    assert record_policy(appender, reader, store, first) is None
    second = _policy(GOOD.replace("400d", "500d"))
    seq2 = record_policy(appender, reader, store, second)
    assert seq2 is not None and seq2 > seq
    assert current_policy_record(store) == (seq2, second.sha256)
    assert record_policy(appender, reader, store, first) is not None  # back to the first
    rows = list(store.action_rows(("otaudit.retention_policy",)))
    assert len(rows) == 3
    attributes = row_attributes(rows[1][4])
    assert attributes[HASH_ATTRIBUTE] == second.sha256
    assert attributes[TEXT_ATTRIBUTE] == second.text
    assert rows[1][2] == "ops"
