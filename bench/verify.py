"""Ledger benchmarks through the library: build N records, verify them all, time proofs.

The ledger is built the way the server builds it, minus the network: a data directory
prepared by ``otaudit.datadir``, spans encoded as OTLP protobuf and selected by
``otaudit.otlp.convert.select_spans``, sealed by ``otaudit.record.seal``, appended in
transactions of 10,000 through ``store.append`` (a checkpoint signed after each, as the
server's sequencer does about once a second). Verification then runs on a read-only
connection, like ``otaudit verify``; its baseline is raw SHA-256 over the same sealed
bytes read back from the store. Beside it: the Python reference (``reference=True``), and
what the compiled core cannot go below, measured on the same ledger in the same run: its
reading of every row (:func:`otaudit._core.scan_sqlite`), and that with every record's
JSON parsed.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import sys
import time
from typing import Any, Final

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.payloads import AUDIT_KEY, SPANS_PER_BATCH, PayloadFactory
from bench.report import num, percentile, progress, ratio, table, timed
from bench.server import describe_fs, scratch_dir
from otaudit import _core, datadir, merkle, tree
from otaudit.checkpointer import Checkpointer
from otaudit.keys import VerifierKey
from otaudit.otlp.convert import select_spans
from otaudit.record import Entry, seal
from otaudit.store import codec
from otaudit.store.base import Store
from otaudit.store.sqlite import SQLiteStore
from otaudit.store.sqlite_query import read_uri
from otaudit.verify import verify_ledger

APPEND_BATCH: Final = 10_000
PROOFS: Final = 1_000
PROOF_TARGET_MS: Final = 5.0
_CHUNK: Final = 50_000


def _entries(factory: PayloadFactory, count: int) -> list[Entry]:
    entries: list[Entry] = []
    while len(entries) < count:
        spans = min(SPANS_PER_BATCH, count - len(entries))
        request = ExportTraceServiceRequest.FromString(factory.request_bytes(spans))
        received = time.time_ns()
        sel = select_spans(request, AUDIT_KEY)
        entries.extend(seal(obj, content, "otlp", received) for obj, content in sel.records)
    return entries


def build(store: Store, cp: Checkpointer, n: int) -> tuple[dict[str, float], list[float]]:
    """Append ``n`` fresh records in batches, signing a checkpoint after each.

    Returns the time spent in each step, and the append rate (records/s) of each
    successive 100,000 records (to show how appends slow down as the ledger grows).
    """
    factory = PayloadFactory(seed=17)
    t_seal = t_append = t_cp = 0.0
    started = time.perf_counter()
    done = 0
    trend: list[float] = []
    mark = (0, 0.0)
    while done < n:
        t0 = time.perf_counter()
        entries = _entries(factory, min(APPEND_BATCH, n - done))
        t1 = time.perf_counter()
        result = store.append(entries)
        t2 = time.perf_counter()
        cp.checkpoint()
        t_cp += time.perf_counter() - t2
        t_seal, t_append = t_seal + t1 - t0, t_append + t2 - t1
        if None in result.seqs:
            raise RuntimeError("the generator repeated a record (dedup skipped it)")
        done += len(entries)
        if done % 100_000 == 0 or done == n:
            trend.append((done - mark[0]) / (t_append - mark[1]))
            mark = (done, t_append)
            progress("build", done, n, started)
            print(f"    store.append: {trend[-1]:,.0f} records/s lately", file=sys.stderr)
    times = {"total": time.perf_counter() - started, "seal": t_seal, "append": t_append, "cp": t_cp}
    return times, trend


def hash_baseline(store: Store) -> dict[str, float]:
    """Read the sealed bytes back in chunks; time per-record and streaming SHA-256 on them."""
    per_record = streaming = 0.0
    records = nbytes = 0
    whole = hashlib.sha256()
    started = time.perf_counter()
    chunk: list[bytes] = []

    def flush() -> None:
        nonlocal per_record, streaming
        t0 = time.perf_counter()
        for b in chunk:
            hashlib.sha256(b).digest()
        t1 = time.perf_counter()
        joined = b"".join(chunk)
        t2 = time.perf_counter()
        whole.update(joined)
        t3 = time.perf_counter()
        per_record, streaming = per_record + t1 - t0, streaming + t3 - t2
        chunk.clear()

    for rec in store.iter_records():
        chunk.append(bytes(rec.sealed))
        records += 1
        nbytes += len(rec.sealed)
        if len(chunk) == _CHUNK:
            flush()
    flush()
    read = time.perf_counter() - started - per_record - streaming
    return dict(records=records, bytes=nbytes, sha=per_record, stream=streaming, read=read)


def core_floor(store: Store) -> dict[str, float]:
    """Seconds the core takes to read every record row (``read``), and to read and parse
    them (``parse``): what verify in the core cannot go below."""
    assert isinstance(store, SQLiteStore)
    uri = read_uri(store.path)
    out = {}
    for label, parse in (("read", False), ("parse", True)):
        started = time.perf_counter()
        _core.scan_sqlite(uri, parse, codec.MAX_RECORD_BYTES)
        out[label] = time.perf_counter() - started
    return out


def proofs(store: Store, size: int) -> list[list[Any]]:
    """p50/p99/max ms of proof generation and verification at ``size`` leaves."""
    rng = random.Random(5)
    root = tree.stored_root(store, size)
    indexes = [(rng.randrange(size),) for _ in range(PROOFS)]
    node_t, node_c, _ = timed(lambda i: store.nodes([(0, i)]), indexes)
    inc_t, inc_c, inc = timed(lambda i: tree.stored_inclusion_proof(store, i, size), indexes)
    # The leaf is hashed from the record's sealed bytes, not read from the tree.
    leaves = [merkle.leaf_hash(next(store.iter_records(i, i + 1)).sealed) for (i,) in indexes]
    vinc_t, vinc_c, _ = timed(
        lambda i, leaf, p: merkle.verify_inclusion(leaf, i, size, p, root),
        [(i, leaf, p) for (i,), leaf, p in zip(indexes, leaves, inc, strict=True)],
    )
    olds = [(rng.randrange(1, size + 1),) for _ in range(PROOFS)]
    con_t, con_c, con = timed(lambda m: tree.stored_consistency_proof(store, m, size), olds)
    roots = [tree.stored_root(store, m) for (m,) in olds]
    vcon_t, vcon_c, _ = timed(
        lambda m, r, p: merkle.verify_consistency(m, size, p, r, root),
        [(m, r, p) for (m,), r, p in zip(olds, roots, con, strict=True)],
    )
    lengths_inc = sum(len(p) for p in inc) / len(inc)
    lengths_con = sum(len(p) for p in con) / len(con)

    def row(label: str, t: list[float], c: list[float], target: bool) -> list[Any]:
        p99 = percentile(t, 99)
        verdict = f"< {PROOF_TARGET_MS:.0f}: {'met' if p99 < PROOF_TARGET_MS else 'MISSED'}"
        stats = (num(v, 3) for v in (percentile(t, 50), p99, max(t), percentile(c, 99)))
        return [label, len(t), *stats, verdict if target else ""]

    return [
        row("baseline: one stored node read (store.nodes, 1 key)", node_t, node_c, False),
        row(f"tree.stored_inclusion_proof (avg {lengths_inc:.1f} hashes)", inc_t, inc_c, True),
        row("merkle.verify_inclusion (vs tree.stored_root)", vinc_t, vinc_c, False),
        row(f"tree.stored_consistency_proof (avg {lengths_con:.1f} hashes)", con_t, con_c, True),
        row("merkle.verify_consistency (vs tree.stored_root)", vcon_t, vcon_c, False),
    ]


def run(quick: bool, records: int) -> str:
    """Build, verify and prove a ledger of ``records`` records (20,000 with ``quick``)."""
    n = 20_000 if quick else records
    root = scratch_dir("verify-")
    try:
        data = datadir.check(root / "data", create=True)
        store = datadir.open_store(data, None, readonly=False)
        key = datadir.signing_key(data, store, None, None)
        print(f"verify: building a ledger of {n:,} records in {data}", file=sys.stderr)
        b, trend = build(store, Checkpointer(store, key, key.name), n)
        store.close()
        db_mb = (data / datadir.LEDGER_FILE).stat().st_size / 1e6
        ro = datadir.open_store(data, None, readonly=True)
        try:
            vkey: VerifierKey = datadir.verifier_key(data, ro, None)
            print("verify: SHA-256 baseline", file=sys.stderr)
            h = hash_baseline(ro)
            print("verify: verify_ledger", file=sys.stderr)
            started = time.perf_counter()

            def tick(done: int) -> None:
                if done % 100_000 == 0:
                    progress("verify", done, n, started)

            report = verify_ledger(ro, vkey, progress=tick)
            print("verify: the core's floor (scan_sqlite)", file=sys.stderr)
            floor = core_floor(ro)
            print("verify: verify_ledger, reference=True", file=sys.stderr)
            ref = verify_ledger(ro, vkey, reference=True)
            print("verify: proofs", file=sys.stderr)
            proof_rows = proofs(ro, n)
        finally:
            ro.close()
        fs = describe_fs(data)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    mb = h["bytes"] / 1e6
    sha_rate = h["records"] / h["sha"]
    v_rate = report.records / report.seconds

    def step(label: str, secs: float, vs: bool = False, target: str = "") -> list[Any]:
        rate = n / secs
        return [
            label,
            num(n),
            f"{secs:.2f}",
            num(rate),
            num(mb / secs, 1),
            ratio(rate, sha_rate) if vs else "",
            target,
        ]

    checkpoints = report.checkpoints
    verdict = "met" if v_rate >= 0.5 * sha_rate else "MISSED"
    rows = [
        step("build: make spans + select_spans + seal (1 thread)", b["seal"]),
        step(f"build: store.append, {APPEND_BATCH:,}/transaction (fsync)", b["append"]),
        [
            f"build: {checkpoints} x Checkpointer.checkpoint "
            f"({1e3 * b['cp'] / checkpoints:.1f} ms each)",
            "",
            f"{b['cp']:.2f}",
            "",
            "",
            "",
            "",
        ],
        step("build: total", b["total"]),
        step("baseline: read back sealed bytes (iter_records)", h["read"], True),
        step("baseline: raw SHA-256 per record", h["sha"], True),
        step("baseline: raw SHA-256 over all bytes (one hash)", h["stream"], True),
        step("floor: the core reads every row (scan_sqlite)", floor["read"], True),
        step("floor: the core reads and parses every row", floor["parse"], True),
        step(
            "**verify_ledger** (records, tree, checkpoints; the core)",
            report.seconds,
            True,
            f">= 50% of per-record SHA-256: {verdict}",
        ),
        step("verify_ledger, reference=True (Python)", ref.seconds, True),
    ]
    headers = [
        "step",
        "records",
        "seconds",
        "records/s",
        "MB/s",
        "vs raw SHA-256 per record",
        "target",
    ]
    intro = (
        f"### Verification ({num(n)} records, {mb:,.0f} MB sealed, ledger.db {db_mb:,.0f} MB, "
        f"{report.checkpoints} checkpoints; data dir on {fs})\n\n"
    )
    trend_note = (
        "\n\n- store.append records/s per successive 100,000 records: "
        + ", ".join(num(r) for r in trend)
        if len(trend) > 1
        else ""
    )
    proof_intro = f"\n\n### Proof latency at tree size {num(n)} ({PROOFS:,} random each)\n\n"
    proof_table = table(
        ["operation", "n", "p50 ms", "p99 ms", "max ms", "p99 ms CPU time", "target p99"],
        proof_rows,
    )
    return intro + table(headers, rows) + trend_note + proof_intro + proof_table
