"""The Records page: filters in the URL, sortable columns, keyset pages, saved views, export.

A view is its query string (a GET form), so it can be bookmarked and shared. Its time
window always has a lower bound (a preset, 24 h by default, or ``since``), so no view
scans the whole ledger by accident; pages go on without a cap through signed cursors that
hold only the last row's seq (:meth:`otaudit.store.search.SearchReads.browse` reads its
sort key again). An export streams every row of exactly the view's filter, in the view's
order, as ``otaudit sql --format csv`` (and its JSONL form) prints them.
"""

from __future__ import annotations

import csv
import hashlib
import io
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode

import orjson
from starlette.concurrency import iterate_in_threadpool
from starlette.responses import RedirectResponse, Response, StreamingResponse

from otaudit.console.web import Ctx, PageError
from otaudit.query import json_cell
from otaudit.readapi.params import BadRequest
from otaudit.record import rfc3339_ns
from otaudit.store.base import Store
from otaudit.store.search import (
    EXACT_FILTERS,
    MAX_NAME_CONTAINS,
    SCANNED_FILTERS,
    SEARCH_COLUMNS,
    SORT_KEYS,
    SORTABLE_WINDOW,
    BrowseOrder,
    SearchFilter,
)
from otaudit.textsafety import spreadsheet_row
from otaudit.timespec import parse_time

PRESETS: Final = {"24h": 86_400, "7d": 7 * 86_400, "30d": 30 * 86_400, "90d": 90 * 86_400}
PAGE_SIZES: Final = (50, 100, 500)
#: The filters of the form (each an exact match but ``name``, a substring).
FILTERS: Final = ("action", "actor", "target", "resource_type", "service", "result", "signal")
EXPORT_BATCH: Final = 5000
#: A page whose filter no index serves scans the ledger in stretches of this many seqs,
#: and starts no new stretch past this many seconds: a rare or absent value costs each
#: page about this long, and the page says how far it looked.
SCAN_WINDOW: Final = 50_000
SCAN_BUDGET_S: Final = 0.1
_KNOWN: Final = frozenset({*FILTERS, "name", "range", "since", "until", "sort", "dir", "size",
                           "cursor", "scan"})  # fmt: skip
_MAX_VALUE: Final = 1024


@dataclass(frozen=True)
class View:
    """A parsed records view: what to find, in which order, how many per page."""

    where: SearchFilter
    order: BrowseOrder
    size: int
    #: The view's parameters, cursor excluded, in a stable order (links, saved views).
    items: tuple[tuple[str, str], ...]
    #: The filter in words, for the read record and the page.
    text: str

    @property
    def digest(self) -> str:
        """What a cursor of this view is bound to."""
        asked = urlencode([(k, v) for k, v in self.items if k != "size"])
        return hashlib.sha256(asked.encode()).hexdigest()[:16]

    def link(self, **changes: str | None) -> str:
        """The view's URL with some parameters changed (None: dropped)."""
        items = [(k, v) for k, v in self.items if k not in changes]
        items += [(k, v) for k, v in changes.items() if v is not None]
        return urlencode(items)


