""":func:`otaudit.status.ledger_status` on every store: tokens by scope, the last
verification recorded (a run of ``otaudit verify`` or the server's refusal to sign)."""

from __future__ import annotations

from otaudit.access import Reader
from otaudit.auth import new_token
from otaudit.ownrecords import DirectAppender, record_read, record_refusal
from otaudit.status import ledger_status
from otaudit.store.base import Store

AUDITOR = Reader("auditor")


def test_an_empty_ledger(any_store: Store) -> None:
    status = ledger_status(any_store)
    assert (status.tree_size, status.checkpoint_size, status.unsigned_records) == (0, None, 0)
    assert status.last_verification is None and not status.auth_required
    assert status.as_json()["ledger"]["checkpoint"] is None


def test_tokens_by_scope_and_the_latest_verification(any_store: Store) -> None:
    for scopes in (("ingest",), ("admin", "read"), ("read",)):
        any_store.add_token(new_token("", scopes)[1])
    revoked = new_token("old", ("ingest",))[1]
    any_store.add_token(revoked)
    any_store.revoke_token(revoked.token_id, "2026-12-01T00:00:00Z")
    appender = DirectAppender(any_store)
    record_read(appender, AUDITOR, "sql", "SELECT 1", ok=True, rows=1)  # not a verification
    record_read(appender, AUDITOR, "verify", "", ok=True, rows=1)
    status = ledger_status(any_store)
    assert status.auth_required
    assert status.tokens == {"admin": {"active": 1, "revoked": 0},
                             "ingest": {"active": 1, "revoked": 1},
                             "read": {"active": 2, "revoked": 0}}  # fmt: skip
    last = status.last_verification
    assert last is not None and (last.seq, last.ok, last.records, last.by) == (
        1, True, 1, "otaudit verify"
    )  # fmt: skip
    assert status.unsigned_records == status.tree_size == 2  # nothing signs but serve

    record_read(appender, AUDITOR, "verify", "", ok=False, error="leaf 7: hash mismatch")
    last = ledger_status(any_store).last_verification
    assert last is not None and (last.ok, last.error) == (False, "leaf 7: hash mismatch")
    record_refusal(appender, "tree of size 3 does not extend checkpoint 4")
    last = ledger_status(any_store).last_verification
    assert last is not None and (last.seq, last.ok, last.by) == (3, False, "server")
    assert last.error == "tree of size 3 does not extend checkpoint 4"


def test_a_revoked_token_keeps_authentication_on(any_store: Store) -> None:
    # As the server has it: once a token exists, every request needs a valid one.
    token = new_token("gone", ("ingest",))[1]
    any_store.add_token(token)
    any_store.revoke_token(token.token_id, "2026-12-01T00:00:00Z")
    status = ledger_status(any_store)
    assert status.auth_required and status.tokens == {"ingest": {"active": 0, "revoked": 1}}
