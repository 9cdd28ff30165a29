"""``browse`` (the console's Records page) on every store: each order, keyset pages that
cover every match once, the name substring taken literally, and the signal filter."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from otaudit.otlp.convert import select_spans
from otaudit.record import seal
from otaudit.store import search
from otaudit.store.base import Store
from otaudit.store.search import SEARCH_COLUMNS, BrowseOrder, SearchFilter

NAMES = ("Deploy 50% done", "deploy_x", "DEPLOYx", "rollback", "Deploy!")
ACTORS = ("carol", "alice", None, "bob", "alice")


def _fill(store: Store) -> None:
    req = ExportTraceServiceRequest()
    scope = req.resource_spans.add().scope_spans.add()
    for n in range(25):
        span = scope.spans.add(trace_id=(n + 1).to_bytes(16, "big"),
                               span_id=(n + 1).to_bytes(8, "big"))  # fmt: skip
        span.name = NAMES[n % 5]
        # times run against seq, and repeat, so that each order differs from seq's
        span.start_time_unix_nano = 1_764_288_000_000_000_000 - (n % 7) * 1000
        span.attributes.append(KeyValue(key="audit.action", value=AnyValue(
            string_value=f"act.{n % 4}")))  # fmt: skip
        actor = ACTORS[n % 5]
        if actor is not None:
            span.attributes.append(KeyValue(key="user.id", value=AnyValue(string_value=actor)))
    records = select_spans(req, "audit.action").records
    store.append([seal(obj, content, "otlp", 7) for obj, content in records])


def _rows(store: Store, order: BrowseOrder, page: int) -> list[dict[str, Any]]:
    """Every row of ``order``, read ``page`` at a time through keyset cursors."""
    out: list[dict[str, Any]] = []
    after = None
    while True:
        rows = list(store.browse(SearchFilter(), order, after_seq=after, limit=page))
        out += [dict(zip(SEARCH_COLUMNS, r, strict=True)) for r in rows]
        if len(rows) < page:
            return out
        after = int(rows[-1][0])


@pytest.mark.parametrize("descending", [True, False])
@pytest.mark.parametrize("sort", ["seq", "timestamp", "action", "actor"])
def test_pages_cover_each_order_once(any_store: Store, sort: str, descending: bool) -> None:
    _fill(any_store)
    rows = _rows(any_store, BrowseOrder(sort, descending), 4)
    column = {"seq": "seq", "timestamp": "timestamp", "action": "action", "actor": "actor"}[sort]

    def key(row: dict[str, Any]) -> tuple[Any, int]:
        return ("" if row[column] is None else row[column], row["seq"])

    assert len(rows) == 25
    assert rows == sorted(rows, key=key, reverse=descending)


def test_the_name_substring_is_literal_and_ignores_case(any_store: Store) -> None:
    _fill(any_store)

    def names(text: str) -> set[str]:
        rows = any_store.browse(SearchFilter(), BrowseOrder(name_contains=text))
        return {r[SEARCH_COLUMNS.index("name")] for r in rows}

    assert names("deploy") == {"Deploy 50% done", "deploy_x", "DEPLOYx", "Deploy!"}
    assert names("50%") == {"Deploy 50% done"}
    assert names("y_") == {"deploy_x"}
    assert names("y!") == {"Deploy!"}
    assert names("%") == {"Deploy 50% done"}


def test_signals_and_column_filters_narrow_a_browse(any_store: Store) -> None:
    _fill(any_store)
    spans = list(any_store.browse(SearchFilter(), BrowseOrder(signals=("span",))))
    assert len(spans) == 25
    assert not list(any_store.browse(SearchFilter(), BrowseOrder(signals=("log",))))
    alice = SearchFilter({"actor": ("alice",)})
    rows = list(any_store.browse(alice, BrowseOrder("timestamp", name_contains="deploy")))
    assert len(rows) == 10
    with pytest.raises(ValueError, match="sort must be one of"):
        BrowseOrder("name")


@pytest.mark.parametrize("descending", [True, False])
def test_a_dense_action_filter_walks_seq_order_with_the_same_rows(
    any_store: Store, monkeypatch: pytest.MonkeyPatch, descending: bool
) -> None:
    """Past ``DENSE_MATCHES`` matches a seq-ordered action filter walks the records in seq
    order instead of sorting the matches from the action index: the same rows, pages and
    time window either way."""
    _fill(any_store)
    where = SearchFilter({"action": ("act.1", "act.3")}, since_ns=1_764_287_999_999_996_000,
                         until_ns=1_764_288_000_000_000_000)  # fmt: skip
    order = BrowseOrder("seq", descending)
    sorted_rows = _rows_of(any_store, where, order)
    monkeypatch.setattr(search, "DENSE_MATCHES", 2)
    walked = _rows_of(any_store, where, order)
    assert walked == sorted_rows
    seqs = [r["seq"] for r in walked]
    assert seqs == sorted(seqs, reverse=descending)
    assert {r["action"] for r in walked} == {"act.1", "act.3"}
    assert 0 < len(walked) < 12  # the time window took some of the 12 matches out


def _rows_of(store: Store, where: SearchFilter, order: BrowseOrder) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    after = None
    while True:
        rows = list(store.browse(where, order, after_seq=after, limit=3))
        out += [dict(zip(SEARCH_COLUMNS, r, strict=True)) for r in rows]
        if len(rows) < 3:
            return out
        after = int(rows[-1][0])