def parse_view(params: list[tuple[str, str]], now_ns: int | None = None) -> View:
    """The view a query string asks for (PageError 400 saying what is wrong)."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    unknown = sorted({k for k, _ in params} - _KNOWN)
    if unknown:
        raise PageError(400, f"unknown parameter {unknown[0]!r}")
    if any(len(v) > _MAX_VALUE for _, v in params):
        raise PageError(400, f"a parameter is over {_MAX_VALUE} characters")
    single = {k: v.strip() for k, v in params}
    values: dict[str, tuple[str, ...]] = {}
    for name in FILTERS:
        given = tuple(dict.fromkeys(v.strip() for k, v in params if k == name and v.strip()))
        if given:
            values[name] = given
    preset = single.get("range") or ("custom" if single.get("since") else "24h")
    since_text, until_text = single.get("since", ""), single.get("until", "")
    try:
        if preset in PRESETS:
            since_ns = now_ns - PRESETS[preset] * 1_000_000_000
        elif preset == "custom" and since_text:
            since_ns = parse_time(since_text, now_ns)
        else:
            raise PageError(400, "a view needs a lower time bound: a range preset or 'since'")
        until_ns = parse_time(until_text, now_ns) if until_text else None
    except ValueError as exc:
        raise PageError(400, f"time range: {exc}") from None
    sort: str = single.get("sort") or "seq"
    descending = (single.get("dir") or "desc") != "asc"
    contains: str | None = single.get("name") or None
    try:
        size = int(single.get("size") or PAGE_SIZES[0])
    except ValueError:
        size = 0
    if size not in PAGE_SIZES:
        raise PageError(400, f"size must be one of {', '.join(map(str, PAGE_SIZES))}")
    if sort not in SORT_KEYS:
        raise PageError(400, f"sort must be one of {', '.join(SORT_KEYS)}")
    if contains is not None and len(contains) > MAX_NAME_CONTAINS:
        raise PageError(400, f"the name filter is over {MAX_NAME_CONTAINS} characters")
    signals = values.pop("signal", ())
    exact = {k: v for k, v in values.items() if k in EXACT_FILTERS}
    where = SearchFilter(exact, since_ns, until_ns)
    order = BrowseOrder(sort, descending, signals, contains)
    items: list[tuple[str, str]] = [("range", preset)]
    if preset == "custom":
        items.append(("since", since_text))
    if until_text:
        items.append(("until", until_text))
    items += [(k, v) for k in FILTERS for v in (signals if k == "signal" else values.get(k, ()))]
    if contains:
        items.append(("name", contains))
    items += [("sort", sort), ("dir", "desc" if descending else "asc"), ("size", str(size))]
    words = " ".join(f"{k}={v}" for k, v in items)
    return View(where, order, size, tuple(items), words)


def _position(ctx: Ctx, view: View, param: str, kind: str) -> int | None:
    """The signed position in query parameter ``param`` (a cursor of ``kind`` made for this
    view), or None when it is absent; PageError 400 for one this server did not make."""
    text = ctx.params.get(param)
    if not text:
        return None
    try:
        return ctx.service.read.cursors.decode(text, kind, view.digest)
    except BadRequest as exc:
        raise PageError(400, exc.message) from None


def _scanned(view: View) -> bool:
    """Whether the view's page scans the ledger in stretches: ordered by seq or by time,
    with a filter no index serves (:data:`~otaudit.store.search.SCANNED_FILTERS`, the name
    substring)."""
    return view.order.sort in ("seq", "timestamp") and (
        bool(view.order.name_contains)
        or any(view.where.values.get(name) for name in SCANNED_FILTERS)
    )


@dataclass(frozen=True)
class Page:
    """One page of a view: its rows; where the next page goes on (the seq after which, in
    the view's order, and for a page that scans in stretches, the stretch it starts at);
    and how far a page that stopped at its time limit looked (shown), else None."""

    rows: list[tuple[Any, ...]]
    after: int | None = None
    scan: int | None = None
    looked_to: str | None = None
    #: Said above the rows when the page could not be what was asked (a sort refused).
    notice: str | None = None

    @property
    def last(self) -> bool:
        """Whether no page follows."""
        return self.after is None and self.scan is None


def _page(store: Store, view: View, after: int | None, scan: int | None = None) -> Page:
    """One page of the view, from just past record ``after`` (and, for a page that scans in
    stretches, from the stretch at ``scan``)."""
    if view.order.sort in ("action", "actor") and not store.window_holds_at_most(
        view.where, SORTABLE_WINDOW
    ):
        notice = (
            f"Sorting by {view.order.sort} needs a time range holding at most "
            f"{SORTABLE_WINDOW:,} records, and this one holds more: the records are shown "
            f"by seq. Narrow the range, or filter by {view.order.sort} and sort by time."
        )
        by_seq = replace(view, order=replace(view.order, sort="seq"))
        return replace(_page(store, by_seq, after, scan), notice=notice)
    if not _scanned(view):
        rows = list(store.browse(view.where, view.order, after_seq=after, limit=view.size + 1))
        return Page(rows[: view.size], int(rows[view.size - 1][0]) if len(rows) > view.size
                    else None)  # fmt: skip
    if view.order.sort == "seq":
        return _seq_stretches(store, view, after)
    return _time_stretches(store, view, after, scan)


def _seq_stretches(store: Store, view: View, after: int | None) -> Page:
    """Seq order in stretches of :data:`SCAN_WINDOW` seqs (a cursor is a seq either way)."""
    descending = view.order.descending
    size = store.tree_size()
    edge = (size if after is None else after) if descending else (0 if after is None else after + 1)
    deadline = time.monotonic() + SCAN_BUDGET_S
    rows: list[tuple[Any, ...]] = []
    while len(rows) <= view.size and (edge > 0 if descending else edge < size):
        window = (
            (max(0, edge - SCAN_WINDOW), edge)
            if descending
            else (edge, min(size, edge + SCAN_WINDOW))
        )
        rows += store.browse(view.where, view.order, limit=view.size + 1 - len(rows),
                             seq_window=window)  # fmt: skip
        edge = window[0] if descending else window[1]
        if time.monotonic() > deadline:
            break
    page = rows[: view.size]
    if len(rows) > view.size:
        return Page(page, int(page[-1][0]))
    if edge > 0 if descending else edge < size:  # stopped at the time limit
        return Page(page, edge if descending else edge - 1, None, f"seq {edge}")
    return Page(page)


def _time_stretches(store: Store, view: View, after: int | None, scan: int | None) -> Page:
    """Time order in stretches of a thirty-second of the view's time range (at least a
    minute), each narrowing the view's window, so the order is the view's own. ``scan`` is
    where the page's first stretch starts (its top when newest first, its bottom else)."""
    where, descending = view.where, view.order.descending
    since = where.since_ns if where.since_ns is not None else 0
    until = where.until_ns  # None: open above
    now = time.time_ns()
    width = max(60 * 10**9, ((until if until is not None else now) - since) // 32)
    high = scan if descending and scan is not None else until
    low = scan if not descending and scan is not None else since
    deadline = time.monotonic() + SCAN_BUDGET_S
    rows: list[tuple[Any, ...]] = []
    keyset = after
    while True:
        if descending:
            stretch = (max(since, (high if high is not None else now) - width), high)
        else:
            top: int | None = low + width if until is None else min(low + width, until)
            if until is None and top is not None and top > now:
                top = None  # the last stretch is open above, as the view is
            stretch = (low, top)
        narrowed = SearchFilter(where.values, stretch[0], stretch[1], where.seqs)
        rows += store.browse(narrowed, view.order, after_seq=keyset,
                             limit=view.size + 1 - len(rows))  # fmt: skip
        if len(rows) > view.size:
            page = rows[: view.size]
            start = stretch[1] if descending else stretch[0]
            return Page(page, int(page[-1][0]), start)
        keyset = None  # every later stretch lies wholly past the cursor
        if descending:
            if stretch[0] <= since:
                return Page(rows)
            high = stretch[0]
        else:
            if stretch[1] is None or (until is not None and stretch[1] >= until):
                return Page(rows)
            low = stretch[1]
        if time.monotonic() > deadline:
            edge = high if descending else low
            assert edge is not None
            return Page(rows, None, edge, rfc3339_ns(edge))


def records_page(ctx: Ctx) -> Response:
    """``GET /console/records``: one page of the view."""
    view = parse_view(list(ctx.params.multi_items()))
    # The seq the page goes on after, and the stretch a scanning page starts at.
    after = _position(ctx, view, "cursor", "console-records")
    scan = _position(ctx, view, "scan", "console-scan")
    with ctx.service.store() as store:
        page = _page(store, view, after, scan)
    asked = (f" after seq {after}" if after is not None else "") + (
        f" from {rfc3339_ns(scan)}" if scan is not None and view.order.sort == "timestamp"
        else "")  # fmt: skip
    ctx.record(f"GET /console/records {view.text}{asked}", ok=True, rows=len(page.rows))
    cursors = ctx.service.read.cursors
    following: dict[str, str | None] = {
        "cursor": None if page.after is None
        else cursors.encode("console-records", page.after, view.digest),
        "scan": None if page.scan is None else cursors.encode("console-scan", page.scan,
                                                              view.digest),
    }  # fmt: skip
    saved = ctx.service.saved(ctx.session.owner)["views"]
    return ctx.render(
        "records.html.j2", "records", view=view, columns=SEARCH_COLUMNS,
        rows=[dict(zip(SEARCH_COLUMNS, r, strict=True)) for r in page.rows],
        next_link=None if page.last else view.link(**following),
        first_link=view.link() if after is not None or scan is not None else None,
        presets=tuple(PRESETS), filters=FILTERS, sizes=PAGE_SIZES, sorts=tuple(SORT_KEYS),
        saved=saved, form={k: v for k, v in view.items}, export_query=view.link(),
        scanned_to=page.looked_to, descending=view.order.descending, notice=page.notice,
    )  # fmt: skip


def save_view(ctx: Ctx) -> Response:
    """``POST /console/records/views``: keep the view's query string under a name."""
    query = ctx.form.get("query", "")
    view = parse_view(parse_qsl(query, keep_blank_values=False))  # a view that opens
    try:
        ctx.service.save(ctx.session.owner, "views", ctx.form.get("name", ""), view.link())
    except ValueError as exc:
        raise PageError(400, str(exc)) from None
    return RedirectResponse(f"/console/records?{view.link()}", 303)


def _batches(ctx: Ctx, view: View) -> Iterator[list[tuple[object, ...]]]:
    """Every row of the view, in batches, each read with a store of its own (a worker
    thread per batch: no connection crosses threads)."""
    after: int | None = None
    while True:
        with ctx.service.store() as store:
            rows = list(store.browse(view.where, view.order, after_seq=after,
                                     limit=EXPORT_BATCH))  # fmt: skip
        if rows:
            yield rows
        if len(rows) < EXPORT_BATCH:
            return
        after = int(str(rows[-1][0]))


def _csv_chunks(ctx: Ctx, view: View) -> Iterator[bytes]:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(SEARCH_COLUMNS)
    yield out.getvalue().encode()
    for rows in _batches(ctx, view):
        out.seek(0)
        out.truncate()
        writer.writerows(spreadsheet_row([json_cell(v) for v in row]) for row in rows)
        yield out.getvalue().encode()


def _jsonl_chunks(ctx: Ctx, view: View) -> Iterator[bytes]:
    for rows in _batches(ctx, view):
        yield b"".join(
            orjson.dumps(dict(zip(SEARCH_COLUMNS, map(json_cell, row), strict=True))) + b"\n"
            for row in rows
        )


def _export(ctx: Ctx, fmt: str) -> Response:
    view = parse_view([(k, v) for k, v in ctx.params.multi_items() if k not in ("cursor", "scan")])
    ctx.record(f"GET /console/records/export.{fmt} {view.text}", ok=True)
    chunks = _csv_chunks(ctx, view) if fmt == "csv" else _jsonl_chunks(ctx, view)
    media = "text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson"
    return StreamingResponse(
        iterate_in_threadpool(chunks), media_type=media,
        headers={"Content-Disposition": f'attachment; filename="otaudit-records.{fmt}"',
                 "Cache-Control": "no-store"},
    )  # fmt: skip


def export_csv(ctx: Ctx) -> Response:
    """``GET /console/records/export.csv``: the whole view as CSV, streamed."""
    return _export(ctx, "csv")


def export_jsonl(ctx: Ctx) -> Response:
    """``GET /console/records/export.jsonl``: the whole view as JSON lines, streamed."""
    return _export(ctx, "jsonl")
