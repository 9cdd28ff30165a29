"""``prepare`` throughput, one thread, no I/O: decode + select + seal + columns of the
bench mix (``bench.payloads``, batches of 512 audit spans), per path.

Rows: the raw upb parse of the same bytes (the baseline), the Python reference
(``ingest.prepare_reference``), the compiled core call alone (``_core.prepare_spans``,
its result as Python tuples), the full ``ingest.prepare`` with the core (the ``Entry``
and ``Columns`` objects ingest uses), and OTLP/JSON through ``ingest.prepare`` (the
Python path). Rates are spans per second of the calling thread's CPU time (a core's
worth of work, untouched by preemption on a busy machine), best of a few rounds.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any, Final

import orjson
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.payloads import SPANS_PER_BATCH, PayloadFactory, self_check
from bench.report import num, ratio, table
from otaudit import _core
from otaudit.ingest import IngestSettings, prepare, prepare_reference
from otaudit.otlp import native
from otaudit.otlp.body import JSON, PROTOBUF

#: Spans per second per core the core alone must reach (issue 16).
TARGET: Final = 150_000
RECEIVED_NS: Final = 1_764_288_000_123_456_789
_IDS: Final = ("traceId", "spanId", "parentSpanId")


def _hex_ids(node: Any) -> Any:
    """OTLP/JSON writes ids as hex, where protobuf's JSON mapping writes base64."""
    if isinstance(node, dict):
        return {k: base64.b64decode(v).hex() if k in _IDS else _hex_ids(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_hex_ids(v) for v in node]
    return node


def json_body(data: bytes) -> bytes:
    """The OTLP/JSON form of a protobuf export request."""
    request = ExportTraceServiceRequest.FromString(data)
    return orjson.dumps(_hex_ids(MessageToDict(request, use_integers_for_enums=True)))


def rate(fn: Callable[[bytes], object], batches: list[bytes], rounds: int = 3) -> float:
    """Spans per second of thread CPU time of ``fn`` over ``batches``, best of ``rounds``."""
    best = 0.0
    for _ in range(rounds):
        started = time.thread_time()
        for b in batches:
            fn(b)
        spent = time.thread_time() - started
        best = max(best, len(batches) * SPANS_PER_BATCH / max(spent, 1e-9))
    return best


def run(quick: bool) -> str:
    """The table: each path's spans/s per core, next to the raw parse of the same bytes."""
    self_check()
    count = 8 if quick else 40
    batches = PayloadFactory(seed=16).batches(count)
    settings = IngestSettings(workers=0)
    options = native.options(settings.audit_attribute, settings.limits, settings.redactor)
    json_batches = [json_body(b) for b in batches]
    ref = prepare_reference("traces", PROTOBUF, batches[0], "otlp", RECEIVED_NS, settings)
    got = prepare("traces", PROTOBUF, batches[0], False, "otlp", RECEIVED_NS, settings)
    assert got == ref, "the core and the reference differ on the bench mix"

    parse = rate(ExportTraceServiceRequest.FromString, batches)
    rows: list[tuple[str, float]] = [
        ("raw upb parse (baseline)", parse),
        (
            "Python reference (prepare_reference)",
            rate(
                lambda b: prepare_reference("traces", PROTOBUF, b, "otlp", RECEIVED_NS, settings),
                batches,
                rounds=1 if quick else 2,
            ),
        ),
        ("core alone (_core.prepare_spans)", rate(
            lambda b: _core.prepare_spans(b, options, "otlp", RECEIVED_NS), batches
        )),
        ("ingest.prepare with the core", rate(
            lambda b: prepare("traces", PROTOBUF, b, False, "otlp", RECEIVED_NS, settings),
            batches,
        )),
        ("ingest.prepare, OTLP/JSON (Python path)", rate(
            lambda b: prepare("traces", JSON, b, False, "otlp", RECEIVED_NS, settings),
            json_batches,
            rounds=1,
        )),
    ]  # fmt: skip
    core = rows[2][1]
    lines = [[name, f"**{num(r)}**", ratio(r, parse)] for name, r in rows]
    lines.append(
        [
            f">= {num(TARGET)} spans/s per core (core alone)",
            "met" if core >= TARGET else "MISSED",
            "",
        ]
    )
    intro = (
        f"### prepare: decode + select + seal + columns ({count} distinct batches of "
        f"{SPANS_PER_BATCH} audit spans, 1 thread, no I/O; thread CPU time, best round)\n\n"
    )
    return intro + table(["path", "spans/s per core", "vs raw upb parse"], lines)
