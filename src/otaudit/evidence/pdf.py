"""The evidence pack's report as a PDF: the content of the HTML report, laid out by fpdf2.

Only the PDF core fonts are used (Helvetica, Courier), so nothing is bundled or fetched;
they cover latin-1, and any other character is written as ``?``. Table cells are cut to
their column's width (the CSV files hold every value in full). The document carries the
summary's ``built_at`` as its creation date and ``otaudit`` as its producer, and fpdf2
derives the file id from the content, so the same summary gives the same bytes.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from datetime import datetime

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from otaudit.evidence import present
from otaudit.evidence.charts import Chart
from otaudit.evidence.model import CheckpointInfo, ControlSummary, PackSummary

_FONT = "helvetica"
_MONO = "courier"
_LINE_MM = 5.0
_ROW_MM = 5.5
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _latin1(text: object) -> str:
    """``text`` as the core fonts can draw it: latin-1, '?' for anything else."""
    cleaned = _CONTROL_CHARS.sub("?", str(text))
    return cleaned.encode("latin-1", "replace").decode("latin-1")


class _Report(FPDF):
    """A page footer with the origin and the page number."""

    def __init__(self, origin: str) -> None:
        super().__init__(orientation="P", unit="mm", format="A4")
        self._origin = origin

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(_FONT, "", 8)
        self.cell(0, 6, _latin1(f"{self._origin} - page {self.page_no()}"), align="C")


def render_pdf(summary: PackSummary, charts: dict[str, Chart]) -> bytes:
    """The pack's report as a PDF: the same sections, figures and charts as the HTML one."""
    pdf = _Report(summary.origin)
    pdf.set_creation_date(_built_at(summary.built_at))
    pdf.set_producer("otaudit")
    pdf.set_creator("otaudit")
    pdf.set_title(_latin1(f"SOC 2 evidence: {summary.origin}"))
    pdf.set_auto_page_break(auto=True, margin=16)
    pdf.add_page()
    _title(pdf, summary)
    _scope(pdf, summary)
    _controls_table(pdf, summary)
    for chart in charts.values():
        _chart(pdf, chart)
    for control in summary.controls:
        _control(pdf, control)
    _completeness(pdf, summary)
    _configuration(pdf, summary)
    _how_to_verify(pdf, summary)
    return bytes(pdf.output())


def _built_at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --------------------------------------------------------------------------------------------
# Building blocks


