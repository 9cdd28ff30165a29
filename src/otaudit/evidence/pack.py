"""Building an evidence pack (``otaudit evidence``).

In order: the period's checkpoints (refused when no checkpoint seals the period's end);
per control, its population streamed into ``controls/<id>/`` with the exact query, the
sample drawn from the closing checkpoint (with each sampled record's inclusion proof) and,
for the monitoring controls, the period's alerts and their triage; ``completeness/``;
``configuration/``; the report; ``pack.json``; last, ``MANIFEST``, signed with the log's
key. Nothing of a population is held in memory but its sample.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import orjson

from otaudit import proofs
from otaudit.detect.rules import Rule
from otaudit.errors import ConfigError
from otaudit.evidence import alerts as alert_files
from otaudit.evidence.context import write_completeness, write_configuration
from otaudit.evidence.files import PackWriter
from otaudit.evidence.manifest import NAME as MANIFEST
from otaudit.evidence.manifest import Manifest, sign_manifest
from otaudit.evidence.mapping import Control, Period, count_sql, population_sql
from otaudit.evidence.model import AlertRow, ControlSummary, PackSummary, TriageStats
from otaudit.evidence.period import period_checkpoints
from otaudit.evidence.population import (
    period_days,
    top,
    write_population,
    write_sample,
    zero_filled,
)
from otaudit.evidence.rows import stream
from otaudit.keyhistory import KeyHistory
from otaudit.keys import SigningKey, VerifierKey
from otaudit.record import rfc3339_ns, rfc3339_to_ns
from otaudit.sqlworker import QueryTarget
from otaudit.store.base import Store

FORMATS: Final = ("html", "pdf", "xlsx")
DEFAULT_FORMATS: Final = ("html", "pdf")
SILENCE_KIND: Final = "silence"


@dataclass(frozen=True)
class PackRequest:
    """What to build: the period ``[from_ns, to_ns)``, the controls, the sample size (None:
    by frequency) and the report's formats."""

    from_ns: int
    to_ns: int
    controls: Sequence[Control]
    sample_size: int | None
    formats: Sequence[str]
    rules: Sequence[Rule]
    built_by: str
    #: Where the populations' statements run (``--query-store`` on PostgreSQL), and whether
    #: its login must be one that reads only the views.
    target: QueryTarget
    checked: bool


def _control(
    writer: PackWriter,
    request: PackRequest,
    control: Control,
    period: Period,
    root_hash: bytes,
    store: Store,
    days: list[str],
    alerts: list[AlertRow] | None,
    stats: TriageStats | None,
) -> ControlSummary:
    folder = f"controls/{control.id}"
    sql = population_sql(control, period)
    rows = stream(request.target, sql, checked=request.checked)
    span_days = (request.to_ns - request.from_ns) / 86_400e9
    found, n, basis = write_population(
        writer, folder, rows, root_hash, request.sample_size, span_days
    )
    writer.write(f"{folder}/query.sql", sql + ";\n")
    parameters = period.parameters()
    writer.json(f"{folder}/query.json", {
        "control": control.id,
        "dialect": "otaudit sql (PostgreSQL-flavoured; runs as it is on either store)",
        "sql": sql,
        "count_sql": count_sql(control, period),
        "parameters": parameters,
        "mapping": control.as_yaml(),
        "rows": found.rows,
        "rerun": "otaudit sql \"$(cat query.sql)\" --format csv --max-rows "
                 f"{max(found.rows, 1)}",
    })  # fmt: skip
    write_sample(writer, folder, found)
    seqs = [seq for seq, _ in found.sample]
    proof_lines = b"".join(
        orjson.dumps(proofs.proven_record(store, seq, period.tree_size)) + b"\n" for seq in seqs
    )
    writer.write(f"{folder}/sample_proofs.jsonl", proof_lines)
    writer.json(f"{folder}/sample.json", {
        "population": found.rows,
        "n": n,
        "size_basis": basis,
        "seed": {"tree_size": period.tree_size, "root_hash": root_hash.hex(),
                 "checkpoint": "completeness/closing.checkpoint"},
        "method": "order the population's seqs by SHA-256(root_hash || seq as 8 bytes "
                  "big-endian) and take the first n (as otaudit sample does)",
        "seqs": seqs,
    })  # fmt: skip
    if alerts is not None:
        alert_files.write_alerts(writer, folder, alerts)
        writer.json(f"{folder}/triage.json", vars(stats) if stats else {})
    summary = ControlSummary(
        control=control.id,
        title=control.title,
        description=control.description,
        sql=sql,
        parameters=parameters,
        rows=found.rows,
        failures=found.failures,
        per_day=zero_filled(found.per_day, days),
        by_action=top(found.by_action),
        by_result=top(found.by_result),
        sample_size=n,
        sample_basis=basis,
        sample_seqs=seqs,
        alerts=alerts or [],
        triage=stats,
    )
    writer.json(f"{folder}/summary.json", {
        k: v for k, v in vars(summary).items() if k not in ("alerts", "triage", "sql")
    })  # fmt: skip
    return summary


