"""The Evidence page (build and download an evidence pack), the verifier key, and the
Settings page where the reader pins the key the browser verifies against.

A pack is built as ``otaudit evidence`` builds one (:func:`otaudit.evidence.pack.build_pack`,
signed with the server's own key, the default control mapping and the server's rules)
into a private temporary folder, then streamed as a ``.tar.gz`` and removed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import orjson
from starlette.concurrency import iterate_in_threadpool
from starlette.responses import Response, StreamingResponse

from otaudit import datadir
from otaudit.console.web import Ctx, PageError
from otaudit.evidence.files import PackWriter
from otaudit.evidence.mapping import load_mapping
from otaudit.evidence.pack import DEFAULT_FORMATS, PackRequest, build_pack
from otaudit.keyhistory import history_for
from otaudit.outdir import open_output_dir
from otaudit.query import query_target
from otaudit.timespec import parse_time

CHUNK_BYTES: Final = 1 << 20


def _verifier_key(ctx: Ctx) -> str:
    with ctx.service.store() as store:
        return str(datadir.log_key(ctx.service.data, store, None).key)


def verifier_key(ctx: Ctx) -> Response:
    """``GET /console/api/verifier-key``: the key the server says its log is signed with
    (the reader pins their own, from the log's operator, on the Settings page)."""
    return Response(orjson.dumps({"verifier_key": _verifier_key(ctx)}),
                    media_type="application/json")  # fmt: skip


def settings_page(ctx: Ctx) -> Response:
    """``GET /console/settings``: pin the verifier key (kept by the browser, console.js)."""
    key = _verifier_key(ctx)
    ctx.record("GET /console/settings", ok=True, rows=0)
    return ctx.render("settings.html.j2", "settings", verifier_key=key)


def evidence_page(ctx: Ctx) -> Response:
    """``GET /console/evidence``: the form for a pack, and the verifier key."""
    key = _verifier_key(ctx)
    ctx.record("GET /console/evidence", ok=True, rows=0)
    return ctx.render("evidence.html.j2", "evidence", verifier_key=key,
                      can_build=ctx.service.signer is not None)  # fmt: skip


def _tar_chunks(folder: Path, top: Path) -> Iterator[bytes]:
    """The ``.tar.gz`` of ``folder`` in chunks; ``top`` (the temporary parent) is removed
    after the last one, or when the client goes away."""
    try:
        with tempfile.TemporaryFile() as spool:
            with tarfile.open(fileobj=spool, mode="w:gz") as tar:
                tar.add(folder, arcname=folder.name)
            spool.seek(0)
            while chunk := spool.read(CHUNK_BYTES):
                yield chunk
    finally:
        shutil.rmtree(top, ignore_errors=True)


def _sealed_until(ctx: Ctx) -> int:
    """The default end of a period: when the latest checkpoint was signed (a pack's
    period must be sealed whole by a checkpoint)."""
    with ctx.service.store() as store:
        checkpoint = store.latest_checkpoint()
    if checkpoint is None:
        raise PageError(409, "the ledger has no signed checkpoint yet: no period is sealed")
    return checkpoint.signed_at_ns


def build(ctx: Ctx) -> Response:
    """``POST /console/evidence``: build a pack for ``[from, to)`` and stream it."""
    signer = ctx.service.signer
    if signer is None:
        raise PageError(503, "this server has no signing key to sign a pack's MANIFEST")
    now = time.time_ns()
    start, end = ctx.form.get("from", "").strip(), ctx.form.get("to", "").strip()
    try:
        from_ns = parse_time(start, now)
        to_ns = parse_time(end, now) if end else _sealed_until(ctx)
    except ValueError as exc:
        raise PageError(400, f"period: {exc}") from None
    if to_ns <= from_ns:
        raise PageError(400, "the period is empty: 'to' must be after 'from'")
    top = Path(tempfile.mkdtemp(prefix="otaudit-console-pack-"))
    name = f"evidence-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(now / 1e9))}"
    try:
        with ctx.service.store() as store:
            log_key = datadir.log_key(ctx.service.data, store, None)
            history = history_for(store, log_key.key)
            target = query_target(store, ctx.service.read.query_url)
            request = PackRequest(
                from_ns=from_ns, to_ns=to_ns, controls=load_mapping(None), sample_size=None,
                formats=DEFAULT_FORMATS, rules=ctx.service.rules, built_by=ctx.reader.actor,
                target=target, checked=ctx.service.read.query_url is not None,
            )  # fmt: skip
            directory = open_output_dir(top / name)
            try:
                summary = build_pack(store, PackWriter(directory), request, signer,
                                     log_key.key, history, store_kind=target.kind)  # fmt: skip
            except BaseException:
                directory.discard()
                raise
            finally:
                directory.close()
        rows = sum(c.rows for c in summary.controls)
        ctx.record(f"POST /console/evidence from={start} to={end or 'now'} (evidence pack)",
                   ok=True, rows=rows)  # fmt: skip
    except BaseException:
        shutil.rmtree(top, ignore_errors=True)
        raise
    with contextlib.suppress(OSError):
        os.chmod(top, 0o700)
    return StreamingResponse(
        iterate_in_threadpool(_tar_chunks(top / name, top)), media_type="application/gzip",
        headers={"Content-Disposition": f'attachment; filename="{name}.tar.gz"',
                 "Cache-Control": "no-store"},
    )  # fmt: skip
