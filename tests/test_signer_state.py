"""The signer keeps its latest checkpoint outside the database and signs only what extends it.

Specification of :mod:`otaudit.signerstate`, of the checks
:class:`otaudit.checkpointer.Checkpointer` makes against the saved checkpoint (DESIGN
invariant 10), of the pinned verifier key, and
of the late-signing check of ``verify`` (:mod:`otaudit.latesigning`), on a real SQLite
ledger in-process. The attacks themselves, with a real server and the real CLI, are in
``tests/test_tamper.py`` and ``tests/store/test_postgres_tamper.py``.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path

import pytest

from otaudit import datadir, signerstate, tree
from otaudit.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from otaudit.checkpointer import Checkpointer
from otaudit.errors import ConfigError, StoreError, VerificationError
from otaudit.ingest import IngestSettings, prepare
from otaudit.keys import SigningKey
from otaudit.latesigning import LateRecord, LateSigning, duration_text
from otaudit.otlp.body import PROTOBUF
from otaudit.record import Entry
from otaudit.store.base import StoredCheckpoint
from otaudit.store.sqlite import SQLiteStore
from otaudit.verify import verify_ledger
from support import audit_request

T0 = 1_764_288_000_000_000_000
SECOND = 1_000_000_000


def entries(count: int, received_ns: int = T0) -> list[Entry]:
    """``count`` new client records, received at ``received_ns``."""
    body = audit_request(count, payload_bytes=20)
    return prepare("traces", PROTOBUF, body, False, "otlp", received_ns, IngestSettings()).entries


@pytest.fixture
def ledger(tmp_path: Path) -> tuple[SQLiteStore, SigningKey]:
    """An empty SQLite ledger and its signing key, saved in the data directory."""
    key = SigningKey.generate("example.com/log")
    key.save(tmp_path / datadir.KEY_FILE)
    store = SQLiteStore(tmp_path / datadir.LEDGER_FILE)
    store.set_meta("origin", key.name)
    store.set_meta("verifier_key", key.verifier_key())
    return store, key


def _saved(key: SigningKey) -> Checkpoint | None:
    assert key.path is not None
    return signerstate.load(signerstate.path_for(key.path), key.verifier(), key.name)


def _rewrite(store: SQLiteStore, seq: int) -> None:
    """Replace record ``seq`` and everything after it by other records, and drop the
    checkpoints above size 0, with the triggers off (the database writer of issue 13)."""
    conn = sqlite3.connect(store.path, isolation_level=None)
    try:
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'"):
            conn.execute(f'DROP TRIGGER "{name}"')
        size = conn.execute("SELECT count(*) FROM records").fetchone()[0]
        conn.execute("DELETE FROM records WHERE seq >= ?", (seq,))
        conn.execute("DELETE FROM tree_nodes WHERE ((idx + 1) << level) > ?", (seq,))
        conn.execute("DELETE FROM checkpoints WHERE tree_size > 0")
    finally:
        conn.close()
    store.append(entries(size - seq))


# -- the saved checkpoint ----------------------------------------------------------


def test_each_checkpoint_is_saved_next_to_the_key(ledger: tuple[SQLiteStore, SigningKey]) -> None:
    store, key = ledger
    signer = Checkpointer(store, key, key.name)
    assert key.path is not None
    assert signer.saved_path == key.path.with_name("signing.key.checkpoint")
    for size in (0, 3, 8):
        store.append(entries(size - store.tree_size()))
        cp = signer.checkpoint()
        assert cp is not None and cp.tree_size == size
        assert signer.saved_path.read_text() == cp.note  # exactly as signed
        assert _saved(key) == Checkpoint(key.name, size, cp.root_hash)
    assert oct(signer.saved_path.stat().st_mode & 0o777) == "0o644"
    assert signer.checkpoint() is None  # nothing new: nothing signed, nothing written


def test_the_file_is_saved_before_the_store_has_the_checkpoint(
    ledger: tuple[SQLiteStore, SigningKey], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, key = ledger
    signer = Checkpointer(store, key, key.name)
    signer.checkpoint()
    store.append(entries(5))

    def crash(cp: StoredCheckpoint) -> None:
        raise StoreError("disk full")

    monkeypatch.setattr(store, "add_checkpoint", crash)
    with pytest.raises(StoreError):
        signer.checkpoint()
    saved = _saved(key)
    assert saved is not None and saved.tree_size == 5  # ahead of the store
    assert [cp.tree_size for cp in store.checkpoints()] == [0]
    monkeypatch.undo()
    again = Checkpointer(store, key, key.name).checkpoint()  # a restart: same tree, signed
    assert again is not None and again.tree_size == 5


def test_a_rewritten_tree_is_refused(ledger: tuple[SQLiteStore, SigningKey]) -> None:
    store, key = ledger
    signer = Checkpointer(store, key, key.name)
    signer.checkpoint()
    store.append(entries(6))
    signed = signer.checkpoint()
    assert signed is not None
    _rewrite(store, 2)
    store.append(entries(1))
    before = signer.saved_path.read_bytes()
    for attempt in (Checkpointer(store, key, key.name), signer):  # at a restart, and running
        with pytest.raises(VerificationError) as info:
            attempt.checkpoint()
        assert str(info.value).startswith(
            f"refusing to sign tree size 7: not consistent with the checkpoint at size 6 saved "
            f"in {signer.saved_path}: "
        )
    assert [cp.tree_size for cp in store.checkpoints()] == [0]
    assert signer.saved_path.read_bytes() == before


def test_the_saved_checkpoint_is_checked_at_start_with_nothing_to_sign(
    ledger: tuple[SQLiteStore, SigningKey],
) -> None:
    store, key = ledger
    signer = Checkpointer(store, key, key.name)
    store.append(entries(4))
    signer.checkpoint()
    # Rewritten to the same size, and a checkpoint of the forged tree slipped into the store
    # (signed with the key by someone who had it once): nothing to sign, still refused.
    _rewrite(store, 1)
    root = tree.stored_root(store, 4)
    note = sign_checkpoint(Checkpoint(key.name, 4, root), key)
    store.add_checkpoint(StoredCheckpoint(4, root, 0, note))
    with pytest.raises(VerificationError, match="not consistent with the checkpoint at size 4 "):
        Checkpointer(store, key, key.name).checkpoint()


def test_a_ledger_smaller_than_the_saved_checkpoint_is_refused(
    ledger: tuple[SQLiteStore, SigningKey], tmp_path: Path
) -> None:
    store, key = ledger
    signer = Checkpointer(store, key, key.name)
    store.append(entries(5))
    signer.checkpoint()
    older = SQLiteStore(tmp_path / "older.db")  # a copy of the ledger from before
    older.set_meta("origin", key.name)
    older.set_meta("verifier_key", key.verifier_key())
    older.append(entries(3))
    with pytest.raises(VerificationError) as info:
        Checkpointer(older, key, key.name).checkpoint()
    assert str(info.value) == (
        f"refusing to sign tree size 3: the checkpoint at size 5 saved in {signer.saved_path} "
        "is larger: the ledger lost records this signer signed (truncated, or rolled back to "
        "an older copy)"
    )


def test_without_a_saved_checkpoint_the_latest_signed_one_is_adopted(
    ledger: tuple[SQLiteStore, SigningKey], caplog: pytest.LogCaptureFixture
) -> None:
    store, key = ledger
    signer = Checkpointer(store, key, key.name)
    store.append(entries(3))
    good = signer.checkpoint()
    assert good is not None
    # A later "checkpoint" in the store that the key did not sign is passed over.
    store.append(entries(2))
    root = tree.stored_root(store, 5)
    forged = sign_checkpoint(Checkpoint(key.name, 5, root), SigningKey.generate(key.name))
    store.add_checkpoint(StoredCheckpoint(5, root, 0, forged))
    signer.saved_path.unlink()  # as before the upgrade that brought the file
    store.append(entries(1))
    with caplog.at_level(logging.WARNING, "otaudit.ledger"):
        cp = Checkpointer(store, key, key.name).checkpoint()
    assert cp is not None and cp.tree_size == 6
    (warning,) = [r.getMessage() for r in caplog.records]
    assert warning.startswith(f"no saved checkpoint at {signer.saved_path}: adopting the latest ")
    assert "at tree size 3 " in warning
    assert signer.saved_path.read_text() == cp.note


def test_a_saved_checkpoint_that_does_not_verify_is_refused(
    ledger: tuple[SQLiteStore, SigningKey],
) -> None:
    store, key = ledger
    signer = Checkpointer(store, key, key.name)
    signer.checkpoint()
    other = sign_checkpoint(Checkpoint(key.name, 0, tree.stored_root(store, 0)),
                            SigningKey.generate(key.name))  # fmt: skip
    signer.saved_path.write_text(other)
    store.append(entries(1))
    with pytest.raises(VerificationError, match=f"^saved checkpoint {signer.saved_path}: signed"):
        signer.checkpoint()


def test_a_signer_needs_a_usable_place_for_its_saved_checkpoint(
    ledger: tuple[SQLiteStore, SigningKey], tmp_path: Path
) -> None:
    store, key = ledger
    with pytest.raises(ConfigError, match="needs a file for its saved checkpoint"):
        Checkpointer(store, SigningKey.generate(key.name), key.name)
    (tmp_path / "dir.checkpoint").mkdir()
    with pytest.raises(ConfigError, match="is not a regular file"):
        Checkpointer(store, key, key.name, saved_path=tmp_path / "dir.checkpoint")
    os.mkfifo(tmp_path / "fifo.checkpoint")  # refused at once, not waited on
    with pytest.raises(ConfigError, match="is not a regular file"):
        Checkpointer(store, key, key.name, saved_path=tmp_path / "fifo.checkpoint")
    with pytest.raises(ConfigError, match="is not writable"):
        Checkpointer(store, key, key.name, saved_path=tmp_path / "no-such-dir" / "x.checkpoint")
    (tmp_path / "big.checkpoint").write_bytes(b"x" * (signerstate.MAX_FILE_BYTES + 1))
    with pytest.raises(ConfigError, match="is larger than"):
        Checkpointer(store, key, key.name, saved_path=tmp_path / "big.checkpoint")


# -- the pinned verifier key ------------------------------------------------------------


def test_a_pin_is_written_once_and_never_replaced(tmp_path: Path) -> None:
    key = SigningKey.generate("example.com/log").verifier()
    path = tmp_path / "verifier.key"
    assert datadir.pin_key(path, key) is True
    assert path.read_text() == f"{key}\n"
    assert datadir.pin_key(path, key) is False
    other = SigningKey.generate("example.com/log").verifier()
    with pytest.raises(VerificationError, match="already pins"):
        datadir.pin_key(path, other)
    assert datadir.pinned_key(path) == key
    path.write_text("not a key\n")
    with pytest.raises(ConfigError, match=f"^pinned verifier key {path}: "):
        datadir.pinned_key(path)


def test_the_key_and_what_confirms_it(ledger: tuple[SQLiteStore, SigningKey]) -> None:
    store, key = ledger
    assert key.path is not None
    data = key.path.parent
    assert datadir.log_key(data, store, None) == datadir.LogKey(
        key.verifier(), f"the signing key {key.path}"
    )
    datadir.pin_key(data / datadir.PIN_FILE, key.verifier())
    key.path.rename(data / "elsewhere.key")
    assert datadir.log_key(data, store, None).confirmed_by == (
        f"the key pinned in {data / datadir.PIN_FILE}"
    )
    (data / datadir.PIN_FILE).unlink()
    assert datadir.log_key(data, store, None) == datadir.LogKey(key.verifier(), None)


# -- late signing ---------------------------------------------------------------------


def _late(sizes: list[int], records: list[tuple[int, bool]], bound_s: int = 10) -> object:
    late = LateSigning(sizes, bound_s)
    for seq, (at_s, client) in enumerate(records):
        late.see(seq, T0 + at_s * SECOND, client)
    return late.found


def test_late_signing_vectors() -> None:
    c, own = True, False
    # Signed in time: every range spans less than the bound.
    assert _late([2, 4], [(0, c), (1, c), (20, c), (25, c)]) is None
    # A range of receive times wider than the bound: its first record is late.
    found = _late([4], [(0, c), (1, c), (5, c), (11, c)])
    assert found == LateRecord(0, T0, 4, 3, T0 + 11 * SECOND)
    # Exactly the bound is not late.
    assert _late([2], [(0, c), (10, c)]) is None
    # A crash tail, and reads recorded while no server ran: only own records came later.
    assert _late([3], [(0, c), (1, c), (3600, own)]) is None
    # An own record left unsigned while clients were served is reported.
    assert _late([2], [(0, own), (60, c)]) == LateRecord(0, T0, 2, 1, T0 + 60 * SECOND)
    # Records after the latest checkpoint are not judged; nor is the empty tree.
    assert _late([0, 2], [(0, c), (1, c), (100, c), (200, c)]) is None
    # The earliest late record of the earliest such range, even when found late in it.
    found = _late([2, 6], [(0, c), (1, c), (32, c), (20, c), (25, c), (41, c)])
    assert found == LateRecord(3, T0 + 20 * SECOND, 6, 5, T0 + 41 * SECOND)
    found = _late([6], [(50, c), (20, c), (30, c), (55, c), (10, c), (58, c)])
    assert isinstance(found, LateRecord) and found.seq == 1  # received at 20, seq 3 at 55
    assert _late([2, 4], [(0, c), (1, c), (2, c), (100, c)], bound_s=60) is not None


def test_duration_text() -> None:
    seconds = (600, 3600, 86400, 90, 1, 0, 1209600)
    assert [duration_text(s) for s in seconds] == ["10m", "1h", "1d", "90s", "1s", "0s", "2w"]


def test_verify_reports_a_history_signed_long_after_it_was_received(
    ledger: tuple[SQLiteStore, SigningKey],
) -> None:
    store, key = ledger
    signer = Checkpointer(store, key, key.name)
    signer.checkpoint()
    store.append(entries(3, T0))
    store.append(entries(3, T0 + 3600 * SECOND))  # an hour later, in the same checkpoint
    signer.checkpoint()
    with pytest.raises(VerificationError) as info:
        verify_ledger(store, key.verifier())
    assert info.value.seq == 0
    assert str(info.value).startswith(
        "seq 0: received at 2025-11-28T00:00:00.000000000Z but first signed by the checkpoint at "
        "tree size 6, which also covers seq 3, received 60 min later (limit: "
        "--max-signing-delay 10m): "
    )
    assert verify_ledger(store, key.verifier(), max_signing_delay_s=3600).records == 6
    assert open_checkpoint(signer.saved_path.read_text(), key.verifier(), key.name).tree_size == 6


def test_with_a_key_on_a_read_only_mount_the_checkpoint_is_saved_in_the_data_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets_dir, data = tmp_path / "secrets", tmp_path / "data"
    secrets_dir.mkdir()
    data.mkdir()
    SigningKey.generate("example.com/log").save(secrets_dir / "log.key")
    store = SQLiteStore(data / datadir.LEDGER_FILE)
    key = datadir.signing_key(data, store, None, secrets_dir / "log.key")
    assert key.saved_checkpoint == secrets_dir / "log.key.checkpoint"
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode: Path(p) != secrets_dir and real_access(p, mode)
    )
    key = datadir.signing_key(data, store, None, secrets_dir / "log.key")
    assert key.saved_checkpoint == data / "signing.key.checkpoint"
    assert Checkpointer(store, key, key.name).checkpoint() is not None
    assert (data / "signing.key.checkpoint").exists()
