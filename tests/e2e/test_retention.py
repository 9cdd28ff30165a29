"""Retention through the commands, on a SQLite data directory: prune and what verify,
search, sql and prove say after it; a prune killed halfway (SIGKILL) and its rerun; the
scheduled prune of ``serve`` giving disk space back while it keeps running; an old ledger
made to give space back with ``migrate --vacuum``."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from otaudit import datadir
from otaudit.checkpointer import Checkpointer
from otaudit.store.sqlite import SQLiteStore
from polling import wait_until
from retention_records import DAY_NS, log_record
from support import Server, otaudit

POLICY = "minimum: 365d\ndefault: 365d\n"


def _ledger(data: Path, old: int, new: int) -> None:
    """``old`` records received 500 days ago, then ``new`` received now, each group signed
    as a server would have signed it then (each record about 1 KB sealed, as the
    benchmarks' spans are)."""
    data.mkdir(mode=0o700, exist_ok=True)
    store = datadir.open_store(data, None, readonly=False)
    try:
        key = datadir.signing_key(data, store, None, None)
        checkpointer = Checkpointer(store, key, key.name)
        now = time.time_ns()
        for count, received in ((old, now - 500 * DAY_NS), (new, now)):
            for begin in range(0, count, 2000):
                store.append([log_record("read", received, actor=f"u{i % 7}",
                                         target=f"/documents/{i}/" + "x" * 400)
                              for i in range(begin, min(begin + 2000, count))])  # fmt: skip
            checkpointer.checkpoint()
    finally:
        store.close()


def _files(data: Path) -> int:
    return sum(p.stat().st_size for p in data.glob("ledger.db*"))


def test_prune_then_verify_search_sql_and_prove(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _ledger(data, 300, 200)
    policy = tmp_path / "retention.yaml"
    policy.write_text(POLICY)
    dry = otaudit("prune", "--data", str(data), "--retention", str(policy), "--dry-run",
                  "--format", "json", check=True)  # fmt: skip
    assert json.loads(dry.stdout)["pruned"] == 300
    run = otaudit("prune", "--data", str(data), "--retention", str(policy), "--format", "json",
                  check=True)  # fmt: skip
    out = json.loads(run.stdout)
    assert {k: out[k] for k in ("pruned", "held", "archived", "receipt_seq")} == {
        "pruned": 300, "held": 0, "archived": 0, "receipt_seq": 501
    }  # fmt: skip
    verify = otaudit("verify", "--data", str(data), check=True)
    assert "OK: 300 records pruned under 1 receipts (seq 501)" in verify.stdout
    query = "SELECT count(*) AS n FROM audit_records WHERE action = 'read'"
    sql = otaudit("sql", "--data", str(data), "--format", "json", query, check=True)
    assert json.loads(sql.stdout)[0]["n"] == 200
    proof = json.loads(otaudit("prove", "inclusion", "--data", str(data), "--seq", "7",
                               check=True).stdout)  # fmt: skip
    assert proof["payload"] == "pruned" and proof["receipt_seq"] == 501
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "minimum: 365d\ndefault: 400d\nrules:\n  - match: {action: login}\n    keep: 9d\n"
    )
    refused = otaudit("prune", "--data", str(data), "--retention", str(bad))
    assert refused.returncode == 2 and "bad.yaml:5" in refused.stderr


def test_a_prune_killed_halfway_verifies_and_a_rerun_completes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _ledger(data, 20_000, 100)
    policy = tmp_path / "retention.yaml"
    policy.write_text(POLICY)
    argv = [sys.executable, "-m", "otaudit", "prune", "--data", str(data), "--retention",
            str(policy), "--batch", "20"]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = sqlite3.connect(f"file:{data / 'ledger.db'}?mode=ro", uri=True)

    def deleting() -> bool:
        removed = db.execute("SELECT count(*) FROM removals").fetchone()[0]
        present = db.execute("SELECT count(*) FROM records WHERE seq < 20000").fetchone()[0]
        return bool(removed) and present < 19_000

    assert wait_until(deleting, timeout_s=60)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    db.close()  # a new connection: the polling one may still read an older snapshot
    db = sqlite3.connect(f"file:{data / 'ledger.db'}?mode=ro", uri=True)
    left = db.execute("SELECT count(*) FROM records WHERE seq < 20000").fetchall()[0][0]
    db.close()
    assert 0 < left < 19_000
    assert otaudit("verify", "--data", str(data)).returncode == 0
    rerun = otaudit("prune", "--data", str(data), "--retention", str(policy), "--format", "json",
                    check=True)  # fmt: skip
    assert json.loads(rerun.stdout)["finished"] == left
    verify = otaudit("verify", "--data", str(data), check=True)
    assert "OK: 20000 records pruned under 1 receipts" in verify.stdout


def test_serve_prunes_on_schedule_and_gives_space_back(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _ledger(data, 20_000, 20_000)
    policy = tmp_path / "retention.yaml"
    policy.write_text(POLICY)
    before = _files(data)
    srv = Server(data, extra_args=["--retention", str(policy), "--prune-every", "10s"]).start()
    try:
        db = sqlite3.connect(f"file:{data / 'ledger.db'}?mode=ro", uri=True)
        query = "SELECT count(*) FROM records WHERE seq < 20000"
        assert wait_until(lambda: db.execute(query).fetchone()[0] == 0, timeout_s=60)
        db.close()
        assert wait_until(lambda: _files(data) <= 0.6 * before, timeout_s=30), _files(data)
    finally:
        srv.stop()
    verify = otaudit("verify", "--data", str(data), check=True)
    assert "OK: 20000 records pruned under" in verify.stdout


def test_migrate_vacuum_makes_an_old_ledger_give_space_back(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _ledger(data, 4000, 10)
    conn = sqlite3.connect(data / "ledger.db", isolation_level=None)
    conn.execute("PRAGMA auto_vacuum = NONE")
    conn.execute("VACUUM")  # as a ledger made before retention existed
    conn.close()
    store = SQLiteStore(data / "ledger.db")
    assert store.reclaim_space(100) == 0
    store.close()
    done = otaudit("migrate", "--data", str(data), "--vacuum", check=True)
    assert "pruning now gives disk space back" in done.stdout
    policy = tmp_path / "retention.yaml"
    policy.write_text(POLICY)
    before = _files(data)
    otaudit("prune", "--data", str(data), "--retention", str(policy), check=True)
    assert _files(data) < 0.5 * before
