"""Records another process appends while the server is idle (a command's read record,
another node's export) are signed within about two checkpoint intervals, not when the
next export happens to arrive."""

from __future__ import annotations

import time
from pathlib import Path

from otaudit import ingest
from otaudit.checkpointer import Checkpointer
from otaudit.keys import SigningKey
from otaudit.ledger import Sequencer
from otaudit.metrics import Metrics
from otaudit.otlp.body import PROTOBUF
from otaudit.store.base import Store
from support import audit_request


def test_records_appended_by_another_process_are_signed_while_idle(
    any_store: Store, tmp_path: Path
) -> None:
    key = SigningKey.generate("idle")
    checkpointer = Checkpointer(any_store, key, key.name, saved_path=tmp_path / "cp")
    sequencer = Sequencer(any_store, checkpointer, Metrics(), checkpoint_interval_s=0.1)
    settings = ingest.IngestSettings(workers=0)
    body = audit_request(3, payload_bytes=20)
    sequencer.start()
    try:
        sequencer.submit(
            ingest.prepare("traces", PROTOBUF, body, False, "otlp", 1, settings).entries
        ).result(10)
        time.sleep(0.3)  # signed, then idle
        signed = any_store.latest_checkpoint()
        assert signed is not None and signed.tree_size == 3
        other = ingest.prepare("traces", PROTOBUF, audit_request(2), False, "otlp", 2, settings)
        any_store.append(other.entries)  # as another process would, past the sequencer
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            latest = any_store.latest_checkpoint()
            if latest is not None and latest.tree_size == 5:
                break
            time.sleep(0.02)
        waited = time.monotonic() - (deadline - 5)
    finally:
        sequencer.stop()
    latest = any_store.latest_checkpoint()
    assert latest is not None and latest.tree_size == 5
    assert waited < 1.0  # about two intervals of 0.1 s, with room for a busy machine
