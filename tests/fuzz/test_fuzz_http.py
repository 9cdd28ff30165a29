"""Fuzzing the OTLP/HTTP endpoints of a running server: never a 5xx, and the ledger verifies."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support import Server, audit_request, otaudit

VALID = audit_request(2, payload_bytes=20)
CONTENT_TYPES = st.sampled_from([
    "application/x-protobuf", "application/json", "application/json; charset=utf-8",
    "text/plain", "application/x-www-form-urlencoded", "", "application/x-protobuf; x=\\x00",
])  # fmt: skip
ENCODINGS = st.sampled_from([None, "gzip", "identity", "br", "gzip, gzip"])
PATHS = st.sampled_from(["/v1/traces", "/v1/logs", "/v1/metrics"])
ALLOWED = {200, 400, 413, 415}


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, httpx.Client]]:
    server = Server(tmp_path_factory.mktemp("fuzz-http") / "data",
                    extra_args=["--max-body-bytes", "65536"]).start()  # fmt: skip
    with httpx.Client(base_url=server.http_url, timeout=30) as client:
        yield server, client
    server.stop()
    result = otaudit("verify", "--data", str(server.data))
    assert result.returncode == 0, result.stderr


def _body(data: bytes, flips: list[int]) -> bytes:
    out = bytearray(data)
    for at in flips:
        if out:
            out[at % len(out)] ^= 1 << (at % 8)
    return bytes(out)


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(
    path=PATHS,
    content_type=CONTENT_TYPES,
    encoding=ENCODINGS,
    raw=st.one_of(st.binary(max_size=2048), st.just(VALID)),
    flips=st.lists(st.integers(0, 1 << 20), max_size=4),
    compress=st.booleans(),
)
def test_no_request_gets_a_server_error(
    fuzzed: tuple[Server, httpx.Client],
    path: str,
    content_type: str,
    encoding: str | None,
    raw: bytes,
    flips: list[int],
    compress: bool,
) -> None:
    _, client = fuzzed
    body = _body(raw, flips)
    if compress:
        body = gzip.compress(body)
    headers = {"Content-Type": content_type}
    if encoding is not None:
        headers["Content-Encoding"] = encoding
    response = client.post(path, content=body, headers=headers)
    assert response.status_code in ALLOWED, (response.status_code, response.text)


def test_the_fuzzed_server_still_takes_exports(fuzzed: tuple[Server, httpx.Client]) -> None:
    server, client = fuzzed
    response = client.post("/v1/traces", content=audit_request(1),
                           headers={"Content-Type": "application/x-protobuf"})  # fmt: skip
    assert response.status_code == 200
    assert Path(server.data, "ledger.db").exists()
