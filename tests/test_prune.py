"""Pruning by policy on both stores: rules and default by receive time, holds made before
and after records arrive, back-dated clients, records arriving while it runs, and what
``verify`` and the reads see afterwards."""

from __future__ import annotations

from typing import Any

from otaudit.access import Reader
from otaudit.keys import SigningKey
from otaudit.ownrecords import DirectAppender
from otaudit.retention.holds import create_hold
from otaudit.retention.policy import POLICY_ACTION, parse_policy
from otaudit.retention.prune import prune
from otaudit.retention.receipts import PRUNE_ACTION, read_receipts
from otaudit.retention.schedule import RetentionSettings, prune_command
from otaudit.store.base import Store
from otaudit.store.search import SearchFilter
from otaudit.verify import verify_ledger
from retention_records import DAY_NS, NOW_NS, log_record
from sealing import sign

KEY = SigningKey.generate("prune.test")
READER = Reader("tester")
POLICY = parse_policy(
    "minimum: 30d\ndefault: 400d\nrules:\n  - match: {action: login}\n    keep: 90d\n",
    "retention.yaml",
)


def _ago(days: int) -> int:
    return NOW_NS - days * DAY_NS


def _run(store: Store, **kwargs: Any) -> Any:
    return prune(store, POLICY, DirectAppender(store), READER, now_ns=NOW_NS, **kwargs)


def _verified(store: Store) -> Any:
    sign(store, KEY, "prune.test")
    return verify_ledger(store, KEY.verifier(), max_signing_delay_s=10**9)  # synthetic times


def test_rules_and_default_by_receive_time(any_store: Store) -> None:
    entries = [
        log_record("login", _ago(100)),  # 0: login past 90d
        log_record("login", _ago(10)),  # 1: recent login
        log_record("read", _ago(100)),  # 2: default 400d: kept
        log_record("read", _ago(500)),  # 3: past the default
        # 4: a client that back-dates its record by years, received yesterday: kept
        log_record("login", _ago(1), time_ns=_ago(3000)),
    ]
    any_store.append(entries)
    dry = _run(any_store, dry_run=True)
    assert (dry.pruned, dry.held, dry.receipts) == (2, 0, [])
    assert any_store.present_seqs(0, 4) == [0, 1, 2, 3, 4]
    report = _run(any_store)
    assert (report.pruned, report.held) == (2, 0)
    assert report.policy_seq == 5 and report.receipts == [6]
    assert any_store.present_seqs(0, 6) == [1, 2, 4, 5, 6]
    (receipt,) = read_receipts(any_store)
    assert receipt.ranges == ((0, 0), (3, 3)) and receipt.policy == POLICY.sha256
    verified = _verified(any_store)
    assert verified.absent == 2 and verified.removed("prune") == (2, 1)
    assert any_store.count(SearchFilter({"action": ("read",)})) == 1
    again = _run(any_store)
    assert (again.pruned, again.policy_seq, again.receipts) == (0, None, [])


def test_holds_before_and_after_records_arrive(any_store: Store) -> None:
    appender = DirectAppender(any_store)
    create_hold(appender, READER, any_store, "case 1", "litigation",
                SearchFilter({"actor": ("bob",)}))  # fmt: skip
    any_store.append([
        log_record("read", _ago(500), actor="bob"),
        log_record("read", _ago(500), actor="carol"),
        log_record("read", _ago(500), actor="dave"),
    ])  # fmt: skip
    create_hold(appender, READER, any_store, "case 2", "inquiry",
                SearchFilter({"actor": ("carol",)}))  # fmt: skip
    report = _run(any_store)
    assert (report.pruned, report.held) == (1, 2)
    assert [r[4] for r in any_store.search(SearchFilter())].count("dave") == 0
    assert _verified(any_store).absent == 1


def test_records_arriving_during_a_prune_are_not_touched(any_store: Store) -> None:
    any_store.append([log_record("read", _ago(500)) for _ in range(5000)])
    arrived: list[int] = []

    def arrive(what: str, n: int) -> None:
        if not arrived:  # while it deletes: more old records come in
            result = any_store.append([log_record("read", _ago(500)) for _ in range(10)])
            arrived.extend(s for s in result.seqs if s is not None)

    report = _run(any_store, batch=500, progress=arrive)
    assert report.pruned == 5000 and len(arrived) == 10
    assert any_store.present_seqs(min(arrived), max(arrived)) == arrived
    assert _verified(any_store).absent == 5000
    assert _run(any_store).pruned == 10


def test_the_records_the_ledger_needs_are_never_pruned(any_store: Store) -> None:
    everything = parse_policy(
        "minimum: 1s\ndefault: 1s\nrules:\n  - match: {pipeline: otaudit}\n    keep: 1s\n", "p"
    )
    any_store.append([log_record("read", _ago(10))])
    appender = DirectAppender(any_store)
    first = prune(any_store, everything, appender, READER, now_ns=NOW_NS)
    assert first.pruned == 1
    later = prune(any_store, everything, appender, READER, now_ns=NOW_NS + 400 * DAY_NS)
    assert later.pruned == 0  # the policy record and the receipt stay
    kept = {r[7] for r in any_store.search(SearchFilter())}
    assert kept == {POLICY_ACTION, PRUNE_ACTION}


def test_the_scheduled_prune_names_its_store_outside_the_process_list(tmp_path: Any) -> None:
    settings = RetentionSettings(POLICY, tmp_path / "retention.yaml", 3600, True,
                                 "s3://bucket/prefix", "http://127.0.0.1:9000", 500)  # fmt: skip
    dsn = "postgresql://otaudit:secret@db/otaudit"
    argv, env = prune_command(settings, tmp_path, dsn)
    assert "secret" not in " ".join(argv) and env["OTAUDIT_STORE"] == dsn
    assert argv[argv.index("--rate") + 1] == "500" and "--allow-short" in argv
    assert argv[argv.index("--s3-endpoint") + 1] == "http://127.0.0.1:9000"
