"""``otaudit status --witness-dir``: how far the server's checkpoints are cosigned, by
whom, and how many wait (issue: day-to-day use, "witnesses and their last cosignature")."""

from __future__ import annotations

import json
import os
from pathlib import Path

from minilog import run_cli
from otaudit.keys import SigningKey
from polling import wait_until
from support import Server, audit_request, post


def test_status_tells_how_far_the_witness_cosigned(tmp_path: Path) -> None:
    wdir, state = tmp_path / "witness-dir", tmp_path / "state"
    server = Server(tmp_path / "data", extra_args=["--witness-dir", str(wdir)]).start()
    try:
        log_key = SigningKey.load(server.data / "signing.key").verifier_key()
        assert run_cli("witness", "init", "--state", state, "--name", "w.example/w1").exit_code == 0
        assert run_cli("witness", "add-log", "--state", state, "--log-key", log_key).exit_code == 0
        assert post(server, audit_request(5)).status_code == 200
        assert wait_until(lambda: (wdir / "checkpoint.5").exists(), 10)
        before = run_cli("status", "--data", server.data, "--witness-dir", wdir)
        assert "witness:            no checkpoint cosigned yet;" in before.stdout
        ran = run_cli("witness", "run", "--state", state, "--from-dir", wdir)
        assert ran.exit_code == 0, ran.stderr
        after = run_cli("status", "--data", server.data, "--witness-dir", wdir, "--format",
                        "json")  # fmt: skip
    finally:
        server.stop()
    witness = json.loads(after.stdout)["witness"]
    assert witness["cosigned"] == witness["exported"] == 5 and witness["waiting"] == 0
    assert "w.example/w1" in witness["cosigners"] and witness["cosigned_age_s"] >= 0
    table = run_cli("status", "--data", server.data, "--witness-dir", wdir)
    assert "witness:            cosigned up to size 5 (" in table.stdout
    assert "signed by " in table.stdout and "0 checkpoint(s) waiting" in table.stdout


def test_a_missing_witness_directory_is_named(tmp_path: Path) -> None:
    data = tmp_path / "data"
    os.makedirs(data)
    server = Server(data).start()
    server.stop()
    result = run_cli("status", "--data", data, "--witness-dir", tmp_path / "nowhere")
    assert result.exit_code == 2 and "witness directory" in result.stderr
