"""Run the example accounts service on a free port and send it a day's worth of requests."""

from __future__ import annotations

import json
import secrets
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

import uvicorn

from otaudit.examples.accounts import create_app
from otaudit.examples.telemetry import setup

# (method, path, bearer user, body, audit record?) -- what the service's users do.
REQUESTS: list[tuple[str, str, str | None, dict[str, object] | None, str]] = [
    ("POST", "/login", None, {"user": "alice", "password": "correct horse"}, "span"),
    ("POST", "/login", None, {"user": "dave", "password": "guess1"}, "span"),
    ("POST", "/login", None, {"user": "dave", "password": "guess2"}, "span"),
    ("PUT", "/users/bob/role", "alice", {"role": "editor"}, "span"),
    ("GET", "/customers/cust-1042", "bob", None, "span"),
    ("PUT", "/config/mfa_required", "alice", {"value": True}, "log"),
    ("GET", "/health", None, None, ""),
    ("GET", "/health", None, None, ""),
]


@dataclass(frozen=True)
class Drive:
    """What was sent through the example service."""

    requests: int
    audit_spans: int
    audit_logs: int
    other_spans: int


def _call(base: str, method: str, path: str, token: str | None, body: object) -> int:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def drive(otaudit_http: str, port: int) -> Drive:
    """Serve the example on ``port``, exporting to ``otaudit_http``; send REQUESTS; flush."""
    tracer_provider, logger_provider = setup(otaudit_http)
    # Each user's token, as the service's authentication would have issued it.
    tokens = {user: secrets.token_urlsafe(24) for *_, user, _, _ in REQUESTS if user is not None}
    app = create_app({token: user for user, token in tokens.items()})
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    base = f"http://127.0.0.1:{port}"
    try:
        for method, path, user, body, _ in REQUESTS:
            _call(base, method, path, None if user is None else tokens[user], body)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        tracer_provider.force_flush()
        logger_provider.force_flush()
    kinds = [kind for *_, kind in REQUESTS]
    return Drive(len(REQUESTS), kinds.count("span"), kinds.count("log"), kinds.count(""))
