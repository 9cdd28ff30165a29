"""A SQLite ledger keeps records as zstd frames (with a dictionary trained on its own
records once it has some), finds retries through a time-ordered index, and every byte
still reads back and verifies."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from otaudit import _core, verify
from otaudit.canonical import canonical_bytes
from otaudit.errors import VerificationError
from otaudit.keys import SigningKey, VerifierKey
from otaudit.record import Entry, derive_columns, parse_sealed, seal
from otaudit.store import codec
from otaudit.store.sqlite import SQLiteStore, stored_bytes_reader
from otaudit.verify import verify_ledger, verify_range
from sealing import entries, sign

ORIGIN = "example.com/compact"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "ledger.db")
    yield opened
    opened.close()


def _signed(store: SQLiteStore) -> VerifierKey:
    key = SigningKey.generate(ORIGIN)
    store.set_meta("origin", ORIGIN)
    sign(store, key, ORIGIN)
    return VerifierKey.parse(key.verifier_key())


def _stored(path: Path) -> list[bytes]:
    with sqlite3.connect(path) as conn:
        return [bytes(r[0]) for r in conn.execute("SELECT sealed FROM records ORDER BY seq")]


def test_records_are_frames_and_a_dictionary_comes_once_the_ledger_has_records(
    store: SQLiteStore,
) -> None:
    appended = entries(codec.TRAIN_AFTER + 600)
    for at in range(0, len(appended), 500):
        store.append(appended[at : at + 500])
    stored = _stored(store.path)
    assert all(_core.is_frame(b) for b in stored)
    with sqlite3.connect(store.path) as conn:
        (dictionary_id,) = [r[0] for r in conn.execute("SELECT id FROM dictionaries")]
    early = {_core.frame_dictionary(b) for b in stored[: codec.TRAIN_AFTER]}
    late = {_core.frame_dictionary(b) for b in stored[codec.TRAIN_AFTER :]}
    assert (early, late) == ({0}, {dictionary_id})
    # The dictionary pays: frames made with it are much smaller than those without.
    mean = [sum(map(len, part)) / len(part) for part in (stored[:2000], stored[-500:])]
    assert mean[1] < 0.6 * mean[0]
    assert [r.sealed for r in store.iter_records()] == [e.sealed for e in appended]
    assert verify_ledger(store, _signed(store)).records == len(appended)


def _on_disk(store: SQLiteStore) -> int:
    with sqlite3.connect(store.path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return sum(p.stat().st_size for p in store.path.parent.iterdir())


def test_the_ledger_grows_by_less_than_the_records_it_takes(store: SQLiteStore) -> None:
    """Once it has its dictionary, the ledger (records, columns, indexes, tree nodes) grows
    by less than the sealed bytes of the records appended."""
    appended = entries(10_000)
    for at in range(0, 4000, 1000):
        store.append(appended[at : at + 1000])
    before = _on_disk(store)
    for at in range(4000, len(appended), 1000):
        store.append(appended[at : at + 1000])
    grown = _on_disk(store) - before
    sealed = sum(len(e.sealed) for e in appended[4000:])
    assert grown < sealed, (grown / 6000, sealed / 6000)


def test_a_retry_is_found_with_or_without_a_time_of_its_own(store: SQLiteStore) -> None:
    timed = entries(3)
    untimed = [_log_entry(received_ns) for received_ns in (1_000, 2_000)]
    first = store.append([*timed, untimed[0]])
    assert None not in first.seqs
    again = [_resealed(e, 99) for e in timed] + [untimed[1]]
    assert store.append(again).seqs == [None] * 4
    assert store.tree_size() == 4


def _resealed(entry: Entry, received_ns: int) -> Entry:
    """The same record received again (a retry): same content, new receive time."""
    envelope, content = parse_sealed(entry.sealed)
    return seal(envelope["record"], content, envelope["pipeline"], received_ns)


def _log_entry(received_ns: int) -> Entry:
    """A log record with no time of its own, received at ``received_ns``."""
    record = {
        "signal": "log", "time_unix_nano": "0", "observed_time_unix_nano": "0",
        "severity_number": 0, "severity_text": "", "body": None,
        "attributes": {"audit.action": "login"}, "dropped_attributes_count": 0, "flags": 0,
        "trace_id": "", "span_id": "", "event_name": "",
        "resource": {"attributes": {}, "dropped_attributes_count": 0, "entity_refs": [],
                     "schema_url": ""},
        "scope": {"name": "", "version": "", "attributes": {}, "dropped_attributes_count": 0,
                  "schema_url": ""},
    }  # fmt: skip
    entry = seal(record, canonical_bytes(record), "otlp", received_ns)
    assert derive_columns(parse_sealed(entry.sealed)[0]).timestamp == entry.columns.received_at
    return entry


def _tamper(path: Path, sql: str, params: tuple[object, ...]) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'"):
            conn.execute(f"DROP TRIGGER {name}")
        conn.execute(sql, params)
    finally:
        conn.close()


def _two_appends(store: SQLiteStore, n: int) -> list[Entry]:
    """``n`` records in two appends, the second after the ledger trains its dictionary."""
    appended = entries(n)
    store.append(appended[: codec.TRAIN_AFTER])
    store.append(appended[codec.TRAIN_AFTER :])
    return appended


def test_an_altered_frame_or_dictionary_is_an_altered_record(store: SQLiteStore) -> None:
    _two_appends(store, codec.TRAIN_AFTER + 10)
    key = _signed(store)
    stored = _stored(store.path)
    late = stored[-1]
    _tamper(store.path, "UPDATE records SET sealed = ? WHERE seq = ?",
            (late[:-4] + bytes(4), len(stored) - 1))  # fmt: skip
    with pytest.raises(VerificationError, match=rf"seq {len(stored) - 1}: .*zstd frame"):
        verify_ledger(store, key)
    _tamper(store.path, "UPDATE records SET sealed = ? WHERE seq = ?", (late, len(stored) - 1))
    assert verify_ledger(store, key).records == len(stored)
    with sqlite3.connect(store.path) as conn:
        (body,) = conn.execute("SELECT body FROM dictionaries").fetchone()
    forged = bytes(body)[:8] + bytes(len(body) - 8)  # its ID kept, its tables and content not
    _tamper(store.path, "UPDATE dictionaries SET body = ?", (forged,))
    reopened = SQLiteStore(store.path, readonly=True)
    try:
        with pytest.raises(VerificationError, match=rf"seq {codec.TRAIN_AFTER}\b"):
            verify_ledger(reopened, key)
    finally:
        reopened.close()


def test_rows_read_by_hand_decode_with_the_ledgers_dictionary(store: SQLiteStore) -> None:
    appended = _two_appends(store, codec.TRAIN_AFTER + 5)
    with sqlite3.connect(store.path) as conn:
        reader = stored_bytes_reader(conn)
        decoded = [reader.decode(b) for b in _stored(store.path)]
    cut = []  # a row keeps its record's bytes with the resource cut out
    for e in appended:
        assert e.resource is not None
        cut.append(e.sealed[: e.resource_at] + e.sealed[e.resource_at + len(e.resource.body) :])
    assert decoded == cut


def test_the_append_only_triggers_still_refuse_changes(store: SQLiteStore) -> None:
    _two_appends(store, codec.TRAIN_AFTER + 1)
    conn = sqlite3.connect(store.path, isolation_level=None)
    try:
        for statement in ("UPDATE records SET name = 'x' WHERE seq = 0",
                          "DELETE FROM records WHERE seq = 0",
                          "INSERT OR REPLACE INTO records SELECT * FROM records WHERE seq = 0",
                          "UPDATE dictionaries SET body = x'00'",
                          "DELETE FROM dictionaries"):  # fmt: skip
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                conn.execute(statement)
    finally:
        conn.close()


def _outcome(call: Callable[[], object]) -> tuple[object, ...]:
    try:
        call()
    except VerificationError as exc:
        return ("failed", exc.seq, str(exc))
    return ("ok",)


def test_the_cores_own_reader_decompresses_and_fails_as_the_reference(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A compressed ledger (frames with and without its dictionary) is read by the core's
    own SQLite reader, not by Python; an altered frame or dictionary fails there with the
    reference's own failure."""
    _two_appends(store, codec.TRAIN_AFTER + 10)
    key = _signed(store)
    store.close()
    read: list[str] = []
    original = _core.verify_sqlite

    def spied(uri: str, *args: Any, **kwargs: Any) -> Any:
        read.append(uri)
        return original(uri, *args, **kwargs)

    monkeypatch.setattr(_core, "verify_sqlite", spied)
    monkeypatch.setattr(verify, "_check_records", None)  # no fallback to the reference

    def both(ledger: SQLiteStore, seq: int | None) -> None:
        core = _outcome(lambda: verify_ledger(ledger, key))
        monkeypatch.undo()
        reference = _outcome(lambda: verify_ledger(ledger, key, reference=True))
        assert core == reference
        if seq is not None:
            assert core[:2] == ("failed", seq)
            ranged = _outcome(lambda: verify_range(ledger, key, seq - 3, seq + 1))
            assert ranged[:2] == ("failed", seq)

    reopened = SQLiteStore(store.path, readonly=True)
    try:
        assert verify_ledger(reopened, key).records == codec.TRAIN_AFTER + 10
        assert verify_range(reopened, key, 5, codec.TRAIN_AFTER + 5).records == codec.TRAIN_AFTER
        assert len(read) == 2
    finally:
        reopened.close()
    stored = _stored(store.path)
    cases = [
        ("UPDATE records SET sealed = ? WHERE seq = ?", (stored[-1][:-3], len(stored) - 1)),
        ("UPDATE records SET sealed = ? WHERE seq = ?", (stored[7][:-3], 7)),
        ("UPDATE dictionaries SET body = zeroblob(length(body))", ()),
    ]
    for (sql, params), seq in zip(cases, [len(stored) - 1, 7, codec.TRAIN_AFTER], strict=True):
        _tamper(store.path, sql, params)
        monkeypatch.setattr(_core, "verify_sqlite", spied)
        monkeypatch.setattr(verify, "_check_records", None)
        read.clear()
        reopened = SQLiteStore(store.path, readonly=True)
        try:
            both(reopened, seq)
            assert read
        finally:
            reopened.close()
        for put_back, seq_back in ((stored[-1], len(stored) - 1), (stored[7], 7)):
            _tamper(store.path, "UPDATE records SET sealed = ? WHERE seq = ?", (put_back, seq_back))
