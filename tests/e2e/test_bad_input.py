"""Bad input over real OTLP/HTTP and OTLP/gRPC: exact statuses, and nothing written.

Every case runs against a real ``otaudit serve`` process. Besides the status
(and the body the OTLP specification prescribes for it), each case checks
that the ledger did not change: ``otaudit_tree_size`` on ``/metrics`` is the
same before and after (or grew by exactly the records that were valid). When
the module is done, each server is stopped and ``otaudit verify`` must pass
on its data directory, and the ledger must hold exactly what was accepted.
"""

from __future__ import annotations

import gzip
import itertools
import json
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, TypedDict

import grpc
import httpx
import pytest
from google.rpc import status_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AGGREGATION_TEMPORALITY_CUMULATIVE,
    Gauge,
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

import rawgrpc
from support import Server, otaudit

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT.value[0]  # 3
RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]  # 8
SMALL_LIMIT = 65536
SEED_SPANS = 3

# Every span built here is unique (ids and actor), so the ledger's idempotence
# (a retried record is not sealed twice) never hides a write.
_serial = itertools.count(1)


# -- request builders ----------------------------------------------------------


def _kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def audit_span(
    *,
    trace_id: bytes | None = None,
    span_id: bytes | None = None,
    extra: list[KeyValue] | None = None,
) -> Span:
    """A valid audit span (it carries ``audit.action``) with fresh ids."""
    n = next(_serial)
    return Span(
        trace_id=n.to_bytes(16, "big") if trace_id is None else trace_id,
        span_id=n.to_bytes(8, "big") if span_id is None else span_id,
        name="user.role.update",
        kind=Span.SPAN_KIND_SERVER,
        start_time_unix_nano=1_700_000_000_000_000_000 + n,
        end_time_unix_nano=1_700_000_000_000_500_000 + n,
        attributes=[
            _kv("audit.action", "role_update"),
            _kv("user.id", f"user-{n}"),
            *(extra or []),
        ],
    )


class BadIds(TypedDict, total=False):
    """Ids of the wrong length for :func:`audit_span`."""

    trace_id: bytes
    span_id: bytes


def trace_request(*spans: Span) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=Resource(attributes=[_kv("service.name", "bad-input-test")]),
                scope_spans=[ScopeSpans(spans=list(spans))],
            )
        ]
    )


def json_span(trace_id: str | None = None) -> dict[str, Any]:
    """A valid OTLP/JSON audit span with fresh ids (hex, as OTLP/JSON requires)."""
    n = next(_serial)
    return {
        "traceId": n.to_bytes(16, "big").hex() if trace_id is None else trace_id,
        "spanId": n.to_bytes(8, "big").hex(),
        "name": "user.role.update",
        "kind": 2,
        "startTimeUnixNano": str(1_700_000_000_000_000_000 + n),
        "endTimeUnixNano": str(1_700_000_000_000_500_000 + n),
        "attributes": [
            {"key": "audit.action", "value": {"stringValue": "role_update"}},
            {"key": "user.id", "value": {"stringValue": f"user-{n}"}},
        ],
    }


def json_trace_request(*spans: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {
                        "attributes": [
                            {"key": "service.name", "value": {"stringValue": "bad-input-test"}}
                        ]
                    },
                    "scopeSpans": [{"spans": list(spans)}],
                }
            ]
        }
    ).encode()


def metrics_request() -> ExportMetricsServiceRequest:
    """Three data points: a gauge with two, a sum with one."""
    return ExportMetricsServiceRequest(
        resource_metrics=[
            ResourceMetrics(
                scope_metrics=[
                    ScopeMetrics(
                        metrics=[
                            Metric(
                                name="queue.depth",
                                gauge=Gauge(
                                    data_points=[
                                        NumberDataPoint(time_unix_nano=1, as_int=4),
                                        NumberDataPoint(time_unix_nano=2, as_int=5),
                                    ]
                                ),
                            ),
                            Metric(
                                name="logins",
                                sum=Sum(
                                    aggregation_temporality=AGGREGATION_TEMPORALITY_CUMULATIVE,
                                    is_monotonic=True,
                                    data_points=[NumberDataPoint(time_unix_nano=3, as_double=1.5)],
                                ),
                            ),
                        ]
                    )
                ]
            )
        ]
    )


