"""Notifications: retried on what can pass (connection errors, 429, 5xx), not on what cannot
(other 4xx); a destination that stays down is logged with the alert id and never blocks."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from otaudit.cli.options import notify_settings
from otaudit.demo import free_port
from otaudit.detect.notify import Notifier, NotifySettings, check_url, parse_header, redact_url
from otaudit.errors import ConfigError
from otaudit.metrics import Metrics
from support import otaudit


class Replies(BaseHTTPRequestHandler):
    """Answers each POST with the next (status, Retry-After) of ``script``."""

    script: ClassVar[list[tuple[int, str | None]]] = []
    bodies: ClassVar[list[tuple[str, bytes]]] = []
    headers_seen: ClassVar[list[dict[str, str]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        status, retry_after = self.script.pop(0) if self.script else (200, None)
        type(self).bodies.append((self.headers["Content-Type"], body))
        type(self).headers_seen.append(dict(self.headers.items()))
        self.send_response(status)
        if retry_after is not None:
            self.send_header("Retry-After", retry_after)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def endpoint() -> Iterator[str]:
    Replies.script, Replies.bodies, Replies.headers_seen = [], [], []
    httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), Replies)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}/alerts"
    httpd.shutdown()
    httpd.server_close()


def notifier(**settings: Any) -> tuple[Notifier, list[float]]:
    slept: list[float] = []
    return Notifier(NotifySettings(**settings), sleep=slept.append), slept


def test_retries_with_backoff_and_retry_after(endpoint: str) -> None:
    Replies.script = [(503, None), (429, "7"), (502, None)]
    n, slept = notifier(webhook=endpoint, otlp_endpoint=endpoint)
    n.send("a1", {"id": "a1"}, b"\x0a\x00")
    n.close()
    assert slept == [1.0, 7.0, 4.0]  # doubling from 1 s; Retry-After when longer
    assert n.delivered == 2 and n.failed == 0
    kinds = [content_type for content_type, _ in Replies.bodies]
    assert kinds == ["application/json"] * 4 + ["application/x-protobuf"]
    assert Replies.bodies[-1][1] == b"\x0a\x00"


@pytest.mark.parametrize("status", [400, 301], ids=["refused", "redirected"])
def test_a_refusal_or_a_redirect_is_not_retried(
    endpoint: str, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    # A redirect is not followed: it would resend the alert, and its credentials, elsewhere.
    Replies.script = [(status, None)]
    n, slept = notifier(webhook=endpoint)
    with caplog.at_level(logging.ERROR, "otaudit.alerts"):
        n.send("a2", {"id": "a2"}, b"")
        n.close()
    assert slept == [] and n.failed == 1 and n.delivered == 0 and len(Replies.bodies) == 1
    assert "alert a2 NOT sent to the webhook" in caplog.text and f"HTTP {status}" in caplog.text


def test_an_unreachable_destination_gives_up_after_the_attempts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    n, slept = notifier(webhook=f"http://127.0.0.1:{free_port()}/x", attempts=4, timeout_s=2)
    with caplog.at_level(logging.WARNING, "otaudit.alerts"):
        n.send("a3", {"id": "a3"}, b"")
        n.close()
    assert slept == [1.0, 2.0, 4.0] and n.failed == 1
    assert "alert a3 NOT sent" in caplog.text and "otaudit alerts" in caplog.text


def test_a_full_queue_is_reported_not_blocking(caplog: pytest.LogCaptureFixture) -> None:
    silent = socket.socket()  # accepts connections, never answers: the worker hangs on it
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    url = f"http://127.0.0.1:{silent.getsockname()[1]}/x"
    n = Notifier(NotifySettings(webhook=url, max_queue=1, attempts=1, timeout_s=1),
                 sleep=lambda _: None)  # fmt: skip
    with caplog.at_level(logging.ERROR, "otaudit.alerts"):
        for i in range(4):
            n.send(f"q{i}", {"id": f"q{i}"}, b"")
        n.close()
    silent.close()
    assert n.failed == 4 and n.delivered == 0
    assert "notifications already waiting" in caplog.text
    # /metrics tells the drops (a full queue) from the give-ups (after the attempts).
    dropped = sum(n.dropped.values())
    assert dropped >= 2  # one waits in the queue, one at most is being sent
    (severity,) = [s for s, count in n.dropped.items() if count]
    metrics = Metrics()
    metrics.watch_notifications(n)
    text = metrics.render().decode()
    assert f'otaudit_notifications_dropped_total{{severity="{severity}"}} {dropped}.0' in text
    assert f"otaudit_notifications_failed_total {4 - dropped}.0" in text
    assert "otaudit_notifications_delivered_total 0.0" in text


def test_options_are_checked() -> None:
    assert parse_header("Authorization: Bearer x", "--h") == ("Authorization", "Bearer x")
    assert parse_header("X-Key=v=1", "--h") == ("X-Key", "v=1")
    with pytest.raises(ConfigError, match="--h expects 'Name: value'"):
        parse_header("novalue", "--h")
    with pytest.raises(ConfigError, match="--alert-webhook expects an http:// or https:// URL"):
        check_url("ftp://example.com/x", "--alert-webhook")
    result = otaudit("serve", "--data", "/nonexistent/never", "--alert-webhook", "hooks.local")
    assert result.returncode == 2
    assert "--alert-webhook expects an http:// or https:// URL, got 'hooks.local'" in result.stderr
    short = Path(tempfile.mkdtemp()) / "secret"
    short.write_text("too short")
    short.chmod(0o600)
    weak = otaudit("serve", "--alert-webhook", "http://h/x", "--alert-webhook-secret-file",
                   str(short))  # fmt: skip
    assert weak.returncode == 2
    assert f"--alert-webhook-secret-file {short}: 9 bytes; use at least 16" in weak.stderr
    alone = otaudit("detect", "--alert-webhook-secret-file", str(short))
    assert alone.returncode == 2 and "needs --alert-webhook" in alone.stderr
    off = otaudit("serve", "--no-detect", "--rules", "x.yaml")
    assert off.returncode == 2 and "--no-detect turns detection off" in off.stderr


def test_a_destination_that_does_not_speak_http_does_not_stop_the_notifier(
    endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    babbler = socket.socket()
    babbler.bind(("127.0.0.1", 0))
    babbler.listen(8)

    def babble() -> None:
        while True:
            try:
                conn, _ = babbler.accept()
            except OSError:
                return
            with conn:  # read the request first: answering early could break the pipe instead
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    request += chunk
                conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")

    threading.Thread(target=babble, daemon=True).start()
    n, slept = notifier(webhook=f"http://127.0.0.1:{babbler.getsockname()[1]}/", attempts=2)
    with caplog.at_level(logging.ERROR, "otaudit.alerts"):
        n.send("b1", {"id": "b1"}, b"")
        n.close()
    babbler.close()
    assert n.failed == 1 and slept == [1.0] and "BadStatusLine" in caplog.text
    # The same notifier goes on with the next alert elsewhere.
    n2, _ = notifier(webhook=endpoint)
    n2.send("b2", {"id": "b2"}, b"")
    n2.close()
    assert n2.delivered == 1


def test_close_gives_up_on_time_and_names_what_was_not_sent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    url = f"http://127.0.0.1:{silent.getsockname()[1]}/x"
    n = Notifier(NotifySettings(webhook=url, timeout_s=1))
    with caplog.at_level(logging.ERROR, "otaudit.alerts"):
        for i in range(8):
            n.send(f"c{i}", {"id": f"c{i}"}, b"")
        started = time.monotonic()
        n.close(timeout_s=0.5)
        took = time.monotonic() - started
    silent.close()
    assert took < 4  # not eight times the request timeout
    assert n.failed == 8 and all(f"alert c{i} NOT sent" in caplog.text for i in range(8))


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("X Bad: v", "expects 'Name: value' with an HTTP header name"),
        ("X-Ok: a\rb", "the value of X-Ok has control characters"),
        (": v", "expects 'Name: value'"),
    ],
)
def test_headers_are_checked(header: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_header(header, "--alert-webhook-header")


# -- secrets: files only others cannot read, the environment, never the command line ------


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The otaudit CLI with a short timeout: a command that waits on a FIFO fails the test."""
    return subprocess.run([sys.executable, "-m", "otaudit", *args], capture_output=True,
                          text=True, timeout=30, env={**os.environ, **(env or {})})  # fmt: skip