def _heading(pdf: FPDF, text: str, size: float = 14, new_page: bool = False) -> None:
    if new_page or pdf.will_page_break(30):
        pdf.add_page()
    else:
        pdf.ln(3)
    pdf.set_font(_FONT, "B", size)
    pdf.multi_cell(0, size * 0.5, _latin1(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(1.5)


def _para(pdf: FPDF, text: str, style: str = "", mono: bool = False) -> None:
    pdf.set_font(_MONO if mono else _FONT, style, 8 if mono else 10)
    pdf.multi_cell(0, _LINE_MM, _latin1(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(1)


def _fit(pdf: FPDF, text: str, width: float) -> str:
    """``text`` cut (with '...') to fit ``width`` mm in the current font."""
    if pdf.get_string_width(text) <= width:
        return text
    while text and pdf.get_string_width(text + "...") > width:
        text = text[: max(0, min(len(text) - 1, int(len(text) * 0.9)))]
    return text + "..."


def _table(
    pdf: FPDF,
    headers: Sequence[str],
    rows: Sequence[Sequence[object]],
    widths: Sequence[float],
    numeric: Sequence[int] = (),
) -> None:
    """A table: ``widths`` are fractions of the page's width; ``numeric`` columns align right."""
    cols = [pdf.epw * w for w in widths]

    def row(cells: Sequence[object], header: bool) -> None:
        pdf.set_font(_FONT, "B" if header else "", 8)
        for i, (value, width) in enumerate(zip(cells, cols, strict=True)):
            text = _fit(pdf, _latin1(value), width - 2 * pdf.c_margin)
            align = "R" if i in numeric and not header else "L"
            pdf.cell(width, _ROW_MM, text, border=1, align=align, fill=header)
        pdf.ln(_ROW_MM)

    pdf.set_fill_color(235, 238, 243)
    if pdf.will_page_break(_ROW_MM * 3):
        pdf.add_page()
    row(headers, header=True)
    for cells in rows:
        if pdf.will_page_break(_ROW_MM):
            pdf.add_page()
            row(headers, header=True)
        row(cells, header=False)
    pdf.ln(2)


def _more(pdf: FPDF, total: int, csv_path: str) -> None:
    line = present.more_line(total, csv_path)
    if line:
        _para(pdf, line, style="I")


# --------------------------------------------------------------------------------------------
# Sections


def _title(pdf: FPDF, summary: PackSummary) -> None:
    pdf.set_font(_FONT, "B", 18)
    pdf.multi_cell(
        0,
        9,
        _latin1(f"SOC 2 evidence pack: {summary.origin}"),
        new_x=XPos.LMARGIN,
        new_y=YPos.NEXT,
    )
    _para(
        pdf,
        f"Period {summary.period_from} (inclusive) to {summary.period_to} (exclusive), "
        f"{len(summary.days)} days.",
    )
    if present.is_empty_period(summary):
        pdf.set_fill_color(238, 243, 250)
        pdf.set_font(_FONT, "B", 10)
        pdf.multi_cell(
            0,
            7,
            _latin1(present.EMPTY_PERIOD),
            border=1,
            fill=True,
            new_x=XPos.LMARGIN,
            new_y=YPos.NEXT,
        )
        pdf.ln(2)


def _scope(pdf: FPDF, summary: PackSummary) -> None:
    _heading(pdf, "Scope")
    facts = [
        ("Log origin", summary.origin),
        ("Store", summary.store),
        ("Built at", summary.built_at),
        ("Built by", summary.built_by),
    ]
    _table(pdf, ("Fact", "Value"), facts, (0.25, 0.75))

    def cp(label: str, info: CheckpointInfo) -> tuple[str, int, str, str, str]:
        return (label, info.tree_size, info.root_hash, info.signed_at, info.file)

    c = summary.completeness
    _table(
        pdf,
        ("Checkpoint", "Tree size", "Root hash", "Signed at", "File"),
        [cp("Opening", c.opening), cp("Closing", c.closing)],
        (0.12, 0.12, 0.4, 0.18, 0.18),
        numeric=(1,),
    )


def _controls_table(pdf: FPDF, summary: PackSummary) -> None:
    _heading(pdf, "Controls")
    rows = [
        (
            c.control,
            c.title,
            c.rows,
            c.failures,
            present.sample_text(c),
            present.population_path(c),
        )
        for c in summary.controls
    ]
    _table(
        pdf,
        ("Control", "Title", "Rows", "Failures", "Sample (basis)", "Population"),
        rows,
        (0.09, 0.3, 0.09, 0.09, 0.18, 0.25),
        numeric=(2, 3),
    )


def _chart(pdf: FPDF, chart: Chart) -> None:
    height = pdf.epw * 0.4 + 10
    if pdf.will_page_break(height):
        pdf.add_page()
    pdf.set_font(_FONT, "B", 10)
    pdf.cell(0, 6, _latin1(chart.title), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.image(io.BytesIO(chart.png), w=pdf.epw)
    pdf.ln(2)


def _control(pdf: FPDF, control: ControlSummary) -> None:
    _heading(pdf, f"{control.control}: {control.title}", new_page=True)
    _para(pdf, control.description)
    _para(
        pdf,
        f"{control.rows} records, {control.failures} failed. "
        f"Population: {present.population_path(control)}.",
    )
    _heading(pdf, "The query that selects the population", size=11)
    _para(pdf, control.sql, mono=True)
    if control.parameters:
        params = sorted((k, str(v)) for k, v in control.parameters.items())
        _table(pdf, ("Parameter", "Value"), params, (0.3, 0.7))
    for label, counts in (("Action", control.by_action), ("Result", control.by_result)):
        _table(pdf, (label, "Records"), present.top(counts) or [("none", "")], (0.5, 0.2), (1,))
    _heading(pdf, "Sample", size=11)
    seqs = ", ".join(str(s) for s in control.sample_seqs) or "no records to sample"
    _para(pdf, f"Size {present.sample_text(control)}, drawn from the closing checkpoint.")
    _para(pdf, f"Sequence numbers: {seqs}", mono=True)
    if control.triage is None and not control.alerts:
        return
    _heading(pdf, "Alerts and their triage", size=11)
    if (t := control.triage) is not None:
        _table(
            pdf,
            ("Alerts", "Triaged", "Open at end", "Median time to triage", "90th percentile"),
            [
                (
                    t.alerts,
                    t.triaged,
                    t.open_at_end,
                    present.humanise(t.median_s),
                    present.humanise(t.p90_s),
                )
            ],
            (0.15, 0.15, 0.15, 0.275, 0.275),
            numeric=(0, 1, 2),
        )
    if not control.alerts:
        _para(pdf, "No alerts in the period.")
        return
    rows = [
        (
            a.alert_id,
            a.raised_at,
            a.rule,
            a.severity,
            a.summary,
            a.state,
            a.decided_by or "",
            present.humanise(a.time_to_triage_s) if a.time_to_triage_s is not None else "",
        )
        for a in control.alerts[: present.TABLE_CAP]
    ]
    _table(
        pdf,
        ("Alert", "Raised at", "Rule", "Sev.", "Summary", "State", "Decided by", "To triage"),
        rows,
        (0.1, 0.16, 0.13, 0.06, 0.22, 0.09, 0.13, 0.11),
    )
    _more(pdf, len(control.alerts), present.alerts_path(control))


def _completeness(pdf: FPDF, summary: PackSummary) -> None:
    c = summary.completeness
    _heading(pdf, "Completeness", new_page=True)
    _para(
        pdf,
        "The period is exactly what the signed tree holds: the records below are those of "
        "the period in the closing checkpoint's tree.",
    )
    figures = [
        ("Records of the period", c.records),
        ("Late (after the closing checkpoint)", c.late),
        ("Removed (retention, erasure)", c.removed),
        ("Non-conforming (no actor or result)", c.nonconforming),
        ("Silence alerts", c.silences),
    ]
    _table(pdf, ("Figure", "Count"), figures, (0.5, 0.2), numeric=(1,))
    _heading(pdf, "Producers", size=11)
    if not c.producers:
        _para(pdf, "No producer was active in the period.")
        return
    rows = [
        (g.producer, g.records, g.missing_count, g.missing, g.duplicate_count)
        for g in c.producers[: present.TABLE_CAP]
    ]
    _table(
        pdf,
        ("Producer", "Records", "Missing", "Missing numbers", "Duplicates"),
        rows,
        (0.3, 0.12, 0.12, 0.34, 0.12),
        numeric=(1, 2, 4),
    )
    _more(pdf, len(c.producers), present.PRODUCERS_PATH)


def _configuration(pdf: FPDF, summary: PackSummary) -> None:
    cfg = summary.configuration
    _heading(pdf, "Configuration", new_page=True)
    facts = [
        ("Verifier key", cfg.verifier_key),
        ("Retention policy SHA-256", cfg.retention_policy_sha256 or "none"),
        ("Receipts", cfg.receipts),
        ("Legal holds", cfg.holds),
    ]
    _table(pdf, ("Fact", "Value"), facts, (0.25, 0.75))
    _heading(pdf, "Retention policy", size=11)
    if cfg.retention_policy_text:
        _para(pdf, cfg.retention_policy_text, mono=True)
    else:
        _para(pdf, "No retention policy in force.")
    _heading(pdf, "API tokens", size=11)
    if cfg.tokens:
        rows = [
            (t.token_id, t.name, t.scopes, t.created_at, t.revoked_at or "") for t in cfg.tokens
        ]
        _table(
            pdf,
            ("Token", "Name", "Scopes", "Created at", "Revoked at"),
            rows,
            (0.16, 0.2, 0.24, 0.2, 0.2),
        )
    else:
        _para(pdf, "No API tokens.")
    _heading(pdf, "Detection rules", size=11)
    if cfg.rules:
        _table(pdf, ("Rule", "Kind", "Severity", "Description"), cfg.rules, (0.2, 0.14, 0.1, 0.56))
    else:
        _para(pdf, "No detection rules in force.")


def _how_to_verify(pdf: FPDF, summary: PackSummary) -> None:
    _heading(pdf, "How to verify this pack", new_page=True)
    _para(pdf, "With otaudit:")
    _para(pdf, present.verify_command(summary), mono=True)
    _para(pdf, "Without otaudit:")
    for number, step in enumerate(present.verify_steps(), start=1):
        _para(pdf, f"{number}. {step.title}. {step.text}")