METRICS_JSON = json.dumps(
    {
        "resourceMetrics": [
            {
                "scopeMetrics": [
                    {
                        "metrics": [
                            {
                                "name": "queue.depth",
                                "gauge": {
                                    "dataPoints": [
                                        {"timeUnixNano": "1", "asInt": "4"},
                                        {"timeUnixNano": "2", "asInt": "5"},
                                    ]
                                },
                            },
                            {
                                "name": "logins",
                                "sum": {
                                    "aggregationTemporality": 2,
                                    "isMonotonic": True,
                                    "dataPoints": [{"timeUnixNano": "3", "asDouble": 1.5}],
                                },
                            },
                        ]
                    }
                ]
            }
        ]
    }
).encode()


# -- helpers -------------------------------------------------------------------


def tree_size(server: Server) -> int:
    return int(server.metrics()["otaudit_tree_size"])


@contextmanager
def ledger_grows_by(server: Server, records: int) -> Iterator[None]:
    """Assert that the ledger grew by exactly ``records`` during the block."""
    before = tree_size(server)
    yield
    assert tree_size(server) == before + records


def nothing_written(server: Server) -> AbstractContextManager[None]:
    return ledger_grows_by(server, 0)


def protobuf_status(response: httpx.Response) -> Any:
    """The ``google.rpc.Status`` body of an OTLP/HTTP protobuf error response."""
    assert response.headers["content-type"] == PROTOBUF
    return status_pb2.Status.FromString(response.content)


def json_status(response: httpx.Response) -> dict[str, Any]:
    """The JSON ``google.rpc.Status`` body of an OTLP/HTTP JSON error response."""
    assert response.headers["content-type"] == JSON
    body: dict[str, Any] = response.json()
    assert set(body) == {"code", "message"}
    assert isinstance(body["message"], str)
    assert body["message"]
    return body


def grpc_status_details(exc: grpc.RpcError) -> Any:
    """The ``google.rpc.Status`` the server put in ``grpc-status-details-bin``."""
    trailers = {m.key: m.value for m in exc.trailing_metadata() or ()}
    return status_pb2.Status.FromString(trailers["grpc-status-details-bin"])


def vm_kib(pid: int, field: str) -> int:
    """A ``VmRSS``/``VmHWM``-style field of /proc/<pid>/status, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


def check_verifies(srv: Server, records: int) -> None:
    """Check that the stopped server's ledger verifies and holds exactly ``records`` records."""
    result = otaudit("verify", "--data", str(srv.data))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"OK: {records} records verified")
    assert f"latest at size {records}\n" in result.stdout


# -- fixtures ------------------------------------------------------------------


def _start_seeded(data: Path, extra_args: list[str]) -> Iterator[tuple[Server, httpx.Client]]:
    """Start a server, seed it with a few valid audit spans; at the end, stop and verify it."""
    srv = Server(data, extra_args=extra_args).start()
    try:
        with httpx.Client(base_url=srv.http_url, timeout=30) as client:
            seed = trace_request(*(audit_span() for _ in range(SEED_SPANS)))
            response = client.post(
                "/v1/traces", content=seed.SerializeToString(), headers={"content-type": PROTOBUF}
            )
            assert response.status_code == 200
            assert response.content == b""  # no partial_success: everything was kept
            assert tree_size(srv) == SEED_SPANS
            yield srv, client
            records = tree_size(srv)
    finally:
        if srv.proc is not None and srv.proc.poll() is None:
            assert srv.stop() == 0
    check_verifies(srv, records)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, httpx.Client]]:
    yield from _start_seeded(tmp_path_factory.mktemp("bad-input") / "data", [])


@pytest.fixture
def server(shared: tuple[Server, httpx.Client]) -> Server:
    """One ``otaudit serve`` for the whole module (overrides the per-test conftest fixture).

    Every refused request goes to the same ledger, so the ``otaudit verify``
    run when the module ends covers all of them.
    """
    return shared[0]


@pytest.fixture
def http(shared: tuple[Server, httpx.Client]) -> httpx.Client:
    return shared[1]


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, httpx.Client]]:
    """A server whose body limit is 64 KiB (after decompression)."""
    data = tmp_path_factory.mktemp("small-limit") / "data"
    yield from _start_seeded(data, ["--max-body-bytes", str(SMALL_LIMIT)])


@pytest.fixture(scope="module")
def grpc_channel(shared: tuple[Server, httpx.Client]) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(shared[0].grpc_endpoint) as channel:
        yield channel


def post_traces(
    http: httpx.Client, body: bytes, content_type: str | None = PROTOBUF, **headers: str
) -> httpx.Response:
    if content_type is not None:
        headers["content-type"] = content_type
    return http.post("/v1/traces", content=body, headers=headers)