def secret_file(directory: Path, name: str, text: str, mode: int) -> Path:
    path = directory / name
    path.write_text(text)
    path.chmod(mode)
    return path


SECRET_OPTIONS = [
    ("--alert-webhook-secret-file", ["--alert-webhook", "http://hooks.local/x"]),
    ("--alert-webhook-header-file", ["--alert-webhook", "http://hooks.local/x"]),
    ("--alert-otlp-header-file", ["--alert-otlp-endpoint", "http://collector.local/v1/logs"]),
    ("--redaction-key-file", ["--redact", "hmac:enduser.id"]),
]


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
@pytest.mark.parametrize(("option", "args"), SECRET_OPTIONS, ids=[o for o, _ in SECRET_OPTIONS])
def test_a_secret_file_others_may_access_is_refused(
    tmp_path: Path, option: str, args: list[str], mode: int
) -> None:
    path = secret_file(tmp_path, "secret", "Authorization: Bearer 0123456789abcdef\n", mode)
    result = run("serve", "--data", str(tmp_path / "data"), *args, option, str(path))
    assert result.returncode == 2, result.stderr
    assert (
        f"{option} {path} has mode {mode:04o}, which allows group or other access; "
        f"it must be 0600 or stricter (chmod 600 {path})"
    ) in result.stderr
    assert "0123456789abcdef" not in result.stderr
    assert not (tmp_path / "data").exists()  # refused before anything was created


