"""Durable before acknowledged: SIGKILL during load loses nothing that was acknowledged."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import httpx
from test_storage_faults import audit_request

from support import Server, otaudit


def test_sigkill_during_load_keeps_every_acknowledged_record(tmp_path: Path) -> None:
    server = Server(tmp_path / "data").start()
    acknowledged: list[int] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                try:
                    response = client.post(
                        f"{server.http_url}/v1/traces",
                        content=audit_request(100),
                        headers={"Content-Type": "application/x-protobuf"},
                    )
                except httpx.HTTPError:
                    return
                if response.status_code == 200:
                    acknowledged.append(100)

    senders = [threading.Thread(target=load) for _ in range(3)]
    for t in senders:
        t.start()
    while sum(acknowledged) < 3000:
        threading.Event().wait(0.05)
    server.stop(signal.SIGKILL)
    stop.set()
    for t in senders:
        t.join()

    # The killed server signed no final checkpoint; the restarted one covers the tail.
    count = otaudit("sql", "--data", str(server.data), "--format", "csv",
                    "SELECT count(*) FROM audit_records")  # fmt: skip
    assert int(count.stdout.splitlines()[1]) >= sum(acknowledged)
    server.start()
    server.stop()
    result = otaudit("verify", "--data", str(server.data))
    assert result.returncode == 0, result.stderr
    assert "after the latest checkpoint" not in result.stdout
