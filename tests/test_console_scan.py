"""A Records page whose filter no index serves scans the ledger in bounded stretches: each
page stops at its time limit, says how far it looked, and the next page goes on from
there; following the pages finds every match once, in order, on both stores."""

from __future__ import annotations

import time
from typing import Any

import pytest

from otaudit.console import records
from otaudit.console.records import _page, parse_view
from otaudit.record import rfc3339_ns
from otaudit.store.base import Store
from retention_records import log_record


def _fill(store: Store) -> int:
    now = time.time_ns() - 3600 * 10**9
    entries = [
        log_record("read", now + i * 10**6, target="rare" if i in (10, 250, 251) else "x")
        for i in range(300)
    ]
    store.append(entries)
    return now


def _follow(store: Store, params: list[tuple[str, str]]) -> tuple[list[int], int, list[Any]]:
    view = parse_view(params)
    found: list[int] = []
    pages, looked = 0, []
    after = scan = None
    while True:
        page = _page(store, view, after, scan)
        found += [int(r[0]) for r in page.rows]
        looked.append(page.looked_to)
        pages += 1
        if page.last:
            return found, pages, looked
        after, scan = page.after, page.scan
        assert pages < 400


@pytest.mark.parametrize("direction", ["desc", "asc"])
def test_stretches_find_every_match_once(
    any_store: Store, monkeypatch: pytest.MonkeyPatch, direction: str
) -> None:
    _fill(any_store)
    params = [("range", "24h"), ("target", "rare"), ("size", "50"), ("dir", direction)]
    monkeypatch.setattr(records, "SCAN_BUDGET_S", 60.0)  # no page stops at its time limit
    whole, pages, _ = _follow(any_store, params)
    expected = [10, 250, 251] if direction == "asc" else [251, 250, 10]
    assert (whole, pages) == (expected, 1)
    monkeypatch.setattr(records, "SCAN_WINDOW", 40)
    monkeypatch.setattr(records, "SCAN_BUDGET_S", 0.0)  # one stretch a page
    found, pages, looked = _follow(any_store, params)
    assert found == expected
    assert pages == 8  # 300 seqs in stretches of 40
    assert all(isinstance(edge, str) for edge in looked[:-1]) and looked[-1] is None
    named, _, _ = _follow(any_store, [("range", "24h"), ("name", "READ"), ("size", "50")])
    assert named == list(range(299, -1, -1))  # every record, once, newest first


@pytest.mark.parametrize("direction", ["desc", "asc"])
def test_time_ordered_stretches_find_every_match_once(
    any_store: Store, monkeypatch: pytest.MonkeyPatch, direction: str
) -> None:
    start = _fill(any_store)
    since = ("since", rfc3339_ns(start - 10**9))
    params = [("range", "custom"), since, ("sort", "timestamp"), ("dir", direction),
              ("size", "50")]  # fmt: skip
    monkeypatch.setattr(records, "SCAN_BUDGET_S", 60.0)  # no page stops at its time limit
    everything, pages, _ = _follow(any_store, params)  # pages that fill, then go on
    assert sorted(everything) == list(range(300)) and pages == 6
    rare, pages, _ = _follow(any_store, [*params, ("target", "rare")])
    expected = [10, 250, 251] if direction == "asc" else [251, 250, 10]
    assert (rare, pages) == (expected, 1)
    monkeypatch.setattr(records, "SCAN_BUDGET_S", 0.0)  # one stretch a page
    found, pages, looked = _follow(any_store, [*params, ("target", "rare")])
    assert found == expected and pages > 3
    assert all(isinstance(edge, str) for edge in looked[:-1])


def test_a_text_sort_is_offered_for_windows_it_can_sort_in_time(
    any_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fill(any_store)
    params = [("range", "24h"), ("sort", "actor"), ("dir", "asc"), ("size", "50")]
    page = _page(any_store, parse_view(params), None)
    assert page.notice is None and len(page.rows) == 50
    monkeypatch.setattr(records, "SORTABLE_WINDOW", 100)  # the window holds 300
    page = _page(any_store, parse_view(params), None)
    assert page.notice is not None and "at most 100 records" in page.notice
    assert [int(r[0]) for r in page.rows] == list(range(50))  # by seq instead, oldest first
    found, _, _ = _follow(any_store, params)
    assert found == list(range(300))