# -- undecodable bodies --------------------------------------------------------


def test_garbage_protobuf(server: Server, http: httpx.Client) -> None:
    with nothing_written(server):
        response = post_traces(http, b"\xff\xff\xff\xff not a protobuf message \x00\x01")
    assert response.status_code == 400
    status = protobuf_status(response)
    assert status.code == INVALID_ARGUMENT
    assert "protobuf" in status.message


def test_invalid_json(server: Server, http: httpx.Client) -> None:
    with nothing_written(server):
        response = post_traces(http, b'{"resourceSpans": [', JSON)
    assert response.status_code == 400
    body = json_status(response)
    assert body["code"] == INVALID_ARGUMENT
    assert "JSON" in body["message"]


def _gzipped_audit_request() -> bytes:
    request = trace_request(*(audit_span() for _ in range(20)))
    return gzip.compress(request.SerializeToString(), mtime=0)


def test_truncated_gzip(server: Server, http: httpx.Client) -> None:
    body = _gzipped_audit_request()[:-10]
    with nothing_written(server):
        response = post_traces(http, body, **{"content-encoding": "gzip"})
    assert response.status_code == 400
    status = protobuf_status(response)
    assert status.code == INVALID_ARGUMENT
    assert "truncated" in status.message


def test_corrupt_gzip(server: Server, http: httpx.Client) -> None:
    body = bytearray(_gzipped_audit_request())
    middle = len(body) // 2
    for i in range(middle - 8, middle + 8):
        body[i] ^= 0xFF
    with nothing_written(server):
        response = post_traces(http, bytes(body), **{"content-encoding": "gzip"})
    assert response.status_code == 400
    status = protobuf_status(response)
    assert status.code == INVALID_ARGUMENT
    assert "gzip" in status.message


# -- unsupported media ---------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "encoding", "named"),
    [
        pytest.param("text/plain", None, "Content-Type", id="content-type-text-plain"),
        pytest.param(None, None, "Content-Type", id="content-type-missing"),
        pytest.param(PROTOBUF, "br", "Content-Encoding", id="content-encoding-br"),
    ],
)
def test_unsupported_media(
    server: Server,
    http: httpx.Client,
    content_type: str | None,
    encoding: str | None,
    named: str,
) -> None:
    headers = {} if encoding is None else {"content-encoding": encoding}
    body = trace_request(audit_span()).SerializeToString()
    with nothing_written(server):
        response = post_traces(http, body, content_type, **headers)
    assert response.status_code == 415
    if content_type == PROTOBUF:
        status = protobuf_status(response)
        code, message = status.code, status.message
    else:  # the request named no OTLP encoding: the answer is OTLP/JSON
        body_json = json_status(response)
        code, message = body_json["code"], body_json["message"]
    assert code == grpc.StatusCode.UNIMPLEMENTED.value[0]
    assert named in message


# -- size limits ---------------------------------------------------------------


def _big_audit_request(size: int) -> bytes:
    """A valid audit export request of more than ``size`` bytes."""
    span = audit_span(extra=[_kv("audit.padding", "x" * size)])
    body = trace_request(span).SerializeToString()
    assert len(body) > size
    return body


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_body_over_limit(small: tuple[Server, httpx.Client], framing: str) -> None:
    srv, http = small
    body = _big_audit_request(SMALL_LIMIT + 1)
    content: bytes | Iterator[bytes] = body
    if framing == "chunked":  # no Content-Length: the limit must hold while streaming
        content = iter([body[i : i + 8192] for i in range(0, len(body), 8192)])
    with nothing_written(srv):
        response = http.post("/v1/traces", content=content, headers={"content-type": PROTOBUF})
    assert response.status_code == 413
    assert protobuf_status(response).code == RESOURCE_EXHAUSTED


def test_gzip_bomb(small: tuple[Server, httpx.Client]) -> None:
    srv, http = small
    inflated = 50 * 1024 * 1024
    bomb = gzip.compress(bytes(inflated), compresslevel=9, mtime=0)
    assert len(bomb) < SMALL_LIMIT  # small on the wire: only the inflated size is too big
    assert srv.proc is not None
    pid = srv.proc.pid
    rss_before = vm_kib(pid, "VmRSS")
    with nothing_written(srv):
        started = time.monotonic()
        response = http.post(
            "/v1/traces",
            content=bomb,
            headers={"content-type": PROTOBUF, "content-encoding": "gzip"},
        )
        elapsed = time.monotonic() - started
    assert response.status_code == 413
    status = protobuf_status(response)
    assert status.code == RESOURCE_EXHAUSTED
    assert "decompression" in status.message
    assert elapsed < 5.0
    # The peak resident size never grew by anything like the 50 MiB inflated size.
    peak = vm_kib(pid, "VmHWM")
    assert peak - rss_before < 16 * 1024, (rss_before, peak)


