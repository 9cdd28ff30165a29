"""Durable before acknowledged: SIGKILL at random moments under load loses nothing acknowledged.

Twenty times: senders post batches as fast as they are acknowledged, the
server is killed with SIGKILL after a random delay, every span of every
acknowledged batch must be in the ledger and the ledger must verify; the
server restarts on the same data directory and ingest goes on. At the end
the restarted server has signed everything. And a killed server leaves no
process behind: its ingest workers, the forkserver and resource tracker of
multiprocessing, and its detection process all end with it.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import threading
import time
from pathlib import Path

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otaudit import datadir
from otaudit.verify import verify_ledger
from support import Server, audit_request, otaudit

# `make test` kills ten times; `make fuzz` (OTAUDIT_FUZZ_PROFILE=fuzz) fifty.
KILLS = 50 if os.environ.get("OTAUDIT_FUZZ_PROFILE") == "fuzz" else 10
SENDERS = 3


def _span_ids(body: bytes) -> list[str]:
    request = ExportTraceServiceRequest.FromString(body)
    return [s.span_id.hex() for rs in request.resource_spans for ss in rs.scope_spans
            for s in ss.spans]  # fmt: skip


def _stored_span_ids(data: Path) -> set[str]:
    conn = sqlite3.connect(f"file:{data / 'ledger.db'}?mode=ro", uri=True)
    try:
        return {r[0] for r in conn.execute("SELECT span_id FROM records")}
    finally:
        conn.close()


def _verify(data: Path) -> None:
    """The whole of ``otaudit verify``, in this process (twenty CLI starts cost half a minute)."""
    store = datadir.open_store(data, None, readonly=True)
    try:
        verify_ledger(store, datadir.verifier_key(data, store, None))
    finally:
        store.close()


def _load(url: str, stop: threading.Event, sizes: random.Random, acked: list[str]) -> None:
    """Post batches until stopped or the server is gone; record acknowledged span ids."""
    with httpx.Client(base_url=url, timeout=10) as client:
        while not stop.is_set():
            body = audit_request(sizes.randint(1, 60))
            try:
                response = client.post(
                    "/v1/traces", content=body, headers={"Content-Type": "application/x-protobuf"}
                )
            except httpx.HTTPError:
                return  # the server is gone: this batch was never acknowledged
            if response.status_code == 200:
                acked.extend(_span_ids(body))  # list.extend is atomic


def test_sigkill_at_random_moments_keeps_every_acknowledged_record(tmp_path: Path) -> None:
    rng = random.Random(20261128)
    # Ingest in the server process (--workers 0): the path a kill interrupts is the same
    # commit path, and twenty restarts do not wait for worker processes to start.
    server = Server(tmp_path / "data", extra_args=["--workers", "0"])
    acknowledged: list[str] = []
    for _ in range(KILLS):
        server.start()
        stop = threading.Event()
        senders = [
            threading.Thread(
                target=_load, args=(server.http_url, stop, random.Random(n), acknowledged)
            )
            for n in range(SENDERS)
        ]
        for t in senders:
            t.start()
        time.sleep(rng.uniform(0.1, 0.8))
        server.stop(signal.SIGKILL)
        stop.set()
        for t in senders:
            t.join()
        missing = set(acknowledged) - _stored_span_ids(server.data)
        assert not missing, f"{len(missing)} acknowledged spans lost"
        _verify(server.data)  # raises at the first problem; the tail may be unsigned
    assert len(acknowledged) > 500
    # The last kill left records after the latest checkpoint: a restart signs them.
    server.start()
    server.stop()
    result = otaudit("verify", "--data", str(server.data))
    assert result.returncode == 0, result.stderr
    assert "after the latest checkpoint" not in result.stdout


def _children() -> dict[int, list[int]]:
    """Every process's children, from /proc (pid -> child pids)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # gone meanwhile
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    return children


def _descendants(pid: int) -> set[int]:
    children, found, todo = _children(), set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its (dead) parent could reap it


def test_sigkill_leaves_no_process_behind(tmp_path: Path) -> None:
    # Two ingest workers (forked by the multiprocessing forkserver, with its resource
    # tracker) and the detection process: five helpers, none of which may outlive the server.
    server = Server(tmp_path / "data", extra_args=["--workers", "2"], detect=True)
    for _ in range(2):
        server.start()
        assert server.proc is not None
        pid = server.proc.pid
        assert (
            httpx.post(
                f"{server.http_url}/v1/traces",
                content=audit_request(5),
                timeout=30,
                headers={"Content-Type": "application/x-protobuf"},
            ).status_code
            == 200
        )
        deadline = time.monotonic() + 20
        while len(helpers := _descendants(pid)) < 5 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(helpers) >= 5, helpers
        server.stop(signal.SIGKILL)
        deadline = time.monotonic() + 5
        while (left := {p for p in helpers if _alive(p)}) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not left, [Path(f"/proc/{p}/cmdline").read_bytes()[:80] for p in left]
