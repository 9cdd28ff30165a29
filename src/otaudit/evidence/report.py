"""The evidence pack's report: one self-contained HTML page, and the same content as a PDF.

Both are drawn from a :class:`~otaudit.evidence.model.PackSummary` and its charts alone
(:func:`otaudit.evidence.charts.draw_charts`). Every value in a summary may come from an
attacker (a control title, an alert's summary, a token's name), so the HTML template is
rendered with autoescape on and the page holds no script and loads nothing: its charts are
SVG images in ``data:`` URLs. :func:`render_pdf` lives in :mod:`otaudit.evidence.pdf`.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from functools import cache
from importlib import resources

import jinja2

from otaudit.evidence import present
from otaudit.evidence.charts import Chart
from otaudit.evidence.model import PackSummary
from otaudit.evidence.pdf import render_pdf

__all__ = ["render_html", "render_pdf"]

_TEMPLATE = "report.html.j2"


@dataclass(frozen=True)
class _ChartView:
    title: str
    svg_b64: str


@cache
def _template() -> jinja2.Template:
    source = (
        resources.files("otaudit.evidence")
        .joinpath("templates", _TEMPLATE)
        .read_text(encoding="utf-8")
    )
    env = jinja2.Environment(
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return env.from_string(source)


def render_html(summary: PackSummary, charts: dict[str, Chart]) -> str:
    """The pack's report as one HTML page: no script, no external resource, print-ready.

    Tables of alerts and producer gaps stop at :data:`~otaudit.evidence.present.TABLE_CAP`
    rows with a line naming the CSV file that holds them all.
    """
    views = [
        _ChartView(chart.title, base64.b64encode(chart.svg).decode("ascii"))
        for chart in charts.values()
    ]
    return _template().render(
        s=summary,
        c=summary.completeness,
        cfg=summary.configuration,
        p=present,
        charts=views,
        cap=present.TABLE_CAP,
        empty=present.is_empty_period(summary),
        empty_notice=present.EMPTY_PERIOD,
    )
