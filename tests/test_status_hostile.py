"""``otaudit status`` asks whatever answers at ``--http``: a server that answers too much,
too slowly, the wrong shape or with control characters gets one line, bounded in time and
memory, and is never obeyed by the terminal."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from minilog import run_cli, sealed_ledger
from otaudit.cli import status as status_cli
from support import audit_request


def _serve(answer: Callable[[socket.socket], None]) -> Iterator[str]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    stop = threading.Event()

    def run() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.recv(65536)
                with contextlib.suppress(OSError):  # the client gave up: fine
                    answer(conn)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield f"127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join(5)
    listener.close()


def _ok(body: bytes) -> Callable[[socket.socket], None]:
    def send(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n" + body)

    return send


def _drip(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\n")
    for _ in range(30):
        conn.sendall(b"X-A: b\r\n")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("status") / "data"
    sealed_ledger(data, audit_request(2))
    return data


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (_ok(b'{"a":"' + b"x" * (2 << 20) + b'"}'), "answered more than"),
        (_ok(b'{"listeners": [1, 2]}'), "did not answer an otaudit status (wrong shape)"),
        (_ok(b"[" * 200_000), "did not answer JSON"),
        (_drip, "no answer from"),
    ],
)
def test_a_hostile_status_server_gets_one_line(
    ledger: Path, answer: Callable[[socket.socket], None], said: str
) -> None:
    for address in _serve(answer):
        started = time.monotonic()
        result = run_cli("status", "--data", ledger, "--http", address)
        assert time.monotonic() - started < status_cli.SERVER_TIMEOUT_S + 3
        assert result.exit_code == 0, result.stderr
        assert said in result.stdout


def test_what_a_server_says_is_shown_escaped(ledger: Path) -> None:
    body = b'{"started_at": "\\u001b]0;PWNED\\u0007", "listeners": {"http": "x\\rY\\nZ"}}'
    for address in _serve(_ok(body)):
        result = run_cli("status", "--data", ledger, "--http", address)
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    assert "\\x1b]0;PWNED" in result.stdout and "Y\\nZ" in result.stdout


def test_only_http_is_asked(ledger: Path) -> None:
    result = run_cli("status", "--data", ledger, "--http", "file:///dev/zero#")
    assert "only an http:// or https:// address" in result.stdout
