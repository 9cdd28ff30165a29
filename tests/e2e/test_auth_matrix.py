"""Authentication: every endpoint x every kind of credential, over HTTP and gRPC.

Once a token exists, each request needs a valid, unrevoked token with the
endpoint's scope: 401 (UNAUTHENTICATED) without one, 403 (PERMISSION_DENIED)
with the wrong scope.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from otaudit.demo import free_port, wait_ready
from support import Server, audit_request, otaudit

CREDENTIALS = ("none", "not-bearer", "malformed", "unknown", "revoked", "ingest", "read", "admin")


@dataclass
class Secured:
    server: Server
    read_api: str
    tokens: dict[str, str]  # credential kind -> Authorization value (absent for "none")


def _create(data: Path, *args: str) -> str:
    result = otaudit("token", "create", "--data", str(data), *args)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    data = tmp_path_factory.mktemp("auth") / "data"
    assert otaudit("migrate", "--data", str(data)).returncode == 0  # tokens before serving
    tokens = {scope: _create(data, "--scope", scope, "--name", f"{scope}-client")
              for scope in ("ingest", "read", "admin")}  # fmt: skip
    revoked = _create(data, "--scope", "ingest", "--scope", "read", "--scope", "admin")
    revoke = otaudit("token", "revoke", "--data", str(data), revoked.split("_")[1])
    assert revoke.returncode == 0, revoke.stderr
    headers = {kind: f"Bearer {token}" for kind, token in tokens.items()}
    headers |= {
        "not-bearer": "Basic dXNlcjpwYXNzd29yZA==",
        "malformed": "Bearer not-a-token",
        "unknown": "Bearer otaudit_0123456789ab_" + "A" * 43,
        "revoked": f"Bearer {revoked}",
    }
    port = free_port()
    server = Server(data, extra_args=["--read-api", f"127.0.0.1:{port}"]).start()
    yield Secured(server, f"http://127.0.0.1:{port}", headers)
    server.stop()


def _expected(credential: str, scope: str | None) -> int:
    if scope is None:
        return 200
    if credential in ("none", "not-bearer", "malformed", "unknown", "revoked"):
        return 401
    return 200 if credential == scope else 403


HTTP_ENDPOINTS = [
    ("POST", "otlp", "/v1/traces", "ingest"),
    ("POST", "otlp", "/v1/logs", "ingest"),
    ("POST", "otlp", "/v1/metrics", "ingest"),
    ("GET", "otlp", "/metrics", "admin"),
    ("GET", "otlp", "/status", "admin"),
    ("GET", "otlp", "/healthz", None),
    ("GET", "read", "/api/v1/records?limit=1", "read"),
    ("POST", "read", "/api/v1/sql", "read"),
    ("GET", "read", "/api/v1/openapi.json", None),
]
BODIES = {
    "/v1/traces": audit_request(1),
    "/v1/logs": ExportLogsServiceRequest().SerializeToString(),
    "/v1/metrics": ExportMetricsServiceRequest().SerializeToString(),
}


@pytest.mark.parametrize("credential", CREDENTIALS)
@pytest.mark.parametrize(
    ("method", "listener", "path", "scope"),
    HTTP_ENDPOINTS,
    ids=[f"{m} {p.split('?')[0]}" for m, _, p, _ in HTTP_ENDPOINTS],
)
def test_http(
    secured: Secured, method: str, listener: str, path: str, scope: str | None, credential: str
) -> None:
    base = secured.server.http_url if listener == "otlp" else secured.read_api
    headers = {}
    if credential != "none":
        headers["Authorization"] = secured.tokens[credential]
    if path in BODIES:
        headers["Content-Type"] = "application/x-protobuf"
        content = BODIES[path]
    elif path == "/api/v1/sql":
        headers["Content-Type"] = "application/json"
        content = json.dumps({"sql": "SELECT count(*) FROM audit_records"}).encode()
    else:
        content = None
    response = httpx.request(method, base + path, headers=headers, content=content, timeout=30)
    expected = _expected(credential, scope)
    assert response.status_code == expected, response.text
    if expected == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


GRPC_SERVICES = [
    ("opentelemetry.proto.collector.trace.v1.TraceService", audit_request(1)),
    ("opentelemetry.proto.collector.logs.v1.LogsService",
     ExportLogsServiceRequest().SerializeToString()),
    ("opentelemetry.proto.collector.metrics.v1.MetricsService",
     ExportMetricsServiceRequest().SerializeToString()),
]  # fmt: skip
GRPC_CODE = {200: grpc.StatusCode.OK, 401: grpc.StatusCode.UNAUTHENTICATED,
             403: grpc.StatusCode.PERMISSION_DENIED}  # fmt: skip


@pytest.mark.parametrize("credential", CREDENTIALS)
@pytest.mark.parametrize(("service", "body"), GRPC_SERVICES,
                         ids=[s.rsplit(".", 1)[1] for s, _ in GRPC_SERVICES])  # fmt: skip
def test_grpc(secured: Secured, service: str, body: bytes, credential: str) -> None:
    metadata = () if credential == "none" else (("authorization", secured.tokens[credential]),)
    with grpc.insecure_channel(secured.server.grpc_endpoint) as channel:
        export = channel.unary_unary(
            f"/{service}/Export", request_serializer=None, response_deserializer=None
        )
        try:
            export(body, metadata=metadata, timeout=30)
            code = grpc.StatusCode.OK
        except grpc.RpcError as exc:
            code = exc.code()
    assert code == GRPC_CODE[_expected(credential, "ingest")]


def test_sdk_exporters_send_their_token(secured: Secured) -> None:
    header = secured.tokens["ingest"]
    for exporter in (
        HttpSpanExporter(endpoint=f"{secured.server.http_url}/v1/traces",
                         headers={"Authorization": header}),
        GrpcSpanExporter(endpoint=secured.server.grpc_endpoint, insecure=True,
                         headers=(("authorization", header),)),
    ):  # fmt: skip
        provider = TracerProvider(resource=Resource.create({"service.name": "with-token"}))
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        with provider.get_tracer("t").start_as_current_span("login") as span:
            span.set_attribute("audit.action", "login")
            span.set_attribute("enduser.id", "alice")
        provider.shutdown()
    response = httpx.post(
        f"{secured.read_api}/api/v1/sql",
        headers={"Authorization": secured.tokens["read"]},
        json={"sql": "SELECT count(*) FROM audit_spans WHERE service = 'with-token'"},
        timeout=30,
    )
    assert response.json()["rows"] == [[2]]
    reads = httpx.post(
        f"{secured.read_api}/api/v1/sql",
        headers={"Authorization": secured.tokens["read"]},
        json={"sql": "SELECT actor, attributes['audit.token.id'] FROM audit_logs"
                     " WHERE action = 'audit_log.query' ORDER BY seq DESC LIMIT 1"},
        timeout=30,
    )  # fmt: skip
    token_id = secured.tokens["read"].split("_")[1]
    assert reads.json()["rows"] == [["read-client", token_id]]


def test_token_changes_are_on_the_audit_trail(secured: Secured) -> None:
    rows = otaudit("sql", "--data", str(secured.server.data), "--format", "json",
                   "SELECT action, target, attributes['audit.token.name'] AS name FROM audit_logs"
                   " WHERE resource_type = 'api_token' ORDER BY seq")  # fmt: skip
    assert rows.returncode == 0, rows.stderr
    actions = [(r["action"], r["name"]) for r in json.loads(rows.stdout)]
    assert actions[:3] == [
        ("otaudit.token_create", f"{s}-client") for s in ("ingest", "read", "admin")
    ]
    assert [a for a, _ in actions[3:]] == ["otaudit.token_create", "otaudit.token_revoke"]
    listed = otaudit("token", "list", "--data", str(secured.server.data), "--format", "jsonl")
    tokens = [json.loads(line) for line in listed.stdout.splitlines()]
    assert len(tokens) == 4 and sum(t["revoked"] is not None for t in tokens) == 1
    table = otaudit("token", "list", "--data", str(secured.server.data))
    assert "4 token(s)" in table.stdout
    assert "otaudit_" not in listed.stdout + table.stdout  # never the secret


def test_without_tokens_only_loopback(tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = otaudit("serve", "--data", str(data), "--http", f"0.0.0.0:{free_port()}",
                     "--grpc", f"127.0.0.1:{free_port()}")  # fmt: skip
    assert result.returncode == 2
    assert "refusing to listen on --http 0.0.0.0:" in result.stderr
    assert "otaudit token create --scope ingest" in result.stderr
    port = free_port()
    exposed = subprocess.Popen(
        [sys.executable, "-m", "otaudit", "serve", "--data", str(data), "--unsafe-no-auth",
         "--http", f"0.0.0.0:{port}", "--grpc", f"127.0.0.1:{free_port()}"],
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_ready(f"http://127.0.0.1:{port}/healthz", exposed)
    finally:
        exposed.send_signal(signal.SIGTERM)
        _, err = exposed.communicate(timeout=30)
    stderr = err.decode()
    assert "no API tokens: requests are not authenticated (--http 0.0.0.0:" in stderr