def build_pack(
    store: Store,
    writer: PackWriter,
    request: PackRequest,
    signer: SigningKey,
    key: VerifierKey,
    history: KeyHistory,
    *,
    store_kind: str,
    progress: Callable[[str], None] = lambda _: None,
) -> PackSummary:
    """Write the whole pack into ``writer``; the summary its report shows."""
    if request.to_ns <= request.from_ns:
        raise ConfigError("the period is empty: --to must be after --from")
    checkpoints = period_checkpoints(store, request.from_ns, request.to_ns)
    closing = checkpoints.closing
    if signer.verifier() not in history.keys:
        raise ConfigError(
            f"the signing key {signer.verifier()} is not a key of this log "
            f"({', '.join(str(k) for k in history.keys)}): pass the log's own --key-file"
        )
    if history.key_for(closing.tree_size) != signer.verifier():
        raise ConfigError(
            "the log's signing key was rotated after the period's closing checkpoint (tree "
            f"size {closing.tree_size}): the pack's MANIFEST must be signed by the key that "
            "signed that checkpoint, which is no longer the key in force"
        )
    period = Period(request.from_ns, request.to_ns, closing.tree_size)
    days = period_days(request.from_ns, request.to_ns)
    alerts = alert_files.period_alerts(store, request.from_ns, request.to_ns, closing.tree_size)
    stats = alert_files.triage_stats(alerts)
    summaries = []
    for control in request.controls:
        progress(f"control {control.id}")
        summaries.append(_control(
            writer, request, control, period, closing.root_hash, store, days,
            alerts if control.alerts else None, stats if control.alerts else None,
        ))  # fmt: skip
    progress("completeness")
    silence_rules = {r.name for r in request.rules if r.kind == SILENCE_KIND}
    silences = sum(1 for a in alerts if a.rule in silence_rules)
    completeness = write_completeness(
        writer, store, request.target, period, checkpoints, days, silences
    )
    progress("configuration")
    configuration = write_configuration(writer, store, closing.tree_size, request.rules, key,
                                        history)  # fmt: skip
    summary = PackSummary(
        origin=_origin(closing.note),
        period_from=rfc3339_ns(request.from_ns),
        period_to=rfc3339_ns(request.to_ns),
        built_at=rfc3339_ns(time.time_ns()),
        built_by=request.built_by,
        store=store_kind,
        days=days,
        controls=summaries,
        completeness=completeness,
        configuration=configuration,
    )
    progress("report")
    _report(writer, summary, request)
    summary.files = sorted([*writer.hashes, "pack.json"])
    writer.json("pack.json", summary.as_json())
    manifest = Manifest(
        origin=summary.origin,
        period=(summary.period_from, summary.period_to),
        tree_size=closing.tree_size,
        root_hash=closing.root_hash.hex(),
        files=dict(writer.hashes),
    )
    writer.write(MANIFEST, sign_manifest(manifest, signer))
    writer.out.sync()
    return summary


def _origin(note: str) -> str:
    return note.split("\n", 1)[0]


def _report(writer: PackWriter, summary: PackSummary, request: PackRequest) -> None:
    from otaudit.evidence.charts import draw_charts
    from otaudit.evidence.report import render_html, render_pdf

    charts = draw_charts(summary)
    for name, chart in sorted(charts.items()):
        writer.write(f"charts/{name}.svg", chart.svg)
    if "html" in request.formats:
        writer.write("report.html", render_html(summary, charts))
    if "pdf" in request.formats:
        writer.write("report.pdf", render_pdf(summary, charts))
    if "xlsx" in request.formats:
        _xlsx(writer, summary)


def _xlsx(writer: PackWriter, summary: PackSummary) -> None:
    """``populations.xlsx``, built aside from the populations written, then copied in."""
    from otaudit.evidence.xlsx import write_xlsx

    root = writer.out.path
    sheets = [(c.control, root / f"controls/{c.control}/population.csv") for c in summary.controls]
    created = datetime.fromtimestamp(rfc3339_to_ns(summary.built_at) // 10**9, UTC)
    with tempfile.TemporaryDirectory(prefix="otaudit-xlsx-") as tmp:
        path = Path(tmp) / "populations.xlsx"
        write_xlsx(path, sheets, created.replace(tzinfo=None))
        file = writer.open("populations.xlsx")
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                file.write(chunk)
        writer.done(file)
