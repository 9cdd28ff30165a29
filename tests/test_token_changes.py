"""The first token turns authentication on for every listener: the command that creates it
says so, and a running server logs the change (and every token it starts or stops
accepting) when it reads the token table again."""

from __future__ import annotations

from pathlib import Path

from polling import wait_for_text
from support import Server, otaudit


def test_the_first_token_is_announced_by_the_command_and_the_server(tmp_path: Path) -> None:
    log_file = tmp_path / "server.log"
    server = Server(tmp_path / "data", log_file=log_file).start()
    data = str(server.data)
    try:
        assert "no API tokens" in log_file.read_text()
        first = otaudit("token", "create", "--data", data, "--scope", "ingest", "--name", "app")
        assert first.returncode == 0, first.stderr
        assert "authentication is now on: this is the ledger's first token" in first.stderr
        (line,) = [x for x in first.stderr.splitlines() if x.startswith("token ")]
        first_id = line.split()[1]
        log = wait_for_text(log_file, f"token {first_id} (app, scopes ingest) is accepted")
        assert "authentication is now on: 1 API token(s) exist" in log
        forger = "x\n2026-01-01 00:00:00,000 WARNING otaudit.server: \x1b[2Jforged"
        second = otaudit("token", "create", "--data", data, "--scope", "read", "--name", forger)
        assert second.returncode == 0, second.stderr
        assert "authentication is now on" not in second.stderr
        assert (
            "(x\\n2026-01-01 00:00:00,000 WARNING otaudit.server: \\x1b[2Jforged)" in second.stderr
        )
        log = wait_for_text(log_file, "\\x1b[2Jforged, scopes read) is accepted")
        assert not any(line.startswith("2026-01-01") for line in log.splitlines())
        revoked = otaudit("token", "revoke", "--data", data, first_id)
        assert revoked.returncode == 0, revoked.stderr
        log = wait_for_text(log_file, f"token {first_id} (app) was revoked at")
    finally:
        server.stop()
    assert log.count("authentication is now on") == 1
