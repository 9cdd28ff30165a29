"""Several ``otaudit serve`` nodes on one PostgreSQL ledger, and PostgreSQL going away.

The clients are the official OpenTelemetry SDK exporters (HTTP and gRPC);
the database is a real PostgreSQL server started for the test run.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
import httpx
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otaudit.store.postgres import PostgresStore
from pgcluster import PgCluster, PgServer
from support import KeepSpans, Server, audit_request, otaudit

BATCHES = 12
SPANS_PER_BATCH = 50


def audit_spans(service: str, count: int) -> list[ReadableSpan]:
    """``count`` finished role-update spans of one service."""
    keep = KeepSpans()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(keep)
    tracer = provider.get_tracer("otaudit.tests")
    for i in range(count):
        with tracer.start_as_current_span("user.role.update") as span:
            span.set_attribute("enduser.id", f"admin-{service}")
            span.set_attribute("audit.action", "role_update")
            span.set_attribute("audit.target_user", f"user-{i}")
            span.set_attribute("audit.result", "success")
    provider.shutdown()
    return keep.spans


def _node(data: Path, store_url: str, key_from: Path | None) -> Server:
    if key_from is not None:
        data.mkdir(mode=0o700)
        shutil.copy2(key_from / "signing.key", data / "signing.key")
    return Server(data, extra_args=["--store", store_url]).start()


def _send(exporter: SpanExporter, spans: Sequence[ReadableSpan], failures: list[str]) -> None:
    for at in range(0, len(spans), SPANS_PER_BATCH):
        result = exporter.export(spans[at : at + SPANS_PER_BATCH])
        if result is not SpanExportResult.SUCCESS:
            failures.append(f"{exporter.__class__.__module__}: {result}")
    exporter.shutdown()


def _sql(pg: PgServer, store_url: str, data: Path, statement: str) -> list[dict[str, object]]:
    result = otaudit("sql", "--store", store_url, "--query-store", pg.query_url(store_url),
                     "--data", str(data), "--format", "json", statement)  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, object]] = json.loads(result.stdout)
    return rows


def test_three_nodes_write_one_dense_verifiable_ledger(pg: PgServer, tmp_path: Path) -> None:
    url = pg.database()
    first = _node(tmp_path / "node0", url, None)
    nodes = [first] + [_node(tmp_path / f"node{i}", url, first.data) for i in (1, 2)]
    threads: list[threading.Thread] = []
    failures: list[str] = []
    sent = 0
    try:
        for i, node in enumerate(nodes):
            for kind, exporter in (
                ("http", HttpSpanExporter(endpoint=f"{node.http_url}/v1/traces")),
                ("grpc", GrpcSpanExporter(endpoint=node.grpc_endpoint, insecure=True)),
            ):
                spans = audit_spans(f"svc{i}-{kind}", BATCHES * SPANS_PER_BATCH)
                sent += len(spans)
                threads.append(threading.Thread(target=_send, args=(exporter, spans, failures)))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        codes = [node.stop() for node in nodes]
    assert failures == []
    assert codes == [0, 0, 0]

    (row,) = _sql(pg, url, first.data,
                  "SELECT count(*) AS n, min(seq) AS lo, max(seq) AS hi,"
                  " count(DISTINCT service) AS services FROM audit_spans")  # fmt: skip
    assert row == {"n": sent, "lo": 0, "hi": sent - 1, "services": 6}  # dense: 0 .. n-1
    result = otaudit("verify", "--store", url, "--data", str(first.data))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"OK: {sent + 1} records verified")  # and the read above
    assert f"latest at size {sent}\n" in result.stdout  # the read is left for a server to sign
    # Every checkpoint any node signed is in one chain of growing sizes.
    store = PostgresStore(url, readonly=True)
    try:
        sizes = [cp.tree_size for cp in store.checkpoints()]
    finally:
        store.close()
    assert sizes == sorted(set(sizes))
    assert sizes[-1] == sent  # the reads and the verification are left for a server to sign


def test_one_signer_at_a_time(pg: PgServer) -> None:
    url = pg.database()
    a, b = PostgresStore(url), PostgresStore(url)
    try:
        a.migrate(online_only=True)
        with a.signer_turn() as first, b.signer_turn() as second:
            assert (first, second) == (True, False)
        with b.signer_turn() as again:
            assert again
    finally:
        a.close()
        b.close()


def _grpc_export(endpoint: str, body: bytes) -> grpc.RpcError | None:
    with grpc.insecure_channel(endpoint) as channel:
        export = channel.unary_unary(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            request_serializer=ExportTraceServiceRequest.SerializeToString,
            response_deserializer=ExportTraceServiceResponse.FromString,
        )
        try:
            export(ExportTraceServiceRequest.FromString(body), timeout=30)
        except grpc.RpcError as exc:
            return exc
    return None


def _retry_delay(error: grpc.RpcError) -> int:
    metadata: Any = error.trailing_metadata()
    trailers = {key: value for key, value in metadata}
    status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return int(info.retry_delay.seconds)
    raise AssertionError(f"no RetryInfo in {status}")


def _post_until_accepted(client: httpx.Client, body: bytes, statuses: list[int]) -> None:
    """POST one batch, retrying it (as an exporter does) while the answer is 503."""
    while True:
        response = client.post(
            "/v1/traces", content=body, headers={"Content-Type": "application/x-protobuf"}
        )
        statuses.append(response.status_code)
        if response.status_code == 200:
            return
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"].isdigit()
        time.sleep(0.2)


def test_postgres_restart_during_load_loses_nothing_acknowledged(tmp_path: Path) -> None:
    cluster = PgCluster().start()
    try:
        server = PgServer(cluster.dsn, cluster)
        url = server.database()
        node = _node(tmp_path / "node", url, None)
        acknowledged: list[bytes] = []
        statuses: list[int] = []
        stop = threading.Event()

        def load() -> None:
            with httpx.Client(base_url=node.http_url, timeout=30) as client:
                while not stop.is_set():
                    body = audit_request(20)
                    _post_until_accepted(client, body, statuses)
                    acknowledged.append(body)

        sender = threading.Thread(target=load)
        sender.start()
        while len(acknowledged) < 10:
            time.sleep(0.05)
        cluster.stop("fast")
        time.sleep(1.0)
        while_away = statuses.count(503)
        error = _grpc_export(node.grpc_endpoint, audit_request(3))
        assert error is not None and error.code() is grpc.StatusCode.UNAVAILABLE
        assert _retry_delay(error) >= 1
        cluster.start()
        before = len(acknowledged)
        deadline = time.monotonic() + 60
        while len(acknowledged) < before + 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        sender.join()
        assert node.stop() == 0

        assert while_away >= 1
        assert len(acknowledged) >= before + 10, "ingest did not recover after the restart"
        (row,) = _sql(server, url, node.data, "SELECT count(*) AS n FROM audit_spans")
        # Every acknowledged record is there (a batch answered 503 may also be there once).
        assert isinstance(row["n"], int) and row["n"] >= 20 * len(acknowledged)
        rows = _sql(server, url, node.data, "SELECT span_id FROM audit_spans")
        ids = {r["span_id"] for r in rows}
        for body in acknowledged:
            for span in (
                ExportTraceServiceRequest.FromString(body).resource_spans[0].scope_spans[0].spans
            ):
                assert span.span_id.hex() in ids
        result = otaudit("verify", "--store", url, "--data", str(node.data))
        assert result.returncode == 0, result.stderr
    finally:
        cluster.destroy()


def test_serve_without_a_reachable_postgres_says_so(tmp_path: Path) -> None:
    cluster = PgCluster()  # never started: nothing listens on its port
    try:
        url = f"postgresql://postgres@127.0.0.1:{cluster.port}/otaudit"
        result = otaudit("serve", "--data", str(tmp_path / "data"), "--store", url)
        assert result.returncode == 2
        assert result.stderr.startswith(
            f"otaudit: error: cannot connect to PostgreSQL at {url}: "
        ), result.stderr
        bad = otaudit("verify", "--store", "postgresql://u:secret@[::1", "--data", str(tmp_path))
        assert bad.returncode == 2
        assert "secret" not in bad.stderr
    finally:
        cluster.destroy()
