"""otaudit.instrument needs only the OpenTelemetry API and SDK, not the server dependencies."""

from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCKED = (
    "starlette", "grpc", "cryptography", "orjson", "click", "rich", "uvicorn", "rfc8785",
    "flask", "werkzeug", "httpx", "google.protobuf", "prometheus_client",
)  # fmt: skip

PROGRAM = textwrap.dedent(
    """
    import importlib.abc
    import sys

    BLOCKED = {blocked!r}

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if any(name == b or name.startswith(b + ".") for b in BLOCKED):
                raise ImportError(f"blocked: {{name}}")
            return None

    sys.meta_path.insert(0, Block())

    from opentelemetry import trace
    from opentelemetry._logs import set_logger_provider
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    import otaudit.instrument
    from otaudit.instrument import actor, audit_log, audit_span
    from otaudit.instrument.sampling import AuditSampler

    spans = InMemorySpanExporter()
    provider = TracerProvider(sampler=AuditSampler())
    provider.add_span_processor(SimpleSpanProcessor(spans))
    trace.set_tracer_provider(provider)
    logs = InMemoryLogRecordExporter()
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    set_logger_provider(logger_provider)

    with actor("alice"), audit_span("role_update", target="bob"):  # the global providers
        audit_log("config_change", "changed")

    (span,) = spans.get_finished_spans()
    assert span.attributes["enduser.id"] == "alice", span.attributes
    assert span.attributes["audit.result"] == "success", span.attributes
    assert span.attributes["audit.producer.seq"] == 1, span.attributes
    (log,) = logs.get_finished_logs()
    assert log.log_record.attributes["audit.producer.seq"] == 2
    for name in BLOCKED:
        assert name not in sys.modules, name
    loaded = sorted(m for m in sys.modules if m == "otaudit" or m.startswith("otaudit."))
    print(" ".join(loaded))
    """
)


def test_importable_and_usable_without_server_dependencies() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM.format(blocked=BLOCKED)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    loaded = set(result.stdout.split())
    assert {m for m in loaded if not m.startswith("otaudit.instrument")} == {
        "otaudit",
        "otaudit.errors",
    }


def test_the_blocker_really_blocks() -> None:
    program = PROGRAM.format(blocked=BLOCKED).replace(
        "import otaudit.instrument\n", "import otaudit.instrument\nimport otaudit.server\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "blocked: " in result.stderr
