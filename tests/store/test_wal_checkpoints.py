"""While ``serve`` appends to a SQLite ledger, its WAL is checkpointed by a thread of
its own, not inside the writer's commits; the WAL stays bounded and nothing is lost."""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

import pytest

from otaudit.store import walcheckpoint
from otaudit.store.sqlite import SQLiteStore
from sealing import entries


def _autocheckpoint(store: SQLiteStore) -> int:
    return int(store._sqlite.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0])


def _records_in_the_database_file(path: Path, scratch: Path) -> int:
    """The records ``path`` holds without its WAL: what checkpoints have copied."""
    scratch.mkdir()
    (scratch / "ledger.db").write_bytes(path.read_bytes())
    conn = sqlite3.connect(scratch / "ledger.db")
    try:
        return int(conn.execute("SELECT count(*) FROM records").fetchone()[0])
    finally:
        conn.close()


def test_the_thread_checkpoints_while_appends_go_on_and_gives_the_writer_its_own_back(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.db"
    store = SQLiteStore(path)
    wal = store.checkpoint_in_background()
    assert store.checkpoint_in_background() is wal  # one thread per ledger
    assert _autocheckpoint(store) == walcheckpoint.FALLBACK_PAGES
    for _ in range(5):
        store.append(entries(200))
        wal.wake()
    deadline = time.monotonic() + 10
    while wal.checkpoints == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert wal.checkpoints >= 1
    wal.stop()
    assert _autocheckpoint(store) == walcheckpoint.DEFAULT_PAGES
    assert _records_in_the_database_file(path, tmp_path / "copy") == 1000
    store.close()
    reopened = SQLiteStore(path, readonly=True)
    try:
        assert reopened.tree_size() == 1000
    finally:
        reopened.close()


def test_closing_the_store_stops_the_thread(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "ledger.db")
    wal = store.checkpoint_in_background()
    store.append(entries(10))
    store.close()
    assert not wal._thread.is_alive()


def test_a_failing_checkpoint_is_logged_and_appends_go_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = SQLiteStore(tmp_path / "ledger.db")
    wal = store.checkpoint_in_background()
    wal._conn.close()  # every checkpoint now fails
    store.append(entries(10))
    with caplog.at_level(logging.WARNING, logger="otaudit.store"):
        wal._checkpoint()
    assert wal.checkpoints == 0
    assert "checkpointing the WAL of" in caplog.text and "failed" in caplog.text
    store.append(entries(10))
    assert store.tree_size() == 20
    wal._conn = sqlite3.connect(tmp_path / "ledger.db", check_same_thread=False)
    store.close()
