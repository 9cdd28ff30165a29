"""The light package for applications: ``otaudit-instrument`` installs into a fresh
virtual environment with the OpenTelemetry SDK and none of the server's dependencies,
and its audit spans reach a real otaudit (issue: day-to-day use, "a light package")."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

from otaudit import __version__
from otaudit.instrument.meta import VERSION
from support import Server, otaudit

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "packages" / "otaudit-instrument"
HELPERS = ROOT / "src" / "otaudit" / "instrument"

APP = textwrap.dedent(
    """
    import sys
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from otaudit.instrument import actor, audit_span

    provider = TracerProvider(resource=Resource.create({"service.name": "light-app"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=sys.argv[1])))
    with actor("alice"), audit_span("role_update", target_user="bob",
                                    tracer=provider.get_tracer("light-app")):
        pass
    provider.shutdown()
    heavy = ("grpc", "psycopg", "starlette", "uvicorn", "orjson", "otaudit.store", "otaudit.cli")
    print(sorted(m for m in heavy if m in sys.modules))
    """
)


def test_the_helpers_import_nothing_else_of_otaudit() -> None:
    for path in HELPERS.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("otaudit"):
                assert (node.module or "").startswith("otaudit.instrument"), (path, node.module)


def test_one_version_for_both_distributions() -> None:
    light = tomllib.loads((PACKAGE / "pyproject.toml").read_text())["project"]
    assert VERSION == __version__ == light["version"]


def test_the_light_package_installs_alone_and_its_spans_are_sealed(
    tmp_path: Path, server: Server
) -> None:
    venv = tmp_path / "app"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
           "--disable-pip-version-check", "-c", str(ROOT / "constraints.txt")]  # fmt: skip
    installed = subprocess.run(
        [*pip, str(PACKAGE), "opentelemetry-exporter-otlp-proto-http"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    ran = subprocess.run(
        [str(venv / "bin" / "python"), "-c", APP, f"{server.http_url}/v1/traces"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "[]"  # nothing of the server came along
    server.stop()
    rows = otaudit("sql", "--data", str(server.data), "--format", "csv",
                   "SELECT service, actor, action, target FROM audit_spans")  # fmt: skip
    assert rows.stdout.splitlines() == ["service,actor,action,target",
                                        "light-app,alice,role_update,bob"]  # fmt: skip
