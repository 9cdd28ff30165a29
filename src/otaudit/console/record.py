"""One record's page (every column, the sealed JSON, its trace) and its inclusion proof.

The page carries the elements the browser's verifier (``static/verify.js``) works with:
``#verify`` (``data-seq``), ``#verify-steps`` and ``#verify-verdict``. The proof it
fetches (``GET /console/api/proof/{seq}``) is RFC 9162 §2.1.3's inclusion proof of the
record in the tree of the latest signed checkpoint, with that checkpoint's signed note,
so the browser checks the server rather than trusting it.
"""

from __future__ import annotations

from typing import Any, Final

import orjson
from starlette.responses import Response

from otaudit.console.web import Ctx, PageError
from otaudit.errors import NoCheckpoint
from otaudit.proofs import checkpoint_at, proven_record
from otaudit.record import COLUMN_NAMES
from otaudit.store.search import SEARCH_COLUMNS, SearchFilter

#: The most records of one trace the page shows.
MAX_TRACE: Final = 500
_NO_TRACE: Final = frozenset({"", "0" * 32})


def _pretty(sealed: bytes) -> str:
    try:
        return orjson.dumps(orjson.loads(sealed), option=orjson.OPT_INDENT_2).decode()
    except orjson.JSONDecodeError:
        return sealed.decode("utf-8", "replace")


def record_page(ctx: Ctx) -> Response:
    """``GET /console/records/{seq}``: the record, its sealed JSON and its trace."""
    seq = int(ctx.path["seq"])
    with ctx.service.store() as store:
        stored = next(store.iter_records(seq, seq + 1), None)
        if stored is None or stored.seq != seq:
            ctx.record(f"GET /console/records/{seq}", ok=False, error="no such record")
            raise PageError(404, f"record {seq} is not in the ledger (or its payload was "
                                 "removed by a retention receipt)")  # fmt: skip
        columns = dict(zip(COLUMN_NAMES, stored.columns, strict=True))
        trace_id = str(columns.get("trace_id") or "")
        trace: list[dict[str, Any]] = []
        if trace_id not in _NO_TRACE:
            where = SearchFilter({"trace_id": (trace_id,)})
            trace = [dict(zip(SEARCH_COLUMNS, row, strict=True))
                     for row in store.search(where, limit=MAX_TRACE)]  # fmt: skip
    ctx.record(f"GET /console/records/{seq}", ok=True, rows=1 + len(trace))
    return ctx.render(
        "record.html.j2", "records", seq=seq, columns=columns, sealed=_pretty(stored.sealed),
        sealed_bytes=len(stored.sealed), trace=trace, trace_cap=MAX_TRACE,
    )  # fmt: skip


def proof(ctx: Ctx) -> Response:
    """``GET /console/api/proof/{seq}``: the record's sealed bytes, its inclusion proof in
    the latest signed checkpoint's tree, and that checkpoint's note (404 JSON if the record
    is not in that tree or its payload was removed)."""
    seq = int(ctx.path["seq"])
    with ctx.service.store() as store:
        try:
            cp = checkpoint_at(store, None)
        except NoCheckpoint as exc:
            raise PageError(404, str(exc)) from None
        if not 0 <= seq < cp.tree_size:
            raise PageError(404, f"record {seq} is not in the signed tree of {cp.tree_size}")
        stored = next(store.iter_records(seq, seq + 1), None)
        if stored is None or stored.seq != seq:
            raise PageError(404, f"record {seq}'s payload was removed (pruned or erased)")
        proven = proven_record(store, seq, cp.tree_size)
    ctx.record(f"GET /console/api/proof/{seq} (tree size {cp.tree_size})", ok=True, rows=1)
    document = {
        "seq": seq,
        "tree_size": cp.tree_size,
        "leaf_input_b64": proven["leaf_input_b64"],
        "hashes": proven["hashes"],
        "checkpoint": cp.note,
    }
    return Response(orjson.dumps(document), media_type="application/json",
                    headers={"Cache-Control": "no-store"})  # fmt: skip
