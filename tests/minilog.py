"""A small signed ledger built in this process, and the CLI run in this process: for tests of
what the commands write, where starting a server and a process per command would be slow.

The records are selected and sealed by the code the receiver uses (``select_spans``,
``seal``) and the checkpoint is signed by the server's own :class:`Checkpointer`, so the
ledger is the one ``otaudit serve`` would have written for the same request.
"""

from __future__ import annotations

import time
from pathlib import Path

from click.testing import CliRunner, Result
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otaudit import datadir
from otaudit.checkpointer import Checkpointer
from otaudit.cli import bundle, completeness, detect, proofs, query, search
from otaudit.cli.main import cli
from otaudit.otlp.convert import select_spans
from otaudit.record import seal

for _module in (bundle, completeness, detect, proofs, query, search):
    _module.register(cli)


def sealed_ledger(data: Path, request: bytes) -> str:
    """Seal the audit spans of an OTLP traces ``request`` into a new ledger in ``data`` and
    sign a checkpoint of it; the log's verifier key."""
    datadir.check(data, create=True)
    store = datadir.open_store(data, None, readonly=False)
    try:
        key = datadir.signing_key(data, store, None, None)
        export = ExportTraceServiceRequest.FromString(request)
        records = select_spans(export, "audit.action").records
        store.append([seal(obj, content, "otlp", time.time_ns()) for obj, content in records])
        assert Checkpointer(store, key, key.name).checkpoint() is not None
        return key.verifier_key()
    finally:
        store.close()


def run_cli(*args: str | Path) -> Result:
    """``otaudit ARGS`` in this process (click's runner): exit_code, stdout, stderr."""
    return CliRunner().invoke(cli, [str(a) for a in args])
