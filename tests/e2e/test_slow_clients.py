"""Slow and idle clients, before any token is checked: what they can hold, and for how long.

Real ``otaudit serve`` processes and raw sockets: connections that never finish
their headers, bodies sent a byte at a time, more connections than a listener
takes, a process out of file descriptors, gRPC connections that never finish
their handshake or their message, and a SIGTERM while all of these are open.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

import rawgrpc
from support import Server, audit_request, otaudit

PARTIAL_HEADERS = b"POST /v1/traces HTTP/1.1\r\nHost: otaudit\r\nContent-Type: applic"
SLOW_BODY = (b"POST /v1/traces HTTP/1.1\r\nHost: otaudit\r\n"
             b"Content-Type: application/x-protobuf\r\nContent-Length: 1000\r\n\r\n")  # fmt: skip
TRACE_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
#: Runs the rest of its command line with at most 256 open files (``ulimit -n 256``).
LIMIT_FILES = [sys.executable, "-c", "import os, resource, sys; "
               "resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256)); "
               "os.execv(sys.argv[1], sys.argv[1:])"]  # fmt: skip


@dataclass
class Seen:
    """What one client connection got from the server, and when the server closed it."""

    received: bytes = b""
    closed_after_s: float | None = None


def watch(socks: list[socket.socket], seconds: float, trickle_every_s: float | None = None,
          until_all_closed: bool = True) -> list[Seen]:  # fmt: skip
    """Read every socket for ``seconds`` (or until all are closed); with ``trickle_every_s``,
    send each one byte that often, like a client sending its body at that pace."""
    started = time.monotonic()
    seen = [Seen() for _ in socks]
    with selectors.DefaultSelector() as selector:
        for n, sock in enumerate(socks):
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ, n)
        trickled = started
        while selector.get_map() and time.monotonic() - started < seconds:
            for key, _ in selector.select(0.05):
                n = key.data
                try:
                    got = socks[n].recv(65536)
                except ConnectionError:
                    got = b""
                seen[n].received += got
                if not got:
                    seen[n].closed_after_s = time.monotonic() - started
                    selector.unregister(socks[n])
            if trickle_every_s is not None and time.monotonic() - trickled >= trickle_every_s:
                trickled = time.monotonic()
                for key in list(selector.get_map().values()):
                    with contextlib.suppress(OSError):  # closed: the next read says so
                        socks[key.data].send(b"x")
            if not until_all_closed and not selector.get_map():
                break
    return seen


@contextmanager
def connections(port: int, count: int, first_bytes: bytes = b"") -> Iterator[list[socket.socket]]:
    socks = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            if first_bytes:
                sock.sendall(first_bytes)
            socks.append(sock)
        yield socks
    finally:
        for sock in socks:
            sock.close()


def status_line(seen: Seen) -> bytes:
    return seen.received.split(b"\r\n", 1)[0]


def healthz(server: Server, timeout_s: float = 1) -> int:
    return httpx.get(f"{server.http_url}/healthz", timeout=timeout_s).status_code


def test_unfinished_headers_are_closed(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", extra_args=["--header-timeout", "1"]).start()
    try:
        with connections(server.http_port, 50, PARTIAL_HEADERS) as started, \
                connections(server.http_port, 10) as idle:  # fmt: skip
            assert not any(s.closed_after_s for s in watch(started + idle, 0.5))  # all held
            seen = watch(started + idle, 3)
        assert all(s.closed_after_s is not None and s.closed_after_s < 1.5 for s in seen), seen
        assert {status_line(s) for s in seen[:50]} == {b"HTTP/1.1 408 Request Timeout"}
        assert {s.received for s in seen[50:]} == {b""}  # an idle connection just ends
        assert healthz(server) == 200
    finally:
        server.stop()


def test_slow_bodies_are_answered_408(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", extra_args=["--body-timeout", "1"]).start()
    try:
        with connections(server.http_port, 20, SLOW_BODY) as slow:
            seen = watch(slow, 4, trickle_every_s=0.1)  # 10 bytes a second of a 1000-byte body
        assert all(s.closed_after_s is not None and s.closed_after_s < 1.6 for s in seen), seen
        assert {status_line(s) for s in seen} == {b"HTTP/1.1 408 Request Timeout"}
        metrics = server.metrics()
        failed = 'otaudit_requests_failed_total{reason="incomplete_body",transport="http"}'
        assert (metrics[failed], metrics["otaudit_tree_size"]) == (20, 0)
        response = httpx.post(f"{server.http_url}/v1/traces", content=audit_request(2), timeout=10,
                              headers={"Content-Type": "application/x-protobuf"})  # fmt: skip
        assert response.status_code == 200
    finally:
        server.stop()


def test_connections_over_the_limit_are_refused_at_once(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", extra_args=["--max-connections", "20"]).start()
    try:
        with connections(server.http_port, 20) as held:
            watch(held, 0.2)  # accepted
            with connections(server.http_port, 10) as refused:
                seen = watch(refused, 2)
            assert all(s.closed_after_s is not None and s.closed_after_s < 0.5 for s in seen)
            assert {status_line(s) for s in seen} == {b"HTTP/1.1 503 Service Unavailable"}
            assert healthz(server) == 503
        time.sleep(0.2)
        assert healthz(server) == 200
    finally:
        server.stop()


def test_out_of_file_descriptors(tmp_path: Path) -> None:
    """240 stalled connections to a server that may open 256 files: /healthz still answers at
    once, the connections are closed by the header timeout, and the log stays short."""
    log = tmp_path / "serve.log"
    server = Server(tmp_path / "data", extra_args=["--header-timeout", "1"],
                    launcher=LIMIT_FILES, log_file=log).start()  # fmt: skip
    try:
        with connections(server.http_port, 240, PARTIAL_HEADERS) as stalled:
            # 503 while the listener is full; a burst the open files cannot take makes
            # asyncio's accept wait 1 s (logged once).
            started = time.monotonic()
            assert healthz(server, timeout_s=5) in (200, 503)
            assert time.monotonic() - started < 2.5
            seen = watch(stalled, 3)
        assert all(s.closed_after_s is not None for s in seen)
        assert {status_line(s) for s in seen} == {
            b"HTTP/1.1 408 Request Timeout",  # held, then timed out
            b"HTTP/1.1 503 Service Unavailable",  # over the limit the 256 files allow
        }
        assert healthz(server) == 200
    finally:
        server.stop()
    text = log.read_text()
    assert "at most" in text  # the limit was lowered to fit the open files
    assert len(text) < 20_000, text[-3000:]
    assert text.count("Too many open files") <= 2


def test_grpc_handshakes_connections_and_slow_messages(tmp_path: Path) -> None:
    limits = ["--header-timeout", "1", "--body-timeout", "1", "--max-connections", "5"]
    server = Server(tmp_path / "data", extra_args=limits).start()
    address = ("127.0.0.1", server.grpc_port)
    try:
        # No HTTP/2 preface: five are held until the handshake timeout, three refused at once.
        with connections(server.grpc_port, 8) as idle:
            seen = watch(idle, 3)
        closed = sorted(s.closed_after_s or 99 for s in seen)
        assert all(t < 0.5 for t in closed[:3]) and all(0.8 < t < 1.6 for t in closed[3:]), seen
        # A message that never ends: the connection goes away after 2 s and is closed 1 s later.
        start = rawgrpc.call_start(address, TRACE_EXPORT, compressed=False)
        with connections(server.grpc_port, 1, start + rawgrpc.data_frame(b"\x00\x00\x00\x10")) \
                as slow:  # fmt: skip
            [seen_slow] = watch(slow, 6)
        assert seen_slow.closed_after_s is not None and seen_slow.closed_after_s < 4, seen_slow
        with grpc.insecure_channel(server.grpc_endpoint) as channel:
            stub = trace_service_pb2_grpc.TraceServiceStub(channel)  # type: ignore[no-untyped-call]
            stub.Export(ExportTraceServiceRequest.FromString(audit_request(2)), timeout=10)
        assert server.metrics()["otaudit_tree_size"] == 2
    finally:
        server.stop()


def test_sigterm_with_slow_clients_has_a_deadline(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", extra_args=["--shutdown-timeout", "1"]).start()
    assert server.proc is not None
    start = rawgrpc.call_start(("127.0.0.1", server.grpc_port), TRACE_EXPORT, compressed=False)
    start += rawgrpc.data_frame(b"\x00")  # one byte of a message
    with connections(server.http_port, 5, SLOW_BODY) as slow, \
            connections(server.http_port, 5, PARTIAL_HEADERS) as stalled, \
            connections(server.grpc_port, 3, start) as grpc_slow:  # fmt: skip
        watch(slow, 0.5, trickle_every_s=0.1)
        started = time.monotonic()
        server.proc.terminate()
        watch(slow + stalled + grpc_slow, 5, trickle_every_s=0.1)
        code = server.proc.wait(timeout=30)
        elapsed = time.monotonic() - started
    assert code == 0
    assert elapsed < 3.5  # 1 s for requests in flight, then the final checkpoint
    result = otaudit("verify", "--data", str(server.data))
    assert result.returncode == 0, result.stderr