#: 14 MB of empty gzip members (20 bytes each): under the body limit on the wire, each
#: member a new inflater. Inflating it once took minutes of a worker's CPU.
EMPTY_MEMBERS = gzip.compress(b"", mtime=0) * 700_000
TRACE_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def test_gzip_of_many_empty_members(server: Server, http: httpx.Client) -> None:
    with nothing_written(server):
        started = time.monotonic()
        response = post_traces(http, EMPTY_MEMBERS, **{"content-encoding": "gzip"})
        elapsed = time.monotonic() - started
    assert response.status_code == 400
    assert protobuf_status(response).message == "gzip body has more than 64 members"
    assert elapsed < 1.0


def test_grpc_gzip_of_many_empty_members(server: Server) -> None:
    # gRPC inflates the message itself and takes one member: INTERNAL, before otaudit sees it.
    address = ("127.0.0.1", server.grpc_port)
    with nothing_written(server):
        answer = rawgrpc.unary_call(address, TRACE_EXPORT, EMPTY_MEMBERS, compressed=True)
    assert answer.ended_by == "trailers"
    assert answer.grpc_status == grpc.StatusCode.INTERNAL.value[0]
    assert "not all input consumed" in answer.fields["grpc-message"]
    assert answer.seconds < 1.0
    # One member is how gRPC clients send it: taken.
    request = trace_request(audit_span()).SerializeToString()
    with ledger_grows_by(server, 1):
        answer = rawgrpc.unary_call(address, TRACE_EXPORT, gzip.compress(request), compressed=True)
    assert (answer.ended_by, answer.grpc_status) == ("trailers", 0)


