"""The Overview page: the last :data:`DAYS` days in charts, the producers and their gaps,
and the ledger's state (size, latest checkpoint, last verification, witnesses).

The counts come from one aggregate statement over the audit views (run as user SQL is,
read-only and within limits), never from reading the records; the charts are drawn
server side with matplotlib in the evidence report's style and embedded as ``data:``
SVG images (the CSP allows ``img-src data:``; an SVG in ``<img>`` runs no script).
"""

from __future__ import annotations

import io
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from starlette.responses import Response

from otaudit.completeness import producer_reports
from otaudit.console.web import Ctx
from otaudit.detect.alerts import read_alerts
from otaudit.errors import QueryError
from otaudit.query import query_target, run_sql
from otaudit.record import rfc3339_ns
from otaudit.sqllimits import QueryLimits
from otaudit.status import last_verification, witness_status

DAYS: Final = 30
DAY_NS: Final = 86_400 * 1_000_000_000
MAX_GROUPS: Final = 20_000
TOP_ACTIONS: Final = 12
_SVG_METADATA: Final = {"Date": None, "Creator": "otaudit", "Format": None, "Type": None}
_COLORS: Final = {"success": "#3b6ea5", "failure": "#c0392b"}


def _svg(fig: Figure) -> bytes:
    out = io.BytesIO()
    fig.savefig(out, format="svg", metadata=_SVG_METADATA)
    return out.getvalue()


def _figure() -> tuple[Figure, Any]:
    fig = Figure(figsize=(8.0, 3.2), layout="constrained")
    ax = fig.add_subplot()
    ax.spines[["top", "right"]].set_visible(False)
    return fig, ax


def _per_day(days: Sequence[str], by_result: dict[str, Counter[str]]) -> bytes:
    fig, ax = _figure()
    bottom = [0] * len(days)
    for result in sorted(by_result, key=lambda r: (r not in _COLORS, r)):
        counts = [by_result[result].get(day, 0) for day in days]
        ax.bar(range(len(days)), counts, 0.8, bottom=bottom, label=result or "(none)",
               color=_COLORS.get(result))  # fmt: skip
        bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
    step = max(1, -(-len(days) // 10))
    ax.set_xticks(range(0, len(days), step), days[::step], rotation=45, ha="right")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("records")
    if by_result:
        ax.legend(fontsize=8, frameon=False)
    return _svg(fig)


def _bars(labels: Sequence[str], counts: Sequence[int], color: str, xlabel: str) -> bytes:
    fig, ax = _figure()
    if not labels:
        ax.set_axis_off()
        ax.text(0.5, 0.5, "nothing in the period", ha="center", va="center", fontsize=12,
                transform=ax.transAxes)  # fmt: skip
        return _svg(fig)
    short = [label if len(label) <= 28 else label[:27] + "\N{HORIZONTAL ELLIPSIS}"
             for label in labels]  # fmt: skip
    ax.barh(range(len(labels)), counts, color=color)
    ax.set_yticks(range(len(labels)), short, fontsize=8)
    ax.invert_yaxis()
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(xlabel)
    return _svg(fig)


def _counts(ctx: Ctx, since_ns: int) -> list[tuple[int, str, str, int]]:
    statement = (
        "SELECT time_unix_nano / 86400000000000 AS day, COALESCE(action, '') AS action,"
        " COALESCE(result, '') AS result, COUNT(*) AS n FROM audit_records"
        f" WHERE time_unix_nano >= {int(since_ns)} GROUP BY 1, 2, 3"
    )
    with ctx.service.store() as store:
        target = query_target(store, ctx.service.read.query_url)
    limits = QueryLimits(max_rows=MAX_GROUPS, timeout_ms=ctx.service.read.limits.timeout_ms)
    result = run_sql(target, statement, limits, ctx.service.read.sql_runner)
    return [(int(d), str(a), str(r), int(n)) for d, a, r, n in result.rows]


def overview_page(ctx: Ctx) -> Response:
    """``GET /console/``: the overview of the last :data:`DAYS` days."""
    now_ns = time.time_ns()
    first_day = now_ns // DAY_NS - DAYS + 1
    since_ns = first_day * DAY_NS
    days = [datetime.fromtimestamp((first_day + i) * 86_400, UTC).strftime("%Y-%m-%d")
            for i in range(DAYS)]  # fmt: skip
    error = None
    try:
        groups = _counts(ctx, since_ns)
    except QueryError as exc:
        groups, error = [], f"the counts could not be read: {exc}"
    by_result: dict[str, Counter[str]] = defaultdict(Counter)
    actions: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    for day, action, result, n in groups:
        label = days[day - first_day] if 0 <= day - first_day < DAYS else days[-1]
        by_result[result][label] += n
        actions[action or "(none)"] += n
        if result == "failure":
            failures[action or "(none)"] += n
    with ctx.service.store() as store:
        alerts = [a for a in read_alerts(store, since_ns=since_ns)]
        producers = list(producer_reports(store, since_ns=since_ns))
        tree_size = store.tree_size()
        checkpoint = store.latest_checkpoint()
        verification = last_verification(store)
    by_rule = Counter(a.rule for a in alerts)
    top = actions.most_common(TOP_ACTIONS)
    worst = failures.most_common(TOP_ACTIONS)
    rules = by_rule.most_common(TOP_ACTIONS)
    charts = {
        "Records per day, by result": _per_day(days, by_result),
        "Records by action (top 12)": _bars([a for a, _ in top], [n for _, n in top],
                                            "#3b6ea5", "records"),
        "Failures by action": _bars([a for a, _ in worst], [n for _, n in worst],
                                    "#c0392b", "failures"),
        "Alerts by rule": _bars([r for r, _ in rules], [n for _, n in rules], "#d68910",
                                "alerts"),
    }  # fmt: skip
    witnesses = None if ctx.service.witness_dir is None else witness_status(
        ctx.service.witness_dir)  # fmt: skip
    total = sum(n for *_, n in groups)
    ctx.record(f"GET /console/ (overview of the last {DAYS} days)", ok=True, rows=total)
    return ctx.render(
        "overview.html.j2", "overview", charts=charts, days=DAYS, total=total, error=error,
        failures=sum(failures.values()), alerts=len(alerts),
        open_alerts=sum(1 for a in alerts if a.is_open), producers=producers,
        tree_size=tree_size, checkpoint=checkpoint,
        checkpoint_time=None if checkpoint is None else rfc3339_ns(checkpoint.signed_at_ns),
        verification=verification, witnesses=witnesses,
    )  # fmt: skip
