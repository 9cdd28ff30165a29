"""Ingest into a large ledger (issue 16, target 2): throughput with 10,000,000 records
already in the ledger, against the same load on an empty one, in the same run.

The large ledger is filled through the library as ``serve`` fills it (the same request
bytes decoded and sealed by :func:`otaudit.ingest.prepare`, appended in large batches,
one signed checkpoint at the end), then ``otaudit serve`` starts on it and takes the
same closed-loop OTLP/HTTP load as the empty ledger did. Sizes and rates go to stderr
as it fills (it takes minutes at 10,000,000). Both servers run without the detection
rules: a ledger filled in minutes has every record inside the rules' lookback, so a
server starting on it would first judge all of them while the load runs (the rules'
own cost is the detect bench's figure).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Final

from bench.load import LoadSpec, run_load
from bench.payloads import SPANS_PER_BATCH, PayloadFactory
from bench.report import num, progress, table
from bench.server import ServerProcess, describe_fs
from otaudit import datadir
from otaudit.checkpointer import Checkpointer
from otaudit.ingest import IngestSettings, prepare
from otaudit.otlp.body import PROTOBUF
from otaudit.record import Entry

#: Records in the large ledger (``--quick``: 200,000).
LARGE: Final = 10_000_000
#: The large ledger's rate must be within this of the empty ledger's.
WITHIN: Final = 0.15
_FILL_BATCH: Final = 40 * SPANS_PER_BATCH


def fill(data: Path, records: int) -> float:
    """Append ``records`` fresh records to a new ledger in ``data``; return records/s."""
    data = datadir.check(data, create=True)
    store = datadir.open_store(data, None, readonly=False)
    try:
        key = datadir.signing_key(data, store, None, None)
        factory = PayloadFactory(seed=23)
        settings = IngestSettings()
        started = time.perf_counter()
        done = 0
        while done < records:
            entries: list[Entry] = []
            while len(entries) < min(_FILL_BATCH, records - done):
                spans = min(SPANS_PER_BATCH, records - done - len(entries))
                body = factory.request_bytes(spans)
                entries += prepare("traces", PROTOBUF, body, False, "otlp", time.time_ns(),
                                   settings).entries  # fmt: skip
            store.append(entries)
            done += len(entries)
            if done % 500_000 < _FILL_BATCH or done == records:
                progress("scale: fill", done, records, started)
        Checkpointer(store, key, key.name).checkpoint()
        return records / (time.perf_counter() - started)
    finally:
        store.close()
        # The gigabytes the fill wrote are on disk before the load starts, not written
        # back by the kernel beside it.
        os.sync()


def _load(srv: ServerProcess, batches: int) -> dict[str, Any]:
    spec = LoadSpec("http", srv.http_port, srv.grpc_port, srv.pid, 4, batches)
    return run_load("throughput", spec)


def run(quick: bool) -> str:
    """Closed-loop OTLP/HTTP throughput on an empty ledger and on a large one."""
    records = 200_000 if quick else LARGE
    batches = 60 if quick else 200
    rows: list[list[Any]] = []
    notes: list[str] = []
    rates: list[float] = []
    for label, size in (("empty ledger", 0), (f"{num(records)} records", records)):
        srv = ServerProcess("scale", ("--no-detect",))
        fill_rate = fill(srv.data, size) if size else 0.0
        with srv:
            notes.append(f"{label}: data dir on {describe_fs(srv.root)}")
            _load(srv, 8)  # warm up (workers started, pages cached); not counted
            res = _load(srv, batches)
        phase = res["phase"]
        rate = phase.acked_spans / phase.wall_s if phase.wall_s else 0.0
        rates.append(rate)
        rows.append([label, num(phase.acked_spans), sum(phase.errors.values()),
                     f"{phase.wall_s:.2f}", f"**{num(rate)}**",
                     num(fill_rate) if size else ""])  # fmt: skip
        print(f"scale: {label}: {rate:,.0f} spans/s", file=sys.stderr)
    ratio = rates[1] / rates[0] if rates[0] else 0.0
    verdict = "met" if ratio >= 1 - WITHIN else "MISSED"
    rows[1].append(f"{ratio:.2f}x of empty: >= {1 - WITHIN:.2f}x: {verdict}")
    rows[0].append("")
    headers = ["ledger before the load", "acked spans", "errors", "wall s", "durable spans/s",
               "fill: records/s (prepare + append)", "target"]  # fmt: skip
    intro = (
        f"### Ingest into a large ledger (OTLP/HTTP, 4 senders x {SPANS_PER_BATCH} spans, "
        f"{batches} batches, closed loop)\n\n"
    )
    return intro + table(headers, rows) + "\n\n" + "\n".join(f"- {n}" for n in notes)
