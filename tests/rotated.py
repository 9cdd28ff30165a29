"""A ledger whose key was rotated, built in this process (tests/minilog.py), for the key
rotation tests."""

from __future__ import annotations

import time
from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from minilog import run_cli, sealed_ledger
from otaudit import datadir
from otaudit.access import Reader
from otaudit.checkpointer import Checkpointer
from otaudit.keys import SigningKey, VerifierKey
from otaudit.otlp.convert import select_spans
from otaudit.record import seal
from otaudit.store.base import Store
from support import audit_request

READER = Reader("tester")


def append_records(store: Store, n: int) -> None:
    """Append ``n`` audit records (unsigned)."""
    request = ExportTraceServiceRequest.FromString(audit_request(n))
    records = select_spans(request, "audit.action").records
    store.append([seal(obj, content, "otlp", time.time_ns()) for obj, content in records])


def grow(data: Path, n: int, *, store_url: str | None = None) -> None:
    """Append ``n`` audit records and sign them with the key in force (as ``serve`` does)."""
    store = datadir.open_store(data, store_url, readonly=False)
    try:
        key = datadir.signing_key(data, store, None, None)
        append_records(store, n)
        Checkpointer(store, key, key.name).checkpoint()
    finally:
        store.close()


def rotated(data: Path) -> tuple[VerifierKey, VerifierKey, int]:
    """A ledger of 5 records, rotated, then 4 more records signed by the new key: the old
    key, the new key and the rotation record's seq."""
    old = VerifierKey.parse(sealed_ledger(data, audit_request(5)))
    result = run_cli("key", "rotate", "--data", data)
    assert result.exit_code == 0, result.output + result.stderr
    new = SigningKey.load(data / "signing.key").verifier()
    grow(data, 4)
    seq = int(result.output.split(" at seq ")[1].split(":")[0])
    return old, new, seq
