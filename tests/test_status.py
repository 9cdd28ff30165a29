"""``otaudit status`` and ``GET /status``: the ledger, tokens, open alerts and the running
server, from a real server process; with no server the ledger's part still shows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from otaudit.demo import free_port
from polling import wait_until
from support import Server, audit_request, otaudit, post

PROTOBUF = {"Content-Type": "application/x-protobuf"}


def _status(server: Server | None, data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    address = f"127.0.0.1:{server.http_port if server else free_port()}"
    return otaudit("status", "--data", str(data), "--http", address, *args)


def _json(server: Server | None, data: Path, *args: str) -> dict[str, Any]:
    shown = _status(server, data, "--format", "json", *args)
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)  # type: ignore[no-any-return]


def test_a_fresh_ledger_with_its_server_and_then_without(server: Server) -> None:
    wait_until(lambda: server.metrics()["otaudit_checkpoint_tree_size"] == 0)
    status = _json(server, server.data)
    assert set(status) == {"ledger", "auth", "detection", "witness", "server", "server_error"}
    assert status["witness"] is None  # no --witness-dir
    assert status["ledger"]["tree_size"] == 0
    assert status["ledger"]["unsigned_records"] == 0
    assert status["ledger"]["last_verification"] is None
    assert status["auth"] == {"required": False, "tokens": {}}
    assert status["detection"] == {"open_alerts": {}, "alerts_total": 0}
    assert status["server_error"] is None
    srv = status["server"]
    assert srv["listeners"] == {
        "http": f"127.0.0.1:{server.http_port}",
        "grpc": f"127.0.0.1:{server.grpc_port}",
    }
    assert srv["uptime_s"] > 0 and srv["started_at"].endswith("Z")
    assert srv["auth"] == {"required": False}
    assert srv["records"] == {"received": 0, "sealed": 0, "duplicate": 0, "rejected": 0}
    assert srv["detection"] == {"enabled": False, "position": None}

    server.stop()
    shown = _status(None, server.data)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].split() == ["ledger:", "0", "records"]
    assert any(line.startswith("checkpoint:") and "size 0, signed" in line for line in lines)
    server_lines = [line for line in lines if line.startswith("server:")]
    assert len(server_lines) == 1 and "no server answers at http://127.0.0.1:" in server_lines[0]
    as_json = _json(None, server.data)
    assert as_json["server"] is None and "no server answers" in as_json["server_error"]


def test_a_data_directory_without_a_ledger_is_refused(tmp_path: Path) -> None:
    shown = otaudit("status", "--data", str(tmp_path / "typo"))
    assert shown.returncode == 2
    assert "typo" in shown.stderr and not shown.stdout


def _role_grant() -> bytes:
    request = ExportLogsServiceRequest()
    record = request.resource_logs.add().scope_logs.add().log_records.add()
    record.time_unix_nano = record.observed_time_unix_nano = time.time_ns()
    attrs = {"audit.action": "role_update", "enduser.id": "mallory", "audit.result": "success",
             "audit.target_user": "mallory", "audit.new_value": "admin"}  # fmt: skip
    record.attributes.extend(KeyValue(key=k, value=AnyValue(string_value=v))
                             for k, v in attrs.items())  # fmt: skip
    return request.SerializeToString()


def test_records_drops_an_alert_and_a_verification(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", detect=True).start()
    try:
        assert post(server, audit_request(3)).status_code == 200
        grant = httpx.post(f"{server.http_url}/v1/logs", content=_role_grant(), headers=PROTOBUF)
        assert grant.status_code == 200
        assert (
            httpx.post(f"{server.http_url}/v1/trace", content=b"", headers=PROTOBUF).status_code
            == 404
        )

        def alerted() -> dict[str, Any] | None:
            status = _json(server, server.data)
            detection = status["server"]["detection"]
            ledger = status["ledger"]
            caught_up = detection["position"] >= ledger["tree_size"] and ledger["tree_size"] >= 5
            return status if caught_up and "high" in status["detection"]["open_alerts"] else None

        status = wait_until(alerted, timeout_s=15)
        assert status is not None, _json(server, server.data)
        # privilege_escalation (high) for the grant; the spans, dated at night, may add
        # admin_change_off_hours (medium).
        open_alerts = status["detection"]["open_alerts"]
        assert open_alerts["high"] == 1
        assert sum(open_alerts.values()) == status["detection"]["alerts_total"]
        srv = status["server"]
        assert srv["records"]["received"] == 4  # sealed counts the alert records too
        assert srv["records"]["sealed"] >= 4 and srv["records"]["rejected"] == 0
        assert srv["requests_failed"] == {"not_found": 1}
        assert srv["detection"]["enabled"] is True

        verified = otaudit("verify", "--data", str(server.data))
        assert verified.returncode == 0, verified.stderr
        last = _json(server, server.data)["ledger"]["last_verification"]
        assert last["ok"] is True and last["by"] == "otaudit verify" and last["records"] >= 5
        shown = _status(server, server.data)
        assert shown.returncode == 0, shown.stderr
        total = status["detection"]["alerts_total"]
        assert f"open alerts:        {total} (" in shown.stdout and "high 1" in shown.stdout
        assert "last verification:  OK at " in shown.stdout
        assert "requests failed:    not_found 1" in shown.stdout
    finally:
        server.stop()


def test_with_tokens_status_needs_an_admin_token(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert otaudit("migrate", "--data", str(data)).returncode == 0  # tokens before serving
    tokens = {}
    for scope in ("ingest", "admin", "read"):
        created = otaudit("token", "create", "--data", str(data), "--scope", scope)
        assert created.returncode == 0, created.stderr
        tokens[scope] = created.stdout.strip().splitlines()[-1]
    listed = otaudit("token", "list", "--data", str(data), "--format", "jsonl").stdout
    read_id = next(t["id"] for t in map(json.loads, listed.splitlines()) if t["scopes"] == "read")
    revoked = otaudit("token", "revoke", "--data", str(data), read_id)
    assert revoked.returncode == 0, revoked.stderr
    server = Server(data).start()
    try:
        url = f"{server.http_url}/status"
        assert httpx.get(url).status_code == 401
        ingest_only = {"Authorization": f"Bearer {tokens['ingest']}"}
        assert httpx.get(url, headers=ingest_only).status_code == 403
        admin = {"Authorization": f"Bearer {tokens['admin']}"}
        served = httpx.get(url, headers=admin)
        assert served.status_code == 200 and served.json()["auth"] == {"required": True}
        assert tokens["admin"] not in served.text

        anonymous = _status(server, data)
        assert anonymous.returncode == 0, anonymous.stderr
        assert "authentication:     on" in anonymous.stdout
        assert "tokens:             admin 1 active, 0 revoked; ingest 1 active, 0 revoked;" \
            " read 0 active, 1 revoked" in anonymous.stdout  # fmt: skip
        (refused,) = [line for line in anonymous.stdout.splitlines() if line.startswith("server:")]
        assert "answered 401" in refused and "--token or OTAUDIT_TOKEN" in refused

        env = {**os.environ, "OTAUDIT_TOKEN": tokens["admin"]}
        address = f"127.0.0.1:{server.http_port}"
        by_env = subprocess.run(
            [sys.executable, "-m", "otaudit", "status", "--data", str(data), "--http", address,
             "--format", "json"], capture_output=True, text=True, env=env, timeout=60,
        )  # fmt: skip
        assert by_env.returncode == 0, by_env.stderr
        status = json.loads(by_env.stdout)
        assert status["server"]["auth"] == {"required": True}
        assert status["auth"]["tokens"]["read"] == {"active": 0, "revoked": 1}
        assert all(secret not in by_env.stdout for secret in tokens.values())
    finally:
        server.stop()
