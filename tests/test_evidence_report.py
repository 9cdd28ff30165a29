"""The evidence pack's report: charts, HTML, PDF and populations.xlsx, from a summary alone.

The summaries are built by hand: a 92-day quarter with the seven controls, alerts triaged
for the monitoring controls, producers with gaps, tokens and rules, with attacker-chosen
text in every field that reaches the page; an empty quarter; and a 400-day period.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from pypdf import PdfReader

from otaudit.errors import ConfigError
from otaudit.evidence import xlsx
from otaudit.evidence.charts import Chart, draw_charts
from otaudit.evidence.model import (
    AlertRow,
    CheckpointInfo,
    Completeness,
    Configuration,
    ControlSummary,
    PackSummary,
    ProducerGap,
    TokenInfo,
    TriageStats,
)
from otaudit.evidence.present import humanise, top
from otaudit.evidence.report import render_html, render_pdf
from otaudit.evidence.xlsx import sheet_name, write_xlsx

SCRIPT = "<script>alert(1)</script>"
JS_URL = "javascript:alert(document.cookie)"
CONTROLS = ["CC6.1", "CC6.2", "CC6.3", "CC6.6", "CC7.2", "CC7.3", "CC8.1"]
OPENING = CheckpointInfo(
    tree_size=1_204_113,
    root_hash="5f" * 32,
    signed_at="2026-07-01T00:00:04Z",
    file="completeness/opening.checkpoint",
)
CLOSING = CheckpointInfo(
    tree_size=1_987_654,
    root_hash="a3" * 32,
    signed_at="2026-10-01T00:00:03Z",
    file="completeness/closing.checkpoint",
)


def _days(first: date, count: int) -> list[str]:
    return [(first + timedelta(days=i)).isoformat() for i in range(count)]


def _alerts(control: str, count: int) -> list[AlertRow]:
    alerts = []
    for i in range(count):
        decided = i % 4 != 0
        alerts.append(
            AlertRow(
                alert_id=f"{control}-alert-{i:04d}",
                seq=1_300_000 + i,
                raised_at=f"2026-08-{1 + i % 28:02d}T10:00:00Z",
                rule=f"rule-{i % 3}" if i else SCRIPT,
                severity="high" if i % 2 else "medium",
                summary=f"{SCRIPT} failed logins from {JS_URL}" if i == 1 else f"summary {i}",
                evidence_seqs=[1_299_000 + i],
                state="dismissed" if decided and i % 3 else ("confirmed" if decided else "open"),
                decided_by="alice@example.com" if decided else None,
                decided_at=f"2026-08-{1 + i % 28:02d}T13:12:00Z" if decided else None,
                note=f"<img src=x onerror=alert(1)> note {i}" if decided else None,
                time_to_triage_s=11_520.0 if decided else None,
            )
        )
    return alerts


def _control(control: str, days: list[str], index: int, alerts: int = 0) -> ControlSummary:
    per_day = {day: (i * 7 + index * 13) % 50 for i, day in enumerate(days)}
    rows = sum(per_day.values())
    by_action = {f"action.{j}": 100 - j for j in range(14)}
    alert_rows = _alerts(control, alerts)
    triage = None
    if alerts:
        triaged = sum(1 for a in alert_rows if a.decided_at)
        triage = TriageStats(alerts, triaged, alerts - triaged, 11_520.0, 93_600.0)
    return ControlSummary(
        control=control,
        title=f"{control} {SCRIPT}" if index == 0 else f"Control {control}",
        description=f"Logical access, {JS_URL} & more" if index == 0 else "A description.",
        sql="SELECT seq, time, actor, action\nFROM records\nWHERE time >= :from AND x < 1",
        parameters={"from": "2026-07-01T00:00:00Z", "to": "2026-10-01T00:00:00Z"},
        rows=rows,
        failures=rows // 20,
        per_day=per_day,
        by_action=by_action,
        by_result={"success": rows - rows // 20, "failure": rows // 20},
        sample_size=25,
        sample_basis="daily control (AICPA guide: 25)",
        sample_seqs=[1_204_200 + 997 * k for k in range(25)],
        alerts=alert_rows,
        triage=triage,
    )


def _summary(days: list[str], controls: list[ControlSummary]) -> PackSummary:
    per_day = {day: sum(c.per_day.get(day, 0) for c in controls) for day in days}
    producers = [
        ProducerGap(f"svc-{i}", 1000 + i, i % 3, "17-19, 44" if i % 3 else "", i % 2)
        for i in range(205)
    ]
    producers[0] = ProducerGap(SCRIPT, 10, 2, "3-4", 0)
    return PackSummary(
        origin="audit.example.com/log",
        period_from=f"{days[0]}T00:00:00Z" if days else "2026-07-01T00:00:00Z",
        period_to="2026-10-01T00:00:00Z",
        built_at="2026-10-02T08:30:00Z",
        built_by="auditor-bot",
        store="postgresql",
        days=days,
        controls=controls,
        completeness=Completeness(
            opening=OPENING,
            closing=CLOSING,
            records=sum(per_day.values()),
            per_day=per_day,
            producers=producers,
            silences=2,
            nonconforming=3,
            late=4,
            removed=5,
        ),
        configuration=Configuration(
            retention_policy_sha256="9e" * 32,
            retention_policy_text=f"keep: 400d\n# {SCRIPT}\n",
            receipts=12,
            holds=1,
            tokens=[
                TokenInfo("tok_1", SCRIPT, "ingest", "2026-01-01T00:00:00Z", None),
                TokenInfo("tok_2", JS_URL, "read audit", "2026-02-01T00:00:00Z", "2026-09-01"),
            ],
            rules=[
                ("failed-logins", "threshold", "high", f"{SCRIPT} many failures"),
                ("silence-billing", "silence", "medium", "billing stopped"),
            ],
            verifier_key="audit.example.com/log+1a2b3c4d+AbCdEf0123456789",
        ),
    )


@pytest.fixture(scope="module")
def quarter() -> PackSummary:
    days = _days(date(2026, 7, 1), 92)
    alerts = {"CC7.2": 230, "CC7.3": 12}
    controls = [_control(c, days, i, alerts.get(c, 0)) for i, c in enumerate(CONTROLS)]
    return _summary(days, controls)


@pytest.fixture(scope="module")
def empty() -> PackSummary:
    days = _days(date(2026, 7, 1), 92)
    controls = [
        replace(
            _control(c, days, i),
            rows=0,
            failures=0,
            per_day=dict.fromkeys(days, 0),
            by_action={},
            by_result={},
            sample_size=0,
            sample_seqs=[],
        )
        for i, c in enumerate(CONTROLS)
    ]
    summary = _summary(days, controls)
    summary.completeness.producers = []
    return summary


@pytest.fixture(scope="module")
def quarter_charts(quarter: PackSummary) -> dict[str, Chart]:
    return draw_charts(quarter)


# --------------------------------------------------------------------------------------------
# Charts


def test_charts_are_valid_svg_and_png(quarter_charts: dict[str, Chart]) -> None:
    assert set(quarter_charts) == {
        "events_per_day",
        "controls_per_day",
        "failures_per_control",
        "alerts_by_rule",
    }
    for name, chart in quarter_charts.items():
        assert chart.name == name and chart.title
        assert chart.png.startswith(b"\x89PNG\r\n\x1a\n")
        assert b"<svg" in chart.svg and chart.svg.rstrip().endswith(b"</svg>")
        assert b"<script" not in chart.svg


def test_charts_are_deterministic(quarter: PackSummary, quarter_charts: dict[str, Chart]) -> None:
    assert draw_charts(quarter) == quarter_charts


def test_charts_carry_no_date(quarter_charts: dict[str, Chart]) -> None:
    for chart in quarter_charts.values():
        assert b"<dc:date>" not in chart.svg
        assert b"tIME" not in chart.png


def test_charts_of_an_empty_period(empty: PackSummary) -> None:
    charts = draw_charts(empty)
    assert charts == draw_charts(empty)
    assert all(c.png.startswith(b"\x89PNG") for c in charts.values())


def test_charts_of_400_days_and_of_no_days(quarter: PackSummary) -> None:
    days = _days(date(2025, 1, 1), 400)
    long = _summary(days, [_control(c, days, i) for i, c in enumerate(CONTROLS[:2])])
    assert all(c.svg for c in draw_charts(long).values())
    none = replace(quarter, days=[], controls=[])
    assert all(c.png for c in draw_charts(none).values())


# --------------------------------------------------------------------------------------------
# HTML


def test_html_shows_the_key_figures(quarter: PackSummary, quarter_charts: dict[str, Chart]) -> None:
    html = render_html(quarter, quarter_charts)
    for text in (
        "audit.example.com/log",
        "2026-07-01T00:00:00Z",
        "2026-10-01T00:00:00Z",
        "postgresql",
        "auditor-bot",
        "1204113",
        "1987654",
        "a3" * 32,
        "2026-10-01T00:00:03Z",
        'href="controls/CC6.1/population.csv"',
        "daily control (AICPA guide: 25)",
        "SELECT seq, time, actor, action\nFROM records\nWHERE time &gt;= :from AND x &lt; 1",
        "others (4 values)",
        "3 h 12 min",  # the median time to triage
        "1 d 2 h",  # the 90th percentile
        "30 more in controls/CC7.2/alerts.csv",
        "5 more in completeness/producers.csv",
        "9e" * 32,
        "keep: 400d",
        "otaudit verify-evidence DIR --key audit.example.com/log+1a2b3c4d+AbCdEf0123456789",
        "otaudit-evidence-manifest/1",
        "RFC 9162 section 2.1.4",
        "c2sp.org/signed-note",
    ):
        assert text in html, text
    for control in CONTROLS:
        assert f"controls/{control}/population.csv" in html
    assert html.count("data:image/svg+xml;base64,") == 4
    assert "No audit records in this period" not in html
    assert "CC7.3-alert-0011" in html and "more in controls/CC7.3" not in html


def test_html_escapes_what_attackers_write(
    quarter: PackSummary, quarter_charts: dict[str, Chart]
) -> None:
    html = render_html(quarter, quarter_charts)
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert not re.search(r"""(href|src)\s*=\s*["']?\s*javascript:""", html, re.IGNORECASE)
    assert " on" + "error=" not in re.sub(r"&lt;img src=x onerror=", "", html)
    assert re.findall(r'src="([^":]+):', html) == ["data"] * 4
    assert "http://" not in html.replace("http://www.w3.org", "")
    assert "https://" not in html


