"""Idle gRPC calls cannot starve ingest (issue 14, finding 3).

A call that sends its headers and then nothing used to hold one of the
receiver's eight handler threads until its connection was closed, token or
not: eight of them stopped every honest export. Now an unauthenticated call is
refused on its metadata alone, a call whose message does not arrive within the
body timeout is ended, and one client address holds at most
``--max-calls-per-peer`` calls at once.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import grpc
import httpx
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult

import rawgrpc
from otaudit.receiver.grpc import peer_host
from support import KeepSpans, Server, audit_request, otaudit

TRACE_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
#: Another client address on loopback (Linux routes all of 127.0.0.0/8 to lo).
ATTACKER = "127.0.0.2"
HANDLER_THREADS = 8


def _honest_export(server: Server, token: str, spans: int) -> float:
    """Export ``spans`` audit spans the way an SDK does; the seconds it took."""
    request = ExportTraceServiceRequest.FromString(audit_request(spans))
    started = time.monotonic()
    with grpc.insecure_channel(server.grpc_endpoint) as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)  # type: ignore[no-untyped-call]
        stub.Export(request, metadata=[("authorization", token)], timeout=3)
    return time.monotonic() - started


def _answers(calls: list[rawgrpc.HeldCall], timeout_s: float) -> list[Future[rawgrpc.Answer]]:
    """Wait for the answers to all ``calls`` at once, in the background."""
    pool = ThreadPoolExecutor(len(calls))
    answers = [pool.submit(call.answer, timeout_s) for call in calls]
    pool.shutdown(wait=False)  # its threads end with their calls
    return answers


def _hold(
    server: Server,
    count: int,
    headers: dict[str, str] | None = None,
    first_data: bytes = b"",
    source_host: str = "",
) -> list[rawgrpc.HeldCall]:
    """``count`` calls to TraceService/Export, each on a connection of its own."""
    address = ("127.0.0.1", server.grpc_port)
    return [
        rawgrpc.HeldCall(address, TRACE_EXPORT, headers=headers, first_data=first_data,
                         source_host=source_host)
        for _ in range(count)
    ]  # fmt: skip


@dataclass
class Listener:
    server: Server
    token: str  # an Authorization value that may export and read /metrics

    def metrics(self) -> dict[str, float]:
        headers = {"Authorization": self.token}
        text = httpx.get(f"{self.server.http_url}/metrics", headers=headers).text
        samples = (line.rpartition(" ") for line in text.splitlines() if not line.startswith("#"))
        return {name: float(value) for name, _, value in samples}

    def failed(self, reason: str) -> float:
        key = f'otaudit_requests_failed_total{{reason="{reason}",transport="grpc"}}'
        return self.metrics().get(key, 0.0)


@pytest.fixture(scope="module")
def listener(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Listener]:
    """A server with tokens on, a 1 s body timeout and 4 calls per client address."""
    data = tmp_path_factory.mktemp("starvation") / "data"
    args = ["--scope", "ingest", "--scope", "admin"]
    assert otaudit("migrate", "--data", str(data)).returncode == 0  # tokens before serving
    created = otaudit("token", "create", "--data", str(data), *args)
    assert created.returncode == 0, created.stderr
    token = "Bearer " + created.stdout.strip().splitlines()[-1]
    server = Server(data, extra_args=["--body-timeout", "1", "--max-calls-per-peer", "4"])
    server.start()
    try:
        _honest_export(server, token, 1)  # the first export starts the ingest workers
        yield Listener(server, token)
    finally:
        server.stop()


@pytest.fixture
def held() -> Iterator[list[rawgrpc.HeldCall]]:
    calls: list[rawgrpc.HeldCall] = []
    yield calls
    for call in calls:
        call.close()


def test_idle_calls_without_a_token_are_refused_at_once(
    listener: Listener, held: list[rawgrpc.HeldCall]
) -> None:
    """More idle calls than handler threads, headers only and no token, from the honest
    client's own address: each is refused on its metadata, none waits for its message."""
    server, token = listener.server, listener.token
    size = listener.metrics()["otaudit_tree_size"]
    held += _hold(server, 2 * HANDLER_THREADS)
    answers_later = _answers(held, timeout_s=2)
    time.sleep(0.2)
    assert _honest_export(server, token, 2) < 1.0
    answers = [answer.result() for answer in answers_later]
    assert {(a.ended_by, a.grpc_status) for a in answers} == {("trailers", 16)}, answers
    assert max(a.seconds for a in answers) < 1.0  # UNAUTHENTICATED, before the body timeout
    assert listener.metrics()["otaudit_tree_size"] == size + 2


def test_idle_calls_with_a_token_are_bounded_per_peer_and_in_time(
    listener: Listener, held: list[rawgrpc.HeldCall]
) -> None:
    """A client with a token opens more calls than there are handler threads from one
    address, half sending headers only, half five bytes of a 16-byte message: four are
    held until the body timeout, the rest refused at once; another address exports."""
    server, token = listener.server, listener.token
    size = listener.metrics()["otaudit_tree_size"]
    refused_before = listener.failed("too_many_calls")
    timed_out_before = listener.failed("incomplete_body")
    auth = {"authorization": token}
    held += _hold(server, HANDLER_THREADS, headers=auth, source_host=ATTACKER)
    held += _hold(server, HANDLER_THREADS, headers=auth, source_host=ATTACKER,
                  first_data=b"\x00\x00\x00\x00\x10")  # fmt: skip
    answers_later = _answers(held, timeout_s=3)
    time.sleep(0.2)
    assert _honest_export(server, token, 2) < 1.0  # another address is not affected
    answers = [answer.result() for answer in answers_later]
    statuses = Counter(a.grpc_status for a in answers)
    # RESOURCE_EXHAUSTED over the limit, DEADLINE_EXCEEDED after the body timeout.
    assert statuses == {8: 2 * HANDLER_THREADS - 4, 4: 4}, answers
    refused = [a for a in answers if a.grpc_status == 8]
    assert max(a.seconds for a in refused) < 0.5
    assert all("4 calls open" in a.fields.get("grpc-message", "") for a in refused), refused
    timed_out = [a for a in answers if a.grpc_status == 4]
    assert all(0.9 < a.seconds < 1.6 for a in timed_out), timed_out
    # Once its calls ended, the attacker's address may export again.
    answer = rawgrpc.unary_call(("127.0.0.1", server.grpc_port), TRACE_EXPORT,
                                audit_request(3), compressed=False, headers=auth,
                                timeout_s=3, source_host=ATTACKER)  # fmt: skip
    assert (answer.ended_by, answer.grpc_status) == ("trailers", 0), answer
    assert listener.metrics()["otaudit_tree_size"] == size + 2 + 3
    assert listener.failed("too_many_calls") - refused_before == 2 * HANDLER_THREADS - 4
    assert listener.failed("incomplete_body") - timed_out_before == 4


def test_an_sdk_exporter_over_the_limit_backs_off_and_delivers(
    listener: Listener, held: list[rawgrpc.HeldCall]
) -> None:
    """RESOURCE_EXHAUSTED with RetryInfo is retryable (OTLP): the OpenTelemetry exporter,
    sharing its address with four idle calls, waits and delivers once they time out."""
    server, token = listener.server, listener.token
    size = listener.metrics()["otaudit_tree_size"]
    held += _hold(server, 4, headers={"authorization": token})  # the limit, from 127.0.0.1
    time.sleep(0.1)
    keep = KeepSpans()
    provider = TracerProvider()
    provider.add_span_processor(keep)
    with provider.get_tracer("t").start_as_current_span("login") as span:
        span.set_attribute("audit.action", "login")
    exporter = OTLPSpanExporter(endpoint=server.grpc_endpoint, insecure=True,
                                headers=(("authorization", token),), timeout=10)  # fmt: skip
    started = time.monotonic()
    assert exporter.export(keep.spans) is SpanExportResult.SUCCESS
    assert 0.5 < time.monotonic() - started < 4  # refused, retried after RetryInfo's 1 s
    exporter.shutdown()
    assert listener.metrics()["otaudit_tree_size"] == size + 1


@pytest.mark.parametrize(
    ("peer", "host"),
    [
        ("ipv4:127.0.0.2:53412", "ipv4:127.0.0.2"),
        ("ipv6:[::1]:4000", "ipv6:[::1]"),
        ("ipv6:%5B::1%5D:4000", "ipv6:%5B::1%5D"),
        ("unix:/run/otaudit.sock", "unix:/run/otaudit.sock"),
    ],
)
def test_peer_host_drops_the_port(peer: str, host: str) -> None:
    assert peer_host(peer) == host
