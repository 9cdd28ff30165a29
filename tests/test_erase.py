"""Erasing a subject on both stores: actor, target and attribute values, holds that refuse
part of it, a receipt without the subject in it, and ``verify`` afterwards; the command's
exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from otaudit.access import Reader
from otaudit.errors import ConfigError
from otaudit.keys import SigningKey
from otaudit.ownrecords import DirectAppender
from otaudit.retention.erase import erase, subject_hmac
from otaudit.retention.holds import create_hold
from otaudit.retention.receipts import read_receipts
from otaudit.store.base import Store
from otaudit.store.search import SearchFilter
from otaudit.store.sqlite import SQLiteStore
from otaudit.verify import verify_ledger
from retention_records import NOW_NS, log_record
from sealing import sign
from support import otaudit

KEY = SigningKey.generate("erase.test")
SECRET = b"k" * 32
READER = Reader("dpo")


def _fill(store: Store) -> None:
    store.append([
        log_record("read", NOW_NS, actor="alice@example.com"),  # 0: actor
        log_record("read", NOW_NS, actor="bob", target="alice@example.com"),  # 1: target
        log_record("read", NOW_NS, actor="bob"),  # 2: not hers
        log_record("read", NOW_NS, actor="bob", service="alice@example.com"),  # 3: resource
        log_record("export", NOW_NS, actor="alice@example.com"),  # 4: actor, held below
    ])  # fmt: skip


def test_erase_removes_the_subject_except_under_hold(any_store: Store) -> None:
    _fill(any_store)
    appender = DirectAppender(any_store)
    hold = create_hold(appender, READER, any_store, "case 7", "litigation",
                       SearchFilter({"action": ("export",)}))  # fmt: skip
    dry = erase(any_store, appender, READER, "alice@example.com", "DSR-1", key=SECRET,
                dry_run=True)  # fmt: skip
    assert (dry.matched, dry.erased, dry.held, dry.receipts) == (3, 2, 1, [])
    report = erase(any_store, appender, READER, "alice@example.com", "DSR-1", key=SECRET)
    assert (report.erased, report.held) == (2, 1)
    assert [(h.hold_id, h.records) for h in report.holds] == [(hold.id, 1)]
    assert any_store.present_seqs(0, 4) == [2, 3, 4]
    (receipt,) = read_receipts(any_store)
    assert receipt.kind == "erase" and receipt.ranges == ((0, 1),)
    assert (
        receipt.subject == subject_hmac(SECRET, "alice@example.com") and receipt.reason == "DSR-1"
    )
    sealed = next(any_store.iter_records(receipt.seq, receipt.seq + 1)).sealed
    assert b"alice" not in sealed
    sign(any_store, KEY, "erase.test")
    verified = verify_ledger(any_store, KEY.verifier(), max_signing_delay_s=10**9)
    assert verified.removed("erase") == (2, 1) and verified.absent == 2


def test_an_attribute_value_is_a_match_too(any_store: Store) -> None:
    any_store.append([log_record("read", NOW_NS, actor="x", target="y")])
    found = erase(any_store, DirectAppender(any_store), READER, "success", "r", key=SECRET,
                  dry_run=True)  # fmt: skip
    assert found.matched == 1  # audit.result = success


def test_erase_refuses_empty_subject_and_reason(any_store: Store) -> None:
    for subject, reason in (("", "r"), ("a", " "), ("a", "x" * 5000)):
        with pytest.raises(ConfigError):
            erase(any_store, DirectAppender(any_store), READER, subject, reason, key=SECRET)


def test_the_command_names_holds_and_exits_1(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    store = SQLiteStore(data / "ledger.db")
    _fill(store)
    store.close()
    held = otaudit("hold", "create", "--data", str(data), "--name", "case", "--reason", "r",
                   "--action", "export")  # fmt: skip
    hold_id = held.stdout.strip().splitlines()[-1]
    run = otaudit("erase", "--data", str(data), "--subject", "alice@example.com",
                  "--reason", "DSR-2", "--format", "json")  # fmt: skip
    assert run.returncode == 1, run.stderr
    out = json.loads(run.stdout)
    assert (out["erased"], out["held"]) == (2, 1)
    assert out["holds"][0]["hold_id"] == hold_id
    assert (data / "erasure.key").stat().st_mode & 0o777 == 0o600
    again = otaudit("erase", "--data", str(data), "--subject", "bob", "--reason", "DSR-3")
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("erased 2 of 2 records (hmac-sha256:")
