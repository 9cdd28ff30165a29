"""otaudit's own records go onto the ledger through one appender interface, and appending
never signs: the records of reads, token changes, triage and refusals, appended directly
(the command line) or through a sequencer (the server)."""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path
from typing import cast

import pytest

from otaudit.access import Reader
from otaudit.auth import new_token
from otaudit.detect.alerts import record_triage
from otaudit.errors import Overloaded
from otaudit.ledger import Sequencer
from otaudit.ownrecords import (
    DirectAppender,
    SequencerAppender,
    record_read,
    record_refusal,
    record_token_created,
    record_token_revoked,
)
from otaudit.record import parse_sealed
from otaudit.store.sqlite import SQLiteStore

ANA = Reader("ana", "203.0.113.7")


def _attributes(store: SQLiteStore, seq: int) -> dict[str, object]:
    (record,) = store.iter_records(seq, seq + 1)
    envelope, _ = parse_sealed(record.sealed)
    assert envelope["pipeline"] == "otaudit"
    attributes: dict[str, object] = envelope["record"]["attributes"]
    return attributes


def test_each_kind_of_own_record_is_appended_and_nothing_is_signed(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "ledger.db")
    try:
        appender = DirectAppender(store)
        _, token = new_token("ci", ("read",))
        seqs = [
            record_read(appender, ANA, "sql", "SELECT 1", ok=True, rows=1),
            record_token_created(appender, ANA, token),
            record_token_revoked(appender, ANA, token),
            record_triage(appender, ANA, "a1b2", "resolved", "looked at it"),
            record_refusal(appender, "signed root differs"),
        ]
        assert seqs == [0, 1, 2, 3, 4]
        assert store.checkpoints() == []  # appending is not signing
        actions = [_attributes(store, s)["audit.action"] for s in seqs]
        assert actions == ["audit_log.query", "otaudit.token_create", "otaudit.token_revoke",
                           "otaudit.alert_triage", "otaudit.verify"]  # fmt: skip
        assert _attributes(store, 1)["audit.new_value"] == "read"
        assert _attributes(store, 2)["audit.old_value"] == "read"
        assert _attributes(store, 3)["audit.alert.decision"] == "resolved"
    finally:
        store.close()


class _StuckSequencer:
    def submit(self, entries: object, source: str = "") -> Future[list[int | None]]:
        return Future()  # never committed


def test_a_sequencer_that_does_not_commit_in_time_is_overloaded() -> None:
    appender = SequencerAppender(cast(Sequencer, _StuckSequencer()), 0.01, "the read")
    with pytest.raises(Overloaded, match="recording the read took too long") as caught:
        record_read(appender, ANA, "search", "search", ok=True)
    assert caught.value.retry_after_s == 5
