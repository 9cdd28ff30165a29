"""The report's charts, drawn from a :class:`~otaudit.evidence.model.PackSummary` alone.

Each chart is drawn on its own :class:`matplotlib.figure.Figure` (no pyplot, so no global
figure state) and saved twice: SVG for the HTML report, PNG for the PDF. A pack's files are
hashed, so the output is deterministic: the SVG ids come from a fixed ``svg.hashsalt``, and
neither format carries a date or the library's version.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from otaudit.evidence.model import PackSummary

#: At most this many day labels under a chart's x axis; a 400-day period shows every 34th.
MAX_DAY_LABELS = 12

_SVG_METADATA = {"Date": None, "Creator": "otaudit", "Format": None, "Type": None}
_PNG_METADATA = {"Software": None}
_PNG_DPI = 110
_LABEL_CHARS = 28


@dataclass(frozen=True)
class Chart:
    """One chart of the report, in the two formats the renderers embed."""

    name: str
    title: str
    svg: bytes
    png: bytes


def draw_charts(summary: PackSummary) -> dict[str, Chart]:
    """The report's charts by name, the same bytes for the same summary.

    ``events_per_day`` (the period's records a day), ``controls_per_day`` (one line a
    control), ``failures_per_control`` and ``alerts_by_rule`` (stacked by triage state).
    """
    # Fixed SVG ids, glyphs as paths (the SVG needs no font), and labels as plain text,
    # never mathtext (a rule named ``$x^$`` is just a name).
    with matplotlib.rc_context(
        {
            "svg.hashsalt": "otaudit-evidence",
            "svg.fonttype": "path",
            "text.parse_math": False,
            "font.size": 9.0,
        }
    ):
        figures = [
            ("events_per_day", "Audit records per day", _events_per_day(summary)),
            ("controls_per_day", "Population records per day, by control", _controls(summary)),
            ("failures_per_control", "Failed records per control", _failures(summary)),
            ("alerts_by_rule", "Alerts by rule and triage state", _alerts(summary)),
        ]
        return {
            name: Chart(name=name, title=title, svg=_save(fig, "svg"), png=_save(fig, "png"))
            for name, title, fig in figures
        }


def _save(fig: Figure, fmt: str) -> bytes:
    out = io.BytesIO()
    if fmt == "svg":
        fig.savefig(out, format="svg", metadata=_SVG_METADATA)
    else:
        fig.savefig(out, format="png", dpi=_PNG_DPI, metadata=_PNG_METADATA)
    return out.getvalue()


def _figure() -> tuple[Figure, Axes]:
    fig = Figure(figsize=(8.0, 3.2), layout="constrained")
    ax = fig.add_subplot()
    ax.spines[["top", "right"]].set_visible(False)
    return fig, ax


def _short(label: str) -> str:
    if len(label) <= _LABEL_CHARS:
        return label
    return label[: _LABEL_CHARS - 1] + "\N{HORIZONTAL ELLIPSIS}"


def _notice(fig: Figure, ax: Axes, text: str) -> Figure:
    ax.set_axis_off()
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=12, transform=ax.transAxes)
    return fig


def _day_axis(ax: Axes, days: Sequence[str]) -> None:
    """Day labels on the x axis, thinned to at most :data:`MAX_DAY_LABELS`."""
    step = max(1, -(-len(days) // MAX_DAY_LABELS))
    ticks = list(range(0, len(days), step))
    ax.set_xticks(ticks, [days[i] for i in ticks], rotation=45, ha="right")
    ax.set_xlim(-0.75, len(days) - 0.25)


def _count_axis(ax: Axes, highest: int) -> None:
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(0, max(1, highest) * 1.08)


def _events_per_day(summary: PackSummary) -> Figure:
    fig, ax = _figure()
    days = summary.days
    if not days:
        return _notice(fig, ax, "no days in the period")
    counts = [summary.completeness.per_day.get(day, 0) for day in days]
    ax.bar(range(len(days)), counts, width=0.8, color="#3b6ea5")
    _day_axis(ax, days)
    _count_axis(ax, max(counts))
    ax.set_ylabel("records")
    return fig


def _controls(summary: PackSummary) -> Figure:
    fig, ax = _figure()
    days = summary.days
    if not days or not summary.controls:
        return _notice(fig, ax, "no days in the period" if not days else "no controls")
    highest = 0
    for control in summary.controls:
        counts = [control.per_day.get(day, 0) for day in days]
        highest = max(highest, *counts)
        ax.plot(range(len(days)), counts, linewidth=1.0, label=_short(control.control))
    _day_axis(ax, days)
    _count_axis(ax, highest)
    ax.set_ylabel("records")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    return fig


def _failures(summary: PackSummary) -> Figure:
    fig, ax = _figure()
    if not summary.controls:
        return _notice(fig, ax, "no controls")
    names = [_short(c.control) for c in summary.controls]
    counts = [c.failures for c in summary.controls]
    ax.bar(range(len(names)), counts, width=0.6, color="#b5473a")
    ax.set_xticks(range(len(names)), names)
    _count_axis(ax, max(counts))
    ax.set_ylabel("failed records")
    return fig


def _alerts(summary: PackSummary) -> Figure:
    fig, ax = _figure()
    counts = Counter((a.rule, a.state) for c in summary.controls for a in c.alerts)
    if not counts:
        return _notice(fig, ax, "no alerts in the period")
    rules = sorted({rule for rule, _ in counts})
    states = sorted({state for _, state in counts})
    bottom = [0] * len(rules)
    for state in states:
        heights = [counts[(rule, state)] for rule in rules]
        ax.bar(range(len(rules)), heights, width=0.6, bottom=bottom, label=_short(state))
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    ax.set_xticks(range(len(rules)), [_short(r) for r in rules], rotation=30, ha="right")
    _count_axis(ax, max(bottom))
    ax.set_ylabel("alerts")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    return fig