def test_pseudonym_refuses_a_key_others_may_read(tmp_path: Path) -> None:
    key = secret_file(tmp_path, "redaction.key", "5d2c0b2f0b8e4f0aa9a8e3f7c6d5b4a3\n", 0o644)
    refused = run("pseudonym", "--redaction-key-file", str(key), "alice@example.com")
    assert refused.returncode == 2 and "has mode 0644" in refused.stderr
    key.chmod(0o400)
    accepted = run("pseudonym", "--redaction-key-file", str(key), "alice@example.com")
    assert accepted.returncode == 0, accepted.stderr
    assert accepted.stdout.startswith("hmac-sha256:")


@pytest.mark.parametrize(("option", "args"), SECRET_OPTIONS, ids=[o for o, _ in SECRET_OPTIONS])
def test_a_fifo_as_a_secret_file_is_refused_not_waited_on(
    tmp_path: Path, option: str, args: list[str]
) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)  # nobody ever writes to it: reading it would wait forever
    result = run("serve", "--data", str(tmp_path / "data"), *args, option, str(fifo))
    assert result.returncode == 2
    assert f"{option} {fifo} is not a regular file" in result.stderr


@pytest.mark.parametrize("option", ["--alert-webhook-header", "--alert-otlp-header"])
def test_header_values_on_the_command_line_are_refused(tmp_path: Path, option: str) -> None:
    result = run(
        "serve", "--data", str(tmp_path / "data"), "--alert-webhook", "http://hooks.local/x",
        "--alert-otlp-endpoint", "http://collector.local/v1/logs",
        option, "Authorization: Bearer s3cret-token",
    )  # fmt: skip
    assert result.returncode == 2
    assert f"{option} is refused: header values on the command line are visible" in result.stderr
    assert f"{option}-file FILE" in result.stderr
    assert "s3cret-token" not in result.stderr