def test_html_of_an_empty_period(empty: PackSummary) -> None:
    html = render_html(empty, draw_charts(empty))
    assert "No audit records in this period: the pack says so, and the checkpoints prove it" in html
    assert "No producer was active in the period." in html
    assert "No records to sample." in html


# --------------------------------------------------------------------------------------------
# PDF


def _pdf_text(pdf: bytes) -> tuple[int, str]:
    reader = PdfReader(io.BytesIO(pdf))
    return len(reader.pages), "\n".join(page.extract_text() for page in reader.pages)


def test_pdf_holds_the_report(quarter: PackSummary, quarter_charts: dict[str, Chart]) -> None:
    pdf = render_pdf(quarter, quarter_charts)
    assert pdf.startswith(b"%PDF-")
    pages, text = _pdf_text(pdf)
    assert pages >= 2
    flat = " ".join(text.split())
    for needle in (
        "audit.example.com/log",
        "2026-07-01T00:00:00Z",
        "2026-10-01T00:00:00Z",
        "1987654",
        "verify-evidence",
        "3 h 12 min",
        "30 more in controls/CC7.2/alerts.csv",
        *CONTROLS,
    ):
        assert needle in flat, needle


def test_pdf_is_deterministic(quarter: PackSummary, quarter_charts: dict[str, Chart]) -> None:
    assert render_pdf(quarter, quarter_charts) == render_pdf(quarter, quarter_charts)


