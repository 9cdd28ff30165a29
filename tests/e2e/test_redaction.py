"""Redaction before sealing: dropped attributes never reach the ledger, pseudonyms still match."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from support import Server, otaudit

SECRET = "4111 1111 1111 1111"


def _kv(key: str, value: str | int) -> KeyValue:
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _request() -> bytes:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.extend(
        [_kv("service.name", "payments"), _kv("host.owner", "ops@example.com")]
    )
    spans = resource_spans.scope_spans.add().spans
    for n, user in enumerate(("alice@example.com", "bob@example.com", "alice@example.com")):
        span = spans.add(
            trace_id=(n + 1).to_bytes(16, "big"),
            span_id=(n + 1).to_bytes(8, "big"),
            name="card.update",
            start_time_unix_nano=1_764_288_000_000_000_000 + n,
        )
        span.attributes.extend([
            _kv("audit.action", "card_update"), _kv("enduser.id", user),
            _kv("payment.card.number", SECRET), _kv("payment.card.cvv", 123),
            _kv("audit.result", "success"),
        ])  # fmt: skip
    return request.SerializeToString()


def test_redaction_rules(tmp_path: Path) -> None:
    key = tmp_path / "redaction.key"
    key.write_text("5d2c0b2f0b8e4f0aa9a8e3f7c6d5b4a3\n")
    key.chmod(0o600)  # a key others may read is refused
    rules = ["--redact", "drop:payment.card.*", "--redact", "hmac:enduser.id",
             "--redact", "hmac:host.owner", "--redaction-key-file", str(key)]  # fmt: skip
    server = Server(tmp_path / "data", extra_args=rules).start()
    try:
        response = httpx.post(f"{server.http_url}/v1/traces", content=_request(), timeout=30,
                              headers={"Content-Type": "application/x-protobuf"})  # fmt: skip
        assert response.status_code == 200
    finally:
        server.stop()
    ledger = (server.data / "ledger.db").read_bytes()
    assert SECRET.encode() not in ledger and b"alice@example.com" not in ledger
    alice = otaudit(
        "pseudonym", "--redaction-key-file", str(key), "alice@example.com"
    ).stdout.strip()
    assert alice.startswith("hmac-sha256:") and len(alice) == len("hmac-sha256:") + 64
    rows = otaudit("sql", "--data", str(server.data), "--format", "json",
                   "SELECT actor, attributes, resource FROM audit_spans ORDER BY seq")  # fmt: skip
    records = json.loads(rows.stdout)
    assert [r["actor"] for r in records][0::2] == [alice, alice]  # equal values, equal pseudonyms
    assert records[1]["actor"] != alice
    attributes = json.loads(records[0]["attributes"])
    assert not any(k.startswith("payment.card") for k in attributes)
    assert (
        attributes["otaudit.redacted"]
        == "hmac:enduser.id,drop:payment.card.number,drop:payment.card.cvv"
    )
    assert json.loads(records[0]["resource"])["otaudit.redacted"] == "hmac:host.owner"
    found = otaudit("search", "--data", str(server.data), "--actor", alice, "--format", "csv")
    assert len(found.stdout.splitlines()) == 3  # header and alice's two records
    verified = otaudit("verify", "--data", str(server.data))
    assert verified.returncode == 0, verified.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--redact", "hmac:enduser.id"], "hmac:... redaction rules need --redaction-key-file"),
        (["--redact", "mask:enduser.id"], "expected drop:PATTERN or hmac:PATTERN"),
        (["--redact", "drop:"], "expected drop:PATTERN or hmac:PATTERN"),
        (["--redact", "hmac:x", "--redaction-key-file", "short"], "use at least 16 random bytes"),
        (["--redact", "hmac:x", "--redaction-key-file", "missing"], "missing does not exist"),
    ],
)
def test_bad_redaction_settings_stop_serve(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "short").write_text("0123456789")
    (tmp_path / "short").chmod(0o600)
    resolved = [str(tmp_path / a) if a in ("short", "missing") else a for a in args]
    result = otaudit("serve", "--data", str(tmp_path / "data"), *resolved)
    assert result.returncode == 2
    assert message in result.stderr, result.stderr
