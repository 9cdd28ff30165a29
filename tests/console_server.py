"""A real ``otaudit serve --console`` for the console's end-to-end tests (HTTP and browser):
the ledger's records (config changes past a thousand, hostile values, a role change that
raises an alert), the API tokens, and the helpers that read its pages and the ledger."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from otaudit.demo import free_port
from support import Server, otaudit

__all__ = [
    "COLUMNS",
    "CONFIG_RECORDS",
    "PAYLOADS",
    "SHARED_TRACE",
    "Console",
    "csrf",
    "hostile_logs",
    "post_otlp",
    "seqs",
    "sql",
    "start_console",
    "token",
    "traces",
]

CONFIG_RECORDS = 1150
PAYLOADS = ("<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "javascript:alert(1)")
COLUMNS = ("seq, timestamp, signal, service, actor, actor_role, client_address, action, target,"
           " resource_type, result, name, trace_id, span_id")  # fmt: skip
SHARED_TRACE = (7).to_bytes(16, "big")


def _kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def traces(now_ns: int) -> bytes:
    """The test's records: config changes (three in one trace), hostile values, a role
    change that raises a privilege_escalation alert."""
    req = ExportTraceServiceRequest()
    resource = req.resource_spans.add()
    resource.resource.attributes.append(_kv("service.name", "console-test"))
    scope = resource.scope_spans.add()
    n = 1000
    for i in range(CONFIG_RECORDS):
        n += 1
        span = scope.spans.add(
            trace_id=SHARED_TRACE if i < 3 else n.to_bytes(16, "big"),
            span_id=n.to_bytes(8, "big"),
            name=f"deploy step {i}",
            start_time_unix_nano=now_ns - (CONFIG_RECORDS - i) * 1_000_000,
        )
        span.attributes.extend([
            _kv("audit.action", "config.update"), _kv("user.id", ("alice", "bob", "carol")[i % 3]),
            _kv("audit.result", "failure" if i % 10 == 0 else "success"),
        ])  # fmt: skip
    for i, payload in enumerate(PAYLOADS):
        n += 1
        span = scope.spans.add(trace_id=n.to_bytes(16, "big"), span_id=n.to_bytes(8, "big"),
                               name=f"xss {payload}", start_time_unix_nano=now_ns + i)  # fmt: skip
        span.attributes.extend([_kv("audit.action", "xss.probe"), _kv("user.id", payload),
                                _kv("audit.target", payload), _kv("note", payload)])  # fmt: skip
    n += 1
    span = scope.spans.add(trace_id=n.to_bytes(16, "big"), span_id=n.to_bytes(8, "big"),
                           name="role change", start_time_unix_nano=now_ns)  # fmt: skip
    span.attributes.extend([_kv("audit.action", "user.role_change"), _kv("user.id", "mallory"),
                            _kv("audit.target", "bob"),
                            _kv("audit.new_value", "admin")])  # fmt: skip
    return req.SerializeToString()


def hostile_logs(now_ns: int) -> bytes:
    """Log records whose body and attributes carry the hostile values (action xss.probe)."""
    req = ExportLogsServiceRequest()
    resource = req.resource_logs.add()
    resource.resource.attributes.append(_kv("service.name", "console-test"))
    scope = resource.scope_logs.add()
    for i, payload in enumerate(PAYLOADS):
        log = scope.log_records.add(time_unix_nano=now_ns + 10 + i,
                                    body=AnyValue(string_value=f"log {payload}"))  # fmt: skip
        log.attributes.extend([_kv("audit.action", "xss.probe"), _kv("user.id", payload),
                               _kv("audit.target", payload), _kv(payload, payload)])  # fmt: skip
    return req.SerializeToString()


def post_otlp(server: Server, ingest_token: str, path: str, body: bytes) -> None:
    """POST one OTLP/HTTP protobuf request (``/v1/traces`` or ``/v1/logs``)."""
    response = httpx.post(f"{server.http_url}{path}", content=body, timeout=60,
                          headers={"Content-Type": "application/x-protobuf",
                                   "Authorization": f"Bearer {ingest_token}"})  # fmt: skip
    assert response.status_code == 200, response.text


@dataclass
class Console:
    server: Server
    base: str
    tokens: dict[str, str]
    since: str
    store_args: list[str]

    @contextlib.contextmanager
    def client(self, scope: str = "read") -> Iterator[httpx.Client]:
        """A client signed in with the token of ``scope``."""
        with httpx.Client(base_url=self.base, timeout=60) as client:
            response = client.post("/console/signin", data={"token": self.tokens[scope]})
            assert response.status_code == 303, response.text
            yield client


def token(data: Path, store_args: list[str], *scopes: str) -> str:
    """A new API token of ``scopes`` on the ledger of ``data``."""
    args = [a for scope in scopes for a in ("--scope", scope)]
    result = otaudit("token", "create", "--data", str(data), *store_args[:2], *args)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


@contextlib.contextmanager
def start_console(directory: Path, store_args: list[str], sql_args: list[str], *,
                  logs: bool = False) -> Iterator[Console]:  # fmt: skip
    """Migrate a ledger, make ingest, read and admin tokens, start ``serve --console`` on
    loopback (with the detector), send :func:`traces` (and :func:`hostile_logs` when
    ``logs``); stop the server when the block ends."""
    data = directory / "data"
    assert otaudit("migrate", "--data", str(data), *store_args).returncode == 0
    tokens = {scope: token(data, store_args, scope) for scope in ("ingest", "read", "admin")}
    port = free_port()
    args = [*store_args, *sql_args, "--console", f"127.0.0.1:{port}"]
    server = Server(data, extra_args=args, detect=True).start()
    try:
        now_ns = time.time_ns()
        post_otlp(server, tokens["ingest"], "/v1/traces", traces(now_ns))
        if logs:
            post_otlp(server, tokens["ingest"], "/v1/logs", hostile_logs(now_ns))
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now_ns / 1e9 - 3600))
        yield Console(server, f"http://127.0.0.1:{port}", tokens, since, [*store_args, *sql_args])
    finally:
        server.stop()


def seqs(html: str) -> list[int]:
    """The seqs of the Records page's rows."""
    return [int(s) for s in re.findall(r'<tr data-seq="(\d+)">', html)]


def csrf(html: str) -> str:
    """The CSRF field of a page's forms."""
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found is not None, html
    return found[1]


def sql(console: Console, statement: str) -> str:
    """``otaudit sql --format csv`` over the console's ledger."""
    result = otaudit("sql", "--data", str(console.server.data), *console.store_args,
                     "--format", "csv", statement)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout
