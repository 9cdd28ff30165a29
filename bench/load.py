"""The load generator. It runs in a process of its own ("spawn"), so its CPU is not the server's.

Payloads are generated in that process before any timing starts. Senders are threads,
each with its own keep-alive connection: ``http.client`` for OTLP/HTTP, and a gRPC
channel with a private subchannel pool (one TCP connection each) calling the generic
unary ``TraceService/Export`` method with the raw request bytes. A batch counts as
acknowledged only on HTTP 200 / gRPC OK, minus any ``partial_success.rejected_spans``;
everything else is counted as an error by status, and nothing is retried.
"""

from __future__ import annotations

import http.client
import multiprocessing
import sys
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from bench.payloads import AUDIT_KEY, SPANS_PER_BATCH, PayloadFactory, parse_rate
from bench.server import cpu_seconds

EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class LoadSpec:
    """What one load process does against one server."""

    transport: str  # "http" or "grpc"
    http_port: int
    grpc_port: int
    server_pid: int
    senders: int
    batches: int  # throughput: batches to send, closed loop
    #: latency: (audit attribute key, seconds between batches, duration s) of each open-loop phase
    phases: tuple[tuple[str, float, float], ...] = ()
    spans: int = SPANS_PER_BATCH
    #: throughput payloads: the share of role updates (None: one action in ten) and the
    #: time the spans' start times lie just before (None: now)
    role_update_share: float | None = None
    at_ns: int | None = None
    #: the ingest token sent with every export (None: no Authorization header/metadata)
    token: str | None = None
    #: how long one export may take before the client gives up on it
    timeout_s: float = _TIMEOUT_S
    #: open loop: a batch whose scheduled time is ``timeout_s`` past is not sent but
    #: counted as an error (an exporter's queue dropping it), so a stalled server cannot
    #: stretch a phase without bound
    drop_late: bool = False


@dataclass
class Phase:
    """What one phase of sending measured (times are ``perf_counter`` seconds)."""

    acked_spans: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    wall_s: float = 0.0
    latency_ms: list[float] = field(default_factory=list)  # send -> ack, acknowledged only
    sched_latency_ms: list[float] = field(default_factory=list)  # scheduled send -> ack
    client_cpu_s: float = 0.0
    server_cpu_s: float = 0.0


class Sender:
    """One keep-alive connection that exports pre-encoded ExportTraceServiceRequest bytes."""

    def __init__(self, spec: LoadSpec) -> None:
        self.transport = spec.transport
        self.timeout_s = spec.timeout_s
        self.token = spec.token
        if spec.transport == "http":
            self.conn = http.client.HTTPConnection(
                "127.0.0.1", spec.http_port, timeout=spec.timeout_s
            )
            self.conn.connect()
        else:
            opts = [("grpc.use_local_subchannel_pool", 1), ("grpc.max_send_message_length", -1)]
            self.channel = grpc.insecure_channel(f"127.0.0.1:{spec.grpc_port}", options=opts)
            grpc.channel_ready_future(self.channel).result(timeout=30)
            self.call = self.channel.unary_unary(
                EXPORT_METHOD, request_serializer=None, response_deserializer=None
            )

    def send(self, payload: bytes, spans: int) -> tuple[int, str | None]:
        """Export one batch: (spans acknowledged, error label or None)."""
        if self.transport == "http":
            try:
                headers = {"Content-Type": "application/x-protobuf"}
                if self.token is not None:
                    headers["Authorization"] = f"Bearer {self.token}"
                self.conn.request("POST", "/v1/traces", body=payload, headers=headers)
                resp = self.conn.getresponse()
                body = resp.read()
            except (OSError, http.client.HTTPException) as exc:
                self.conn.close()  # the next request reconnects
                return 0, type(exc).__name__
            if resp.status != 200:
                return 0, f"HTTP {resp.status}"
        else:
            try:
                metadata = (
                    None if self.token is None else (("authorization", f"Bearer {self.token}"),)
                )
                body = self.call(payload, timeout=self.timeout_s, metadata=metadata)
            except grpc.RpcError as exc:
                return 0, f"gRPC {exc.code().name}"
        rejected = ExportTraceServiceResponse.FromString(body).partial_success.rejected_spans
        return spans - rejected, (f"{rejected} spans rejected" if rejected else None)

    def close(self) -> None:
        """Close the connection."""
        if self.transport == "http":
            self.conn.close()
        else:
            self.channel.close()


def _run_phase(
    spec: LoadSpec, senders: list[Sender], batches: list[bytes], period_s: float = 0.0
) -> Phase:
    """Send every batch once: closed loop (``period_s == 0``) or one every ``period_s``."""
    phase = Phase()
    lock = threading.Lock()
    n = len(senders)
    start = time.perf_counter() + 0.2
    last_ack = [start]

    def work(i: int) -> None:
        for k in range(i, len(batches), n):
            sched = start + k * period_s
            if period_s:
                time.sleep(max(0.0, sched - time.perf_counter()))
                if spec.drop_late and time.perf_counter() > sched + spec.timeout_s:
                    with lock:
                        phase.errors["dropped: client behind by > timeout"] += 1
                    continue
            else:
                time.sleep(max(0.0, start - time.perf_counter()))
            sent = time.perf_counter()
            acked, error = senders[i].send(batches[k], spec.spans)
            done = time.perf_counter()
            with lock:
                phase.acked_spans += acked
                last_ack[0] = max(last_ack[0], done)
                if error:
                    phase.errors[error] += 1
                if acked:
                    phase.latency_ms.append((done - sent) * 1e3)
                    phase.sched_latency_ms.append((done - max(sched, start)) * 1e3)

    cpu0, server0 = time.process_time(), cpu_seconds(spec.server_pid)
    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    phase.wall_s = last_ack[0] - start
    phase.client_cpu_s = time.process_time() - cpu0
    phase.server_cpu_s = cpu_seconds(spec.server_pid) - server0
    return phase


def pipeline_ceiling(batches: list[bytes]) -> float:
    """Spans/s of parse + select_spans + seal in one thread, no network, no store."""
    from otaudit.otlp.convert import select_spans
    from otaudit.record import seal

    spans = 0
    started = time.perf_counter()
    for b in batches:
        sel = select_spans(ExportTraceServiceRequest.FromString(b), AUDIT_KEY)
        spans += len([seal(o, c, "otlp", time.time_ns()) for o, c in sel.records])
    return spans / (time.perf_counter() - started)


def throughput(spec: LoadSpec) -> dict[str, Any]:
    """Closed-loop load: every sender sends its share of the batches as fast as acks come."""
    factory = PayloadFactory(seed=11, role_update_share=spec.role_update_share, now_ns=spec.at_ns)
    batches = factory.batches(spec.batches, spec.spans)
    parse = parse_rate(batches, spec.spans)
    ceiling = pipeline_ceiling(batches[: max(2, min(16, len(batches) // 8))])
    senders = [Sender(spec) for _ in range(spec.senders)]
    try:
        phase = _run_phase(spec, senders, batches)
    finally:
        for s in senders:
            s.close()
    return {"phase": phase, "parse_rate": parse, "ceiling_rate": ceiling}


def latency(spec: LoadSpec) -> dict[str, Any]:
    """Open-loop phases in turn (``spec.phases``), each with batches of its own, 1 s apart."""
    factory = PayloadFactory(seed=13)
    work = [
        (factory.batches(round(duration / period), spec.spans, audit_key=key), period)
        for key, period, duration in spec.phases
    ]
    senders = [Sender(spec) for _ in range(spec.senders)]
    phases = []
    try:
        for batches, period in work:
            time.sleep(1.0)
            phases.append(_run_phase(spec, senders, batches, period))
    finally:
        for s in senders:
            s.close()
    return {"phases": phases}


def _entry(conn: Connection, kind: str, spec: LoadSpec) -> None:
    try:
        conn.send(("ok", throughput(spec) if kind == "throughput" else latency(spec)))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def run_load(kind: str, spec: LoadSpec) -> dict[str, Any]:
    """Run ``throughput`` or ``latency`` in a fresh spawned process and return its result."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_entry, args=(child, kind, spec), name=f"bench-load-{kind}")
    proc.start()
    child.close()
    try:
        status, result = parent.recv()
    except EOFError:
        proc.join(5)
        raise RuntimeError(f"load process died (exit code {proc.exitcode})") from None
    finally:
        proc.join(30)
        if proc.is_alive():
            proc.kill()
    if status != "ok":
        print(result, file=sys.stderr)
        raise RuntimeError("load process failed (traceback above)")
    return dict(result)