def test_pdf_of_an_empty_period_and_of_text_outside_latin1(empty: PackSummary) -> None:
    odd = replace(empty, origin="журнал.example/log \N{SNOWMAN}")
    pages, text = _pdf_text(render_pdf(odd, draw_charts(odd)))
    assert pages >= 2
    assert "No audit records in this period" in " ".join(text.split())
    assert "??????.example/log ?" in text


# --------------------------------------------------------------------------------------------
# populations.xlsx

CREATED = datetime(2026, 10, 2, 8, 30, tzinfo=UTC)


def _population(path: Path, rows: list[list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["seq", "actor", "action"], *rows])
    return path


def _sheets(tmp_path: Path, rows: int = 3) -> list[tuple[str, Path]]:
    return [
        (
            c,
            _population(
                tmp_path / c / "population.csv",
                [
                    [str(i), f"user{i}@{c}", '=HYPERLINK("http://x")' if i == 0 else "login"]
                    for i in range(rows)
                ],
            ),
        )
        for c in CONTROLS
    ]


def test_xlsx_has_one_sheet_a_control_of_strings(tmp_path: Path) -> None:
    out = tmp_path / "populations.xlsx"
    write_xlsx(out, _sheets(tmp_path), CREATED)
    with zipfile.ZipFile(out) as z:
        sheets = sorted(n for n in z.namelist() if re.fullmatch(r"xl/worksheets/sheet\d+\.xml", n))
        assert len(sheets) == len(CONTROLS)
        workbook = z.read("xl/workbook.xml").decode()
        first = z.read("xl/worksheets/sheet1.xml").decode()
        core = z.read("docProps/core.xml").decode()
    assert all(f'name="{c}"' in workbook for c in CONTROLS)
    assert "user2@CC6.1" in first and "actor" in first
    assert "<f>" not in first and '<t>=HYPERLINK("http://x")</t>' in first
    assert "2026-10-02T08:30:00Z" in core


