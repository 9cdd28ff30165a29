"""Test support: a real ``otaudit serve`` process on free ports, and the CLI as users run it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor

from otaudit.demo import free_port, wait_ready


@dataclass
class Server:
    """A running ``otaudit serve`` subprocess and how to reach it."""

    data: Path
    http_port: int = 0
    grpc_port: int = 0
    extra_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    #: Run the detection rules (off by default: other tests count exactly what they send).
    detect: bool = False
    #: A command the server runs under (e.g. ``["prlimit", "--nofile=256"]``).
    launcher: list[str] = field(default_factory=list)
    #: Where the server's stderr goes (default: the test's stderr).
    log_file: Path | None = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_endpoint(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start(self) -> Server:
        self.http_port, self.grpc_port = free_port(), free_port()
        cmd = [
            *self.launcher,
            sys.executable,
            "-m",
            "otaudit",
            "serve",
            "--data",
            str(self.data),
            "--http",
            f"127.0.0.1:{self.http_port}",
            "--grpc",
            self.grpc_endpoint,
            "--checkpoint-interval",
            "0.1",
            *([] if self.detect else ["--no-detect"]),
            *self.extra_args,
        ]
        with contextlib.ExitStack() as files:
            log = None if self.log_file is None else files.enter_context(self.log_file.open("ab"))
            self.proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                         stderr=log)  # fmt: skip
        wait_ready(f"{self.http_url}/healthz", self.proc)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=30)
        self.proc = None
        return code

    def metrics(self) -> dict[str, float]:
        """The server's /metrics as {"name{labels}": value} (samples only)."""
        with urllib.request.urlopen(f"{self.http_url}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out


def otaudit(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the otaudit CLI as a user would and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "otaudit", *args],
        capture_output=True,
        text=True,
        check=check,
        timeout=120,
    )


_counter = iter(range(1, 1 << 62))


def audit_request(spans: int, payload_bytes: int = 200) -> bytes:
    """An OTLP traces request of distinct audit spans (protobuf bytes)."""
    req = ExportTraceServiceRequest()
    scope = req.resource_spans.add().scope_spans.add()
    for _ in range(spans):
        n = next(_counter)
        span = scope.spans.add(trace_id=n.to_bytes(16, "big"), span_id=n.to_bytes(8, "big"))
        span.name = "config.update"
        span.start_time_unix_nano = 1764288000000000000 + n
        span.attributes.extend(
            [
                KeyValue(key="audit.action", value=AnyValue(string_value="config_change")),
                KeyValue(key="user.id", value=AnyValue(string_value="alice")),
                KeyValue(key="payload", value=AnyValue(string_value="x" * payload_bytes)),
            ]
        )
    return req.SerializeToString()


def post(server: Server, body: bytes) -> httpx.Response:
    """POST a protobuf traces request to the server."""
    return httpx.post(
        f"{server.http_url}/v1/traces",
        content=body,
        headers={"Content-Type": "application/x-protobuf"},
        timeout=30,
    )


class KeepSpans(SpanProcessor):
    """Keeps ended spans, so that a test can hand them to an exporter in batches of its own."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)