def test_grpc_message_over_limit(small: tuple[Server, httpx.Client]) -> None:
    srv, _ = small
    request = ExportTraceServiceRequest.FromString(_big_audit_request(SMALL_LIMIT + 1))
    with nothing_written(srv), grpc.insecure_channel(srv.grpc_endpoint) as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)  # type: ignore[no-untyped-call]
        with pytest.raises(grpc.RpcError) as info:
            stub.Export(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


# -- ids of the wrong length: the whole request is refused -----------------------


@pytest.mark.parametrize(
    ("field", "bad_span"),
    [
        pytest.param("trace_id", {"trace_id": b"\x01" * 15}, id="trace-id-15-bytes"),
        pytest.param("span_id", {"span_id": b"\x01" * 7}, id="span-id-7-bytes"),
    ],
)
def test_wrong_id_length_protobuf(
    server: Server, http: httpx.Client, field: str, bad_span: BadIds
) -> None:
    request = trace_request(audit_span(), audit_span(**bad_span))
    with nothing_written(server):
        response = post_traces(http, request.SerializeToString())
    assert response.status_code == 400
    status = protobuf_status(response)
    assert status.code == INVALID_ARGUMENT
    assert f"spans[1].{field}" in status.message


def test_wrong_id_length_json(server: Server, http: httpx.Client) -> None:
    body = json_trace_request(json_span(), json_span(trace_id="ab" * 15))
    with nothing_written(server):
        response = post_traces(http, body, JSON)
    assert response.status_code == 400
    status = json_status(response)
    assert status["code"] == INVALID_ARGUMENT
    assert "spans[1].traceId" in status["message"]


@pytest.mark.parametrize(
    ("field", "bad_span"),
    [
        pytest.param("trace_id", {"trace_id": b"\x01" * 15}, id="trace-id-15-bytes"),
        pytest.param("span_id", {"span_id": b"\x01" * 7}, id="span-id-7-bytes"),
    ],
)
def test_wrong_id_length_grpc(
    server: Server, grpc_channel: grpc.Channel, field: str, bad_span: BadIds
) -> None:
    stub = trace_service_pb2_grpc.TraceServiceStub(grpc_channel)  # type: ignore[no-untyped-call]
    request = trace_request(audit_span(), audit_span(**bad_span))
    with nothing_written(server), pytest.raises(grpc.RpcError) as info:
        stub.Export(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = info.value.details()
    assert details is not None
    assert f"spans[1].{field}" in details
    status = grpc_status_details(info.value)
    assert status.code == INVALID_ARGUMENT
    assert f"spans[1].{field}" in status.message


# -- routing -------------------------------------------------------------------


def test_get_traces_is_405(server: Server, http: httpx.Client) -> None:
    with nothing_written(server):
        response = http.get("/v1/traces")
    assert response.status_code == 405


def test_unknown_path_is_404(server: Server, http: httpx.Client) -> None:
    body = trace_request(audit_span()).SerializeToString()
    with nothing_written(server):
        response = http.post("/v1/nope", content=body, headers={"content-type": PROTOBUF})
    assert response.status_code == 404


# -- metrics are answered, not stored -------------------------------------------


def test_metrics_protobuf(server: Server, http: httpx.Client) -> None:
    body = metrics_request().SerializeToString()
    with nothing_written(server):
        response = http.post("/v1/metrics", content=body, headers={"content-type": PROTOBUF})
    assert response.status_code == 200
    assert response.headers["content-type"] == PROTOBUF
    answer = ExportMetricsServiceResponse.FromString(response.content)
    assert answer.partial_success.rejected_data_points == 3
    assert "metrics are not stored" in answer.partial_success.error_message


def test_metrics_json(server: Server, http: httpx.Client) -> None:
    with nothing_written(server):
        response = http.post("/v1/metrics", content=METRICS_JSON, headers={"content-type": JSON})
    assert response.status_code == 200
    assert response.headers["content-type"] == JSON
    body = response.json()
    assert set(body) == {"partialSuccess"}
    assert set(body["partialSuccess"]) == {"rejectedDataPoints", "errorMessage"}
    assert body["partialSuccess"]["rejectedDataPoints"] == "3"
    assert "metrics are not stored" in body["partialSuccess"]["errorMessage"]


def test_metrics_grpc(server: Server, grpc_channel: grpc.Channel) -> None:
    stub = metrics_service_pb2_grpc.MetricsServiceStub(grpc_channel)  # type: ignore[no-untyped-call]
    with nothing_written(server):
        answer = stub.Export(metrics_request(), timeout=10)
    assert answer.partial_success.rejected_data_points == 3
    assert "metrics are not stored" in answer.partial_success.error_message


# -- a record that cannot be kept losslessly is rejected on its own --------------


def _duplicate_key_request() -> ExportTraceServiceRequest:
    duplicated = audit_span(extra=[_kv("audit.target", "alice"), _kv("audit.target", "bob")])
    return trace_request(audit_span(), duplicated)


def _check_duplicate_key_answer(answer: Any) -> None:
    assert answer.partial_success.rejected_spans == 1
    message = answer.partial_success.error_message
    assert "audit.target" in message
    assert "spans[1]" in message


def test_duplicate_attribute_key_http(server: Server, http: httpx.Client) -> None:
    with ledger_grows_by(server, 1):
        response = post_traces(http, _duplicate_key_request().SerializeToString())
    assert response.status_code == 200
    assert response.headers["content-type"] == PROTOBUF
    _check_duplicate_key_answer(ExportTraceServiceResponse.FromString(response.content))


def test_duplicate_attribute_key_grpc(server: Server, grpc_channel: grpc.Channel) -> None:
    stub = trace_service_pb2_grpc.TraceServiceStub(grpc_channel)  # type: ignore[no-untyped-call]
    with ledger_grows_by(server, 1):
        answer = stub.Export(_duplicate_key_request(), timeout=10)
    _check_duplicate_key_answer(answer)


# -- X-Audit-Pipeline ------------------------------------------------------------


def test_bad_pipeline_header_http(server: Server, http: httpx.Client) -> None:
    body = trace_request(audit_span()).SerializeToString()
    with nothing_written(server):
        response = post_traces(http, body, **{"x-audit-pipeline": "bad pipeline!"})
    assert response.status_code == 400
    status = protobuf_status(response)
    assert status.code == INVALID_ARGUMENT
    assert "x-audit-pipeline" in status.message.lower()


def test_bad_pipeline_header_grpc(server: Server, grpc_channel: grpc.Channel) -> None:
    stub = trace_service_pb2_grpc.TraceServiceStub(grpc_channel)  # type: ignore[no-untyped-call]
    with nothing_written(server), pytest.raises(grpc.RpcError) as info:
        stub.Export(
            trace_request(audit_span()),
            metadata=(("x-audit-pipeline", "bad pipeline!"),),
            timeout=10,
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = info.value.details()
    assert details is not None
    assert "x-audit-pipeline" in details.lower()