def test_xlsx_is_deterministic(tmp_path: Path) -> None:
    sheets = _sheets(tmp_path)
    write_xlsx(tmp_path / "a.xlsx", sheets, CREATED)
    write_xlsx(tmp_path / "b.xlsx", sheets, CREATED)
    assert (tmp_path / "a.xlsx").read_bytes() == (tmp_path / "b.xlsx").read_bytes()


def test_xlsx_refuses_a_population_over_the_sheet_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(xlsx, "MAX_ROWS", 10)
    out = tmp_path / "populations.xlsx"
    write_xlsx(out, _sheets(tmp_path, rows=9), CREATED)  # 9 rows and the header: fits
    out.unlink()
    with pytest.raises(ConfigError, match=r"cannot hold CC6\.1's 10 rows \(Excel's limit is 10 "):
        write_xlsx(out, _sheets(tmp_path, rows=10), CREATED)
    assert not out.exists()


def test_xlsx_refuses_a_cell_over_excels_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(xlsx, "MAX_CELL_CHARS", 12)
    out = tmp_path / "populations.xlsx"
    with pytest.raises(ConfigError, match=r"a cell of 22 characters in CC6\.1's row 1"):
        write_xlsx(out, _sheets(tmp_path), CREATED)
    assert not out.exists()


@pytest.mark.parametrize(
    ("control", "expected"),
    [
        ("CC6.1", "CC6.1"),
        ("a[b]c:d*e?f/g\\h", "a_b_c_d_e_f_g_h"),
        ("'quoted'", "quoted"),
        ("x" * 40, "x" * 31),
        ("History", "History_"),
        ("", "control"),
    ],
)
def test_sheet_names_follow_excels_rules(control: str, expected: str) -> None:
    assert sheet_name(control, set()) == expected


def test_sheet_names_stay_unique() -> None:
    taken: set[str] = set()
    names = [sheet_name(n, taken) for n in ("A/B", "a:b", "x" * 40, "X" * 35)]
    assert names == ["A_B", "a_b~2", "x" * 31, "X" * 29 + "~2"]


# --------------------------------------------------------------------------------------------
# Wording


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "n/a"),
        (0.4, "0 s"),
        (59, "59 s"),
        (60, "1 min"),
        (3600, "1 h"),
        (11_520, "3 h 12 min"),
        (86_400, "1 d"),
        (93_600, "1 d 2 h"),
    ],
)
def test_durations_read_as_people_say_them(seconds: float | None, text: str) -> None:
    assert humanise(seconds) == text


def test_top_sums_the_rest_as_others() -> None:
    counts = {"a": 1, "b": 3, "c": 3, "d": 1}
    assert top(counts, n=2) == [("b", 3), ("c", 3), ("others (2 values)", 2)]
    assert top({}) == []