@pytest.mark.parametrize(
    ("args", "env", "where"),
    [
        (["--alert-webhook", "https://alice:pw-s3cret@hooks.local/x"], {}, "--alert-webhook"),
        (["--alert-webhook", "https://pw-s3cret@hooks.local/x"], {}, "--alert-webhook"),
        (["--alert-otlp-endpoint", "http://a:pw-s3cret@collector.local/v1/logs"], {},
         "--alert-otlp-endpoint"),
        ([], {"OTAUDIT_ALERT_WEBHOOK": "https://alice:pw-s3cret@hooks.local/x?t=1"},
         "$OTAUDIT_ALERT_WEBHOOK"),
        (["--alert-webhook", "pw-s3cret@hooks.local"], {}, "--alert-webhook"),
    ],
)  # fmt: skip
def test_credentials_in_a_url_are_refused_and_never_shown(
    tmp_path: Path, args: list[str], env: dict[str, str], where: str
) -> None:
    result = run("serve", "--data", str(tmp_path / "data"), *args, env=env)
    assert result.returncode == 2
    assert where in result.stderr
    assert "pw-s3cret" not in result.stderr and "t=1" not in result.stderr


def test_headers_come_from_a_file_and_the_environment(
    endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = secret_file(tmp_path, "headers", "# for the alert receiver\n\n"
                       "Authorization: Bearer s3cret-token\nX-Tenant: audit\n", 0o600)  # fmt: skip
    monkeypatch.setenv("OTAUDIT_ALERT_WEBHOOK", endpoint)
    monkeypatch.setenv("OTAUDIT_ALERT_WEBHOOK_HEADERS", "X-From-Env: yes")
    settings = notify_settings(
        alert_webhook=None, alert_webhook_header=(), alert_webhook_header_file=str(path),
        alert_webhook_secret_file=None, alert_otlp_endpoint=None, alert_otlp_header=(),
        alert_otlp_header_file=None,
    )  # fmt: skip
    assert settings.webhook == endpoint
    assert "s3cret-token" not in repr(settings) and endpoint not in repr(settings)
    n = Notifier(settings)
    n.send("h1", {"id": "h1"}, b"")
    n.close()
    assert n.delivered == 1
    seen = Replies.headers_seen[0]
    assert (seen["Authorization"], seen["X-Tenant"], seen["X-From-Env"]) == (
        "Bearer s3cret-token", "audit", "yes")  # fmt: skip


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Authorization Bearer s3cret-token", "line 2 expects 'Name: value'"),
        ("X-Ok: s3cret-token\x7f", "line 2: the value of X-Ok has control characters"),
        ("X-Ok: s3cret-token\u2603", "line 2: the value of X-Ok is not Latin-1 text"),
    ],
)
def test_a_bad_header_file_line_is_named_not_shown(tmp_path: Path, text: str, message: str) -> None:
    path = secret_file(tmp_path, "headers", f"X-First: 1\n{text}\n", 0o600)
    result = run("serve", "--data", str(tmp_path / "data"), "--alert-webhook",
                 "http://hooks.local/x", "--alert-webhook-header-file", str(path))  # fmt: skip
    assert result.returncode == 2
    assert f"--alert-webhook-header-file {path} {message}" in result.stderr
    assert "s3cret-token" not in result.stderr


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.local/alerts", "https://hooks.local/alerts"),
        ("https://u:p@hooks.local:8443/a?token=t#f", "https://***@hooks.local:8443/a?***#***"),
        ("http://hooks.local/a?", "http://hooks.local/a"),
        ("u:p@hooks.local", "***@hooks.local"),
        ("hooks.local", "hooks.local"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_logs_show_the_url_without_its_query_string(
    endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    Replies.script = [(503, None), (400, None)]
    n, _ = notifier(webhook=f"{endpoint}?token=s3cret-token", attempts=2)
    with caplog.at_level(logging.INFO, "otaudit.alerts"):
        n.send("r1", {"id": "r1"}, b"")
        n.send("r2", {"id": "r2"}, b"")
        n.close()
    assert n.failed == 1 and n.delivered == 1
    assert f"{endpoint}?***" in caplog.text and "s3cret-token" not in caplog.text
