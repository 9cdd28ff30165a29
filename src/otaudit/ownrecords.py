"""otaudit's own records (DESIGN invariants 8 and 9): one path onto the ledger for each.

Reads, token changes, triage decisions, alerts and refusals to sign are records of the
service ``otaudit``, sealed under pipeline ``otaudit``. Each has one function here (or,
for alerts and triage, in :mod:`otaudit.detect`) that builds its record and appends it
through an :class:`Appender`, durably, before it returns:

- :class:`SequencerAppender`: through the server's sequencer, the log's one writer
  (``serve``, the read API, the streaming detector);
- :class:`DirectAppender`: straight to a store (the command line, and the sequencer's
  own writer thread).

Appending never signs. Only ``serve`` signs checkpoints (invariant 10): a record the
command line appends is covered by the server's next checkpoint (within a second while
it runs, and at its start), so a read of a copied data directory signs no fork of the
log.
"""

from __future__ import annotations

from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Final, Protocol

from otaudit.access import MAX_TEXT, Reader, log_request, read_entry, seal_request
from otaudit.errors import Overloaded
from otaudit.record import Entry
from otaudit.store.base import Store, StoredToken

#: The action of a record saying the server found its own ledger inconsistent.
VERIFY_ACTION: Final = "otaudit.verify"
#: The actions of an API token created and revoked.
TOKEN_CREATE_ACTION: Final = "otaudit.token_create"
TOKEN_REVOKE_ACTION: Final = "otaudit.token_revoke"


class Appender(Protocol):
    """Appends records durably: when ``append`` returns they are committed."""

    def append(self, entries: list[Entry]) -> list[int | None]:
        """Append ``entries``; their sequence numbers (None: the ledger already held it)."""
        ...


class DirectAppender:
    """Appends straight to ``store``, in the caller's thread. It never signs."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def append(self, entries: list[Entry]) -> list[int | None]:
        """Append and commit ``entries`` (StoreError if the store refuses them)."""
        return self.store.append(entries).seqs


class Submitter(Protocol):
    """What :class:`SequencerAppender` needs of :class:`otaudit.ledger.Sequencer`."""

    def submit(self, entries: list[Entry], source: str = "") -> Future[list[int | None]]:
        """Queue ``entries`` for a durable commit; the future gives their sequence numbers."""
        ...


class SequencerAppender:
    """Appends through the server's sequencer and waits until the records are durable.

    ``timeout_s`` (None: no limit) bounds the wait; past it, Overloaded saying that
    recording ``what`` took too long.
    """

    def __init__(
        self, sequencer: Submitter, timeout_s: float | None = None, what: str = "the record"
    ) -> None:
        self.sequencer = sequencer
        self.timeout_s = timeout_s
        self.what = what

    def append(self, entries: list[Entry]) -> list[int | None]:
        """Submit ``entries`` and wait for their commit (Overloaded, StoreError)."""
        future = self.sequencer.submit(entries)
        try:
            return future.result(timeout=self.timeout_s)
        except FutureTimeout:
            raise Overloaded(f"recording {self.what} took too long", 5) from None


def append_one(appender: Appender, entry: Entry) -> int:
    """Append one record of otaudit's own; its seq (a fresh receive time makes it new)."""
    (seq,) = appender.append([entry])
    assert seq is not None  # the receive time is in the sealed bytes: never a duplicate
    return seq


def record_read(
    appender: Appender,
    reader: Reader,
    kind: str,
    text: str,
    *,
    ok: bool,
    rows: int | None = None,
    error: str | None = None,
) -> int:
    """Record one read of the trail by ``reader`` (:func:`otaudit.access.read_entry`)."""
    return append_one(appender, read_entry(reader, kind, text, ok=ok, rows=rows, error=error))


def token_entry(reader: Reader, action: str, token_id: str, name: str, scopes: str) -> Entry:
    """The sealed record of creating (``otaudit.token_create``) or revoking
    (``otaudit.token_revoke``) an API token: who, which token, which scopes."""
    attributes: dict[str, str | int] = {
        "audit.target": token_id,
        "audit.token.name": name,
        "audit.new_value" if action == TOKEN_CREATE_ACTION else "audit.old_value": scopes,
        "audit.result": "success",
    }
    body = f"{reader.actor}: {action} {token_id}"
    return seal_request(log_request(reader, action, "api_token", body, attributes))


def record_token_created(appender: Appender, reader: Reader, token: StoredToken) -> int:
    """Record that ``reader`` created ``token`` (its id, name and scopes, never its hash)."""
    entry = token_entry(reader, TOKEN_CREATE_ACTION, token.token_id, token.name, token.scopes)
    return append_one(appender, entry)


def record_token_revoked(appender: Appender, reader: Reader, token: StoredToken) -> int:
    """Record that ``reader`` revoked ``token``."""
    entry = token_entry(reader, TOKEN_REVOKE_ACTION, token.token_id, token.name, token.scopes)
    return append_one(appender, entry)


def refusal_entry(message: str) -> Entry:
    """The sealed record of the server refusing to sign a checkpoint because the ledger is
    not consistent with the previous one (the ``verification_failed`` rule alerts on it)."""
    attributes: dict[str, str | int] = {
        "audit.result": "failure",
        "audit.query.error": message[:MAX_TEXT],
    }
    body = f"checkpoint refused: {message}"
    return seal_request(
        log_request(Reader("otaudit-server"), VERIFY_ACTION, "ledger", body, attributes)
    )


def record_refusal(appender: Appender, message: str) -> int:
    """Record the server's refusal to sign (the server puts it on the ledger once until it
    signs again)."""
    return append_one(appender, refusal_entry(message))
