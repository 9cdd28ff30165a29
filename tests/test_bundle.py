"""Evidence bundles: ``otaudit export`` and ``otaudit verify-bundle``, end to end.

One real server receives audit spans with several actions and times over
OTLP/HTTP and is stopped (it signs a final checkpoint). Bundles are exported
from its ledger (whole, by action, by time) and verified offline; then copies
of the whole bundle are tampered with, the way someone holding the files
would, and ``verify-bundle`` must exit 1 naming what is wrong; whoever edits the
manifest must drop its signature, and is then told that the selection and
completeness are not proven. Files that are not regular files (links to
``/dev/zero``, FIFOs) are refused rather than read. The standalone script in
``docs/verifying.md`` is run on the same bundles, so it cannot drift.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from otaudit.bundle import CSV_HEADER, FILES, FORMAT
from otaudit.bundle.layout import manifest_note_text
from otaudit.canonical import canonical_bytes
from otaudit.checkpoint import Checkpoint, sign_checkpoint
from otaudit.keys import SigningKey, VerifierKey
from otaudit.note import open_note, sign_note
from otaudit.record import parse_sealed, seal
from otaudit.store.sqlite import SQLiteStore, stored_bytes_reader
from otaudit.timespec import parse_time
from support import Server, audit_request, otaudit, post

ACTIONS = ("login", "role_update", "read", "export")
SPANS = 36
HOUR = 3600 * 10**9
DOCS = Path(__file__).resolve().parent.parent / "docs" / "verifying.md"


def _kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _request(first: int, count: int, now: int) -> bytes:
    spans = [
        Span(
            trace_id=(0xB0D1E000 + i).to_bytes(16, "big"),
            span_id=(0xB0D1E000 + i).to_bytes(8, "big"),
            name=f"audit-op-{i}",
            kind=Span.SPAN_KIND_SERVER,
            start_time_unix_nano=now - (i + 1) * 3 * HOUR,  # 3h, 6h, ... 108h ago
            end_time_unix_nano=now - (i + 1) * 3 * HOUR + 1_000_000,
            attributes=[
                _kv("audit.action", ACTIONS[i % len(ACTIONS)]),
                # Quotes, commas, a newline, non-ASCII and a formula-like value: CSV and
                # the RFC 8785 path for non-ASCII text must carry them unchanged.
                _kv("user.id", f"employee{i:02d}" if i % 7 else f'zoë "{i}",\n=cmd|x'),
                _kv("audit.target", f"doc-{i}"),
            ],
        )
        for i in range(first, first + count)
    ]
    resource = Resource(attributes=[_kv("service.name", "bundle-test")])
    request = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(resource=resource, scope_spans=[ScopeSpans(spans=spans)])]
    )
    return request.SerializeToString()


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return otaudit(*(str(a) for a in args))


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The data directory of a stopped server holding SPANS audit spans and 8 config changes."""
    data = tmp_path_factory.mktemp("bundle") / "data"
    srv = Server(data).start()
    now = time.time_ns()
    try:
        for first in range(0, SPANS, 12):
            assert post(srv, _request(first, 12, now)).status_code == 200
        assert post(srv, audit_request(8)).status_code == 200
    finally:
        assert srv.stop() == 0
    return data


@pytest.fixture(scope="module")
def key(ledger: Path) -> str:
    """The log's verifier key, as the operator would hand it out."""
    return run("key", "show", "--data", ledger).stdout.strip()


def fresh(ledger: Path, directory: Path) -> Path:
    """A copy of the ledger to read with recorded commands (each adds its read record)."""
    copy = directory / "ledger-copy"
    shutil.copytree(ledger, copy)
    return copy


@pytest.fixture(scope="module")
def whole(ledger: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle of every record."""
    out = tmp_path_factory.mktemp("whole") / "bundle"
    result = run("export", "--data", fresh(ledger, out.parent), "--out", out)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"exported {SPANS + 8} records ")
    assert "proven against the signed checkpoint at tree size 44" in result.stdout
    assert "manifest signed with the log's key otaudit/" in result.stdout
    assert "left out" not in result.stdout
    return out


def rows(bundle: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in (bundle / "records.jsonl").read_bytes().splitlines()]


def verify(bundle: Path, key: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    return run("verify-bundle", bundle, *(["--key", key] if key else []), *args)


def assert_ok(bundle: Path, key: str, records: int) -> list[str]:
    """verify-bundle's OK line, then what it proved and what it did not (returned)."""
    result = verify(bundle, key)
    assert result.returncode == 0, result.stderr
    name = key.split("+")[0]
    assert result.stdout.startswith(f"OK: {records} records (")
    assert f"proven against checkpoint of tree size 44 signed by {name}+" in result.stdout
    lines = result.stdout.splitlines()[1:]
    assert len(lines) == 2 and lines[0].startswith("proven: ") and "proven: " in lines[1]
    return lines


# -- exporting ------------------------------------------------------------------------------


def test_whole_bundle(ledger: Path, whole: Path, key: str) -> None:
    names = [*FILES, "manifest.json", "manifest.sig"]
    assert sorted(p.name for p in whole.iterdir()) == sorted(names)
    with sqlite3.connect(f"file:{ledger / 'ledger.db'}?mode=ro", uri=True) as conn:
        stored = conn.execute(  # each resource is kept once: splice it back
            "SELECT r.sealed, r.resource_at, s.body FROM records r"
            " LEFT JOIN resources s ON s.hash = r.resource_hash ORDER BY r.seq"
        ).fetchall()
        reader = stored_bytes_reader(conn)  # each row's bytes may be compressed
        kept = [(reader.decode(bytes(b)), at, body) for b, at, body in stored]
        sealed = [bytes(b if at is None else b[:at] + body + b[at:]) for b, at, body in kept]
        note = conn.execute("SELECT note FROM checkpoints ORDER BY tree_size DESC").fetchone()[0]
    assert (whole / "records.canonical").read_bytes() == b"".join(s + b"\n" for s in sealed)
    assert (whole / "checkpoint").read_text() == note
    assert (whole / "verifier.key").read_text() == key + "\n"
    manifest = orjson.loads((whole / "manifest.json").read_bytes())
    assert manifest["format"] == FORMAT
    assert (manifest["origin"], manifest["tree_size"], manifest["records"]) == (
        key.split("+")[0],
        len(sealed),
        len(sealed),
    )
    assert manifest["selection"]["actions"] == []
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", manifest["created_at"])
    for name in FILES:
        data = (whole / name).read_bytes()
        assert manifest["files"][name] == {
            "sha256": hashlib.sha256(data).hexdigest(),
            "bytes": len(data),
        }
    records = rows(whole)
    assert [r["seq"] for r in records] == list(range(len(sealed)))
    assert records[0]["record"] == orjson.loads(sealed[0])
    table = list(csv.reader(io.StringIO((whole / "records.csv").read_text(), newline="")))
    assert table[0] == list(CSV_HEADER)
    assert [row[CSV_HEADER.index("actor")] for row in table[1:]] == [
        r["actor"] or "" for r in records
    ]
    assert 'zoë "0",\n=cmd|x' in {r["actor"] for r in records}
    signed = open_note((whole / "manifest.sig").read_bytes(), VerifierKey.parse(key))
    assert signed == manifest_note_text((whole / "manifest.json").read_bytes())
    assert signed.startswith("otaudit-bundle-manifest/1\nsha256:")
    assert assert_ok(whole, key, len(sealed)) == [
        "proven: each record is in the log, unaltered, under that signed checkpoint, and the "
        "bundle holds all 44 records of the log up to it (complete); the selection (every "
        "record) is the one the exporter signed with the log's key",
        "not proven: anything about records sealed after tree size 44",
    ]


def test_verify_without_key_warns(whole: Path, key: str) -> None:
    result = verify(whole, None)
    assert result.returncode == 0, result.stderr
    assert "warning: no --key given" in result.stderr
    assert "out of band" in result.stderr
    assert f"key used (from the bundle, compare it): {key}" in result.stdout


def test_export_by_action(ledger: Path, whole: Path, key: str, tmp_path: Path) -> None:
    out = tmp_path / "by-action"
    result = run(
        "export", "--data", fresh(ledger, tmp_path), "--out", out,
        "--action", "login", "--action", "export",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    want = [r["seq"] for r in rows(whole) if r["action"] in ("login", "export")]
    assert len(want) == SPANS // 2
    assert [r["seq"] for r in rows(out)] == want
    manifest = orjson.loads((out / "manifest.json").read_bytes())
    assert manifest["selection"]["actions"] == ["login", "export"]
    assert assert_ok(out, key, len(want)) == [
        "proven: each record is in the log, unaltered, under that signed checkpoint; the "
        "selection (action in login, export) is the one the exporter signed with the log's key",
        "not proven: that no record matching the selection was left out (the exporter's signed "
        "word, not a proof; a bundle of every record proves it)",
    ]


def test_export_by_time(ledger: Path, whole: Path, key: str, tmp_path: Path) -> None:
    records = rows(whole)
    since = records[20]["timestamp"]  # RFC 3339 with nanoseconds, inclusive
    out = tmp_path / "by-time"
    data = fresh(ledger, tmp_path)
    result = run("export", "--data", data, "--out", out, "--since", since, "--until", "10h")
    assert result.returncode == 0, result.stderr
    start, end = parse_time(since, 0), time.time_ns() - 10 * HOUR
    want = [r["seq"] for r in records if start <= r["time_unix_nano"] < end]
    got = [r["seq"] for r in rows(out)]
    assert 20 in got and 0 not in got
    assert got == want == list(range(3, 21))  # 12h ago (i = 3) to 63h ago (i = 20)
    selection = orjson.loads((out / "manifest.json").read_bytes())["selection"]
    assert (selection["since"], selection["until"]) == (since, "10h")
    assert selection["since_utc"] == since
    assert_ok(out, key, len(got))
    out2 = tmp_path / "by-date"
    data = fresh(ledger, tmp_path / "again")
    result = run("export", "--data", data, "--out", out2, "--until", "2000-01-01")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("exported 0 records")
    assert_ok(out2, key, 0)


def test_export_leaves_out_records_after_the_checkpoint(
    ledger: Path, key: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    shutil.copytree(ledger, data)
    store = SQLiteStore(data / "ledger.db")
    try:
        envelope, _ = parse_sealed(next(store.iter_records(0, 1)).sealed)
        content = envelope["record"] | {"span_id": "00000000ffffffff"}
        content["attributes"] = content["attributes"] | {"audit.action": "login"}
        store.append([seal(content, canonical_bytes(content), "otlp", time.time_ns())])
    finally:
        store.close()
    result = run("export", "--data", data, "--out", tmp_path / "b1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"exported {SPANS + 8} records")
    assert "note: 1 matching records after that checkpoint were left out" in result.stdout
    result = run("export", "--data", data, "--out", tmp_path / "b2", "--action", "read")
    assert result.returncode == 0, result.stderr
    assert "left out" not in result.stdout
    assert_ok(tmp_path / "b1", key, SPANS + 8)


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("DELETE FROM records WHERE seq = 7", "seq 7 is missing"),
        ("UPDATE records SET actor = 'mallory' WHERE seq = 4", "seq 4: stored columns differ"),
        (
            "UPDATE tree_nodes SET hash = zeroblob(32) WHERE level = 1 AND idx = 5",
            "seq 8: not included in the checkpoint",  # node 5 is in the proof of seq 8
        ),
    ],
)
def test_export_refuses_a_tampered_ledger(
    ledger: Path, tmp_path: Path, sql: str, message: str
) -> None:
    data = tmp_path / "data"
    shutil.copytree(ledger, data)
    with sqlite3.connect(data / "ledger.db", isolation_level=None) as conn:
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'"):
            conn.execute(f'DROP TRIGGER "{name}"')
        conn.execute(sql)
    conn.close()
    result = run("export", "--data", data, "--out", tmp_path / "out")
    assert result.returncode == 1
    assert result.stderr.startswith("FAILED: the ledger does not verify: ")
    assert message in result.stderr
    assert not (tmp_path / "out").exists()  # nothing half-written is left behind


def test_a_record_with_large_attributes_verifies(tmp_path: Path) -> None:
    # Three 60 KB attributes: the records.csv attributes field is larger than the csv
    # module's default field limit (128 KiB).
    big = [_kv(f"big.{i}", "y" * 60_000) for i in range(3)]
    span = Span(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="bulk",
                start_time_unix_nano=1_764_288_000_000_000_000,
                attributes=[_kv("audit.action", "login"), *big])  # fmt: skip
    request = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])]
    )
    server = Server(tmp_path / "data").start()
    try:
        assert post(server, request.SerializeToString()).status_code == 200
    finally:
        assert server.stop() == 0
    exported = run("export", "--data", tmp_path / "data", "--out", tmp_path / "bundle")
    assert exported.returncode == 0, exported.stderr
    checked = run("verify-bundle", tmp_path / "bundle")
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith("OK: 1 records (0.2 MB)")


def test_export_with_a_fifo_as_key_file_is_refused_not_waited_on(
    ledger: Path, tmp_path: Path
) -> None:
    os.mkfifo(tmp_path / "key.fifo")
    result = subprocess.run(
        [sys.executable, "-m", "otaudit", "export", "--data", str(fresh(ledger, tmp_path)),
         "--out", str(tmp_path / "out"), "--key-file", str(tmp_path / "key.fifo")],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 2
    assert f"key file {tmp_path / 'key.fifo'} is not a regular file" in result.stderr


def test_export_refuses_a_non_empty_out(ledger: Path, tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    ledger = fresh(ledger, tmp_path.parent / f"{tmp_path.name}-data")
    result = run("export", "--data", ledger, "--out", tmp_path)
    assert result.returncode == 2
    assert "must not exist or be an empty directory" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
    result = run("export", "--data", ledger, "--out", tmp_path / "x", "--since", "yesterday")
    assert result.returncode == 2
    assert "--since" in result.stderr
    assert not (tmp_path / "x").exists()


def test_verify_bundle_usage_errors(whole: Path, tmp_path: Path) -> None:
    result = run("verify-bundle", tmp_path / "nope")
    assert result.returncode == 2
    assert "is not a directory" in result.stderr
    result = run("verify-bundle", tmp_path)
    assert result.returncode == 2
    assert "no manifest.json" in result.stderr
    result = run("verify-bundle", whole, "--key", "not-a-key")
    assert result.returncode == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-01", 1767225600 * 10**9),
        ("2026-01-01T00:00:00Z", 1767225600 * 10**9),
        ("2026-01-01T02:00:00.5+02:00", 1767225600 * 10**9 + 500_000_000),
        ("2025-12-31T23:00:00.000000001-01:00", 1767225600 * 10**9 + 1),
        ("90d", 10**18 - 90 * 86400 * 10**9),
        ("12h", 10**18 - 12 * HOUR),
        ("30m", 10**18 - 30 * 60 * 10**9),
    ],
)
def test_parse_time(text: str, expected: int) -> None:
    assert parse_time(text, 10**18) == expected


@pytest.mark.parametrize("text", ["2026-02-30", "2026-01-01T00:00:00", "1y", "", "12 h"])
def test_parse_time_refuses(text: str) -> None:
    with pytest.raises(ValueError, match=r"2026|duration|valid"):
        parse_time(text, 0)


def test_select_seqs(ledger: Path, whole: Path) -> None:
    records = rows(whole)
    since, until = records[30]["time_unix_nano"], records[3]["time_unix_nano"]
    store = SQLiteStore(ledger / "ledger.db", readonly=True)
    try:
        got = list(store.select_seqs(since_ns=since, until_ns=until, actions=["read"], end=33))
        assert list(store.select_seqs(since_ns=None, until_ns=None, actions=(), end=5)) == [
            0, 1, 2, 3, 4]  # fmt: skip
    finally:
        store.close()
    want = [
        r["seq"]
        for r in records
        if since <= r["time_unix_nano"] < until and r["action"] == "read" and r["seq"] < 33
    ]
    assert got == want and want


# -- tampering ------------------------------------------------------------------------------


def rehash(bundle: Path, **changes: Any) -> None:
    """Make the manifest list the files as they are now (and apply ``changes`` to it). Its
    signature no longer matches: without the log's key, the tamperer can only drop it."""
    (bundle / "manifest.sig").unlink(missing_ok=True)
    path = bundle / "manifest.json"
    manifest = orjson.loads(path.read_bytes()) | changes
    for name in FILES:
        data = (bundle / name).read_bytes()
        manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    path.write_bytes(orjson.dumps(manifest))


def edit_lines(bundle: Path, name: str, edit: Callable[[list[bytes]], object]) -> None:
    lines = (bundle / name).read_bytes().splitlines(keepends=True)
    edit(lines)
    (bundle / name).write_bytes(b"".join(lines))


def byte_changed(b: Path, key: str) -> None:
    def edit(lines: list[bytes]) -> None:
        lines[5] = lines[5].replace(b"employee05", b"mmployee05")

    edit_lines(b, "records.canonical", edit)
    rehash(b)


def record_line_removed(b: Path, key: str) -> None:
    edit_lines(b, "records.canonical", lambda lines: lines.pop(9))
    rehash(b, records=SPANS + 7)


def record_removed_everywhere(b: Path, key: str) -> None:
    for name in ("records.canonical", "proofs.jsonl", "records.jsonl"):
        edit_lines(b, name, lambda lines: lines.pop(9))
    table = list(csv.reader(io.StringIO((b / "records.csv").read_text(), newline="")))
    del table[10]
    with (b / "records.csv").open("w", newline="") as f:
        csv.writer(f).writerows(table)
    rehash(b, records=SPANS + 7)


def proofs_swapped(b: Path, key: str) -> None:
    def edit(lines: list[bytes]) -> None:
        lines[2], lines[5] = lines[5], lines[2]

    edit_lines(b, "proofs.jsonl", edit)
    rehash(b)


def proof_hash_flipped(b: Path, key: str) -> None:
    def edit(lines: list[bytes]) -> None:
        proof = orjson.loads(lines[3])
        first = proof["hashes"][0]
        proof["hashes"][0] = ("1" if first[0] == "0" else "0") + first[1:]
        lines[3] = orjson.dumps(proof) + b"\n"

    edit_lines(b, "proofs.jsonl", edit)
    rehash(b)


def signed_by_another_key(b: Path, key: str) -> None:
    other = SigningKey.generate(key.split("+")[0])  # same name, the attacker's key
    body = (b / "checkpoint").read_text().rpartition("\n\n")[0] + "\n"
    (b / "checkpoint").write_text(sign_checkpoint(Checkpoint.parse_body(body), other))
    (b / "verifier.key").write_text(other.verifier_key() + "\n")
    rehash(b)


def manifest_hash_mismatch(b: Path, key: str) -> None:
    edit_lines(b, "records.jsonl", lambda lines: lines.append(lines[0]))


def extra_file(b: Path, key: str) -> None:
    (b / "notes.txt").write_text("not part of the evidence\n")


def file_deleted(b: Path, key: str) -> None:
    (b / "records.csv").unlink()


def file_unlisted(b: Path, key: str) -> None:
    manifest = orjson.loads((b / "manifest.json").read_bytes())
    del manifest["files"]["proofs.jsonl"]
    (b / "manifest.json").write_bytes(orjson.dumps(manifest))
    (b / "manifest.sig").unlink()


def csv_edited(b: Path, key: str) -> None:
    text = (b / "records.csv").read_text()
    assert text.count(",employee05,") == 1
    (b / "records.csv").write_text(text.replace(",employee05,", ",mallory,"))
    rehash(b)


def jsonl_edited(b: Path, key: str) -> None:
    def edit(lines: list[bytes]) -> None:
        lines[6] = lines[6].replace(b'"result":null', b'"result":"success"')

    edit_lines(b, "records.jsonl", edit)
    rehash(b)


def root_in_manifest_changed(b: Path, key: str) -> None:
    rehash(b, root_hash="00" * 32)


def selection_narrowed(b: Path, key: str) -> None:
    manifest = orjson.loads((b / "manifest.json").read_bytes())
    rehash(b, selection=manifest["selection"] | {"actions": ["login"]})


def manifest_edited_signature_kept(b: Path, key: str) -> None:
    path = b / "manifest.json"
    path.write_bytes(path.read_bytes().replace(b'"records": 44', b'"records": 43'))


def manifest_signed_by_another_key(b: Path, key: str) -> None:
    other = SigningKey.generate(key.split("+")[0])
    text = manifest_note_text((b / "manifest.json").read_bytes())
    (b / "manifest.sig").write_text(sign_note(text, other))


def manifest_sig_is_a_checkpoint(b: Path, key: str) -> None:
    shutil.copy(b / "checkpoint", b / "manifest.sig")  # signed by the log, but not this


def records_csv_links_to_dev_zero(b: Path, key: str) -> None:
    (b / "records.csv").unlink()
    (b / "records.csv").symlink_to("/dev/zero")


def proofs_link_to_a_faithful_copy(b: Path, key: str) -> None:
    os.rename(b / "proofs.jsonl", b.parent / "proofs.jsonl")
    (b / "proofs.jsonl").symlink_to(b.parent / "proofs.jsonl")


def records_csv_is_a_fifo(b: Path, key: str) -> None:
    (b / "records.csv").unlink()
    os.mkfifo(b / "records.csv")  # nobody writes to it: reading it would wait forever


def manifest_is_a_fifo(b: Path, key: str) -> None:
    (b / "manifest.json").unlink()
    os.mkfifo(b / "manifest.json")


def checkpoint_is_a_directory(b: Path, key: str) -> None:
    (b / "checkpoint").unlink()
    (b / "checkpoint").mkdir()


def verifier_key_oversized(b: Path, key: str) -> None:
    (b / "verifier.key").write_text(key + "\n" + " " * 8192)


TAMPERING: list[tuple[Callable[[Path, str], None], str]] = [
    (byte_changed, r"seq 5 \(records.canonical line 6\): record bytes do not match the leaf"),
    (record_line_removed, r"seq 9 \(records.canonical line 10\): record bytes do not match"),
    (record_removed_everywhere, r"seq 9 is missing from a bundle of every record"),
    (proofs_swapped, r"seq 5 \(records.canonical line 3\): record bytes do not match"),
    (proof_hash_flipped, r"seq 3 \(records.canonical line 4\): not included in the checkpoint"),
    (signed_by_another_key, r"checkpoint: signed note has no signature by .*; found "),
    (manifest_hash_mismatch, r"records.jsonl: SHA-256 or size differs from the manifest"),
    (extra_file, r"extra file notes.txt in the bundle is not in the manifest"),
    (file_deleted, r"records.csv is missing in the bundle"),
    (file_unlisted, r"proofs.jsonl is missing in the manifest"),
    (
        csv_edited,
        r"records.csv row for seq 5: actor is 'mallory' but the sealed record says "
        r"'employee05'",
    ),
    (
        jsonl_edited,
        r"records.jsonl line for seq 6: result is 'success' but the sealed record "
        r"says None",
    ),
    (root_in_manifest_changed, r"manifest.json: origin, tree size or root differs"),
    (selection_narrowed, r"seq 1: not in the selection the manifest states"),
    (
        manifest_edited_signature_kept,
        r"manifest.sig signs another manifest: it signs "
        r"'otaudit-bundle-manifest/1\\nsha256:",
    ),
    (manifest_signed_by_another_key, r"manifest.sig: signed note has no signature by .*; found"),
    (manifest_sig_is_a_checkpoint, r"manifest.sig signs another manifest: it signs 'otaudit/"),
    (
        records_csv_links_to_dev_zero,
        r"records.csv is a symbolic link; a bundle holds only "
        r"regular files",
    ),
    (proofs_link_to_a_faithful_copy, r"proofs.jsonl is a symbolic link; a bundle holds only"),
    (records_csv_is_a_fifo, r"records.csv is a FIFO; a bundle holds only regular files"),
    (manifest_is_a_fifo, r"manifest.json is a FIFO; a bundle holds only regular files"),
    (checkpoint_is_a_directory, r"checkpoint is a directory; a bundle holds only regular"),
    (verifier_key_oversized, r"verifier.key is 8\d\d\d bytes, more than 4096"),
]


@pytest.mark.parametrize(("tamper", "message"), TAMPERING, ids=[t.__name__ for t, _ in TAMPERING])
def test_tampering_is_detected(
    whole: Path, key: str, tmp_path: Path, tamper: Callable[[Path, str], None], message: str
) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(whole, bundle)
    tamper(bundle, key)
    # A short timeout: reading a FIFO or /dev/zero would never end.
    result = subprocess.run([sys.executable, "-m", "otaudit", "verify-bundle", str(bundle),
                             "--key", key], capture_output=True, text=True, timeout=30)  # fmt: skip
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stderr.startswith("FAILED: ")
    assert re.search(message, result.stderr), result.stderr


def widen_and_drop(bundle: Path) -> None:
    """Drop a record from a bundle of login and export records, and claim a wider selection
    (logins only since long ago): the attack a signed manifest stops."""
    seqs = [r["seq"] for r in rows(bundle)]
    gone = seqs.index(next(r["seq"] for r in rows(bundle) if r["action"] == "login"))
    for name in ("records.canonical", "proofs.jsonl", "records.jsonl"):
        edit_lines(bundle, name, lambda lines: lines.pop(gone))
    table = list(csv.reader(io.StringIO((bundle / "records.csv").read_text(), newline="")))
    del table[gone + 1]
    with (bundle / "records.csv").open("w", newline="") as f:
        csv.writer(f).writerows(table)
    manifest = orjson.loads((bundle / "manifest.json").read_bytes())
    since = {"since": "2000-01-01", "since_utc": "2000-01-01T00:00:00.000000000Z"}
    manifest |= {"records": len(seqs) - 1, "selection": manifest["selection"] | since}
    (bundle / "manifest.json").write_bytes(orjson.dumps(manifest))
    rehash(bundle)


def test_a_widened_selection_with_a_record_dropped_is_caught_or_not_proven(
    ledger: Path, key: str, tmp_path: Path
) -> None:
    out = tmp_path / "by-action"
    exported = run("export", "--data", fresh(ledger, tmp_path), "--out", out,
                   "--action", "login", "--action", "export")  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    # Signed: the manifest cannot be changed without the log's key.
    kept = tmp_path / "kept"
    shutil.copytree(out, kept)
    signature = (out / "manifest.sig").read_bytes()
    widen_and_drop(kept)
    (kept / "manifest.sig").write_bytes(signature)
    result = verify(kept, key)
    assert result.returncode == 1
    assert result.stderr.startswith("FAILED: manifest.sig signs another manifest")
    # Signature dropped: every record left is still proven, but the output says plainly
    # that the selection and completeness are not.
    dropped = tmp_path / "dropped"
    shutil.copytree(out, dropped)
    widen_and_drop(dropped)
    assert assert_ok(dropped, key, SPANS // 2 - 1) == [
        "proven: each record is in the log, unaltered, under that signed checkpoint",
        "NOT proven: the selection (time >= 2000-01-01T00:00:00.000000000Z and action in "
        "login, export) or that no matching record was left out: the manifest is not signed "
        "(no manifest.sig), so records may have been removed and the selection changed after "
        "export",
    ]
    strict = verify(dropped, key, "--require-signed-manifest")
    assert strict.returncode == 1
    assert "FAILED: manifest.sig is missing: the selection and completeness are not signed" in (
        strict.stderr)  # fmt: skip


def test_export_without_the_signing_key_says_the_manifest_is_not_signed(
    ledger: Path, key: str, tmp_path: Path
) -> None:
    data = fresh(ledger, tmp_path)
    (data / "signing.key").unlink()  # an auditor's copy of the ledger, without the key
    whole, filtered = tmp_path / "whole", tmp_path / "filtered"
    # Nothing confirms the verifier key the database records: not put in a bundle unasked.
    refused = run("export", "--data", data, "--out", whole)
    assert refused.returncode == 1
    assert "the log's verifier key cannot be confirmed" in refused.stderr
    assert run("key", "pin", "--key", key, "--data", data).returncode == 0
    result = run("export", "--data", data, "--out", whole)
    assert result.returncode == 0, result.stderr
    assert (
        f"note: the manifest is not signed ({data / 'signing.key'} is not readable here): "
        "verify-bundle proves each record, but not the selection or that no matching record "
        "was left out"
    ) in result.stdout
    assert not (whole / "manifest.sig").exists()
    assert assert_ok(whole, key, SPANS + 8) == [
        "proven: each record is in the log, unaltered, under that signed checkpoint, and the "
        "bundle holds all 44 records of the log up to it (complete)",
        "not proven: anything about records sealed after tree size 44; the manifest is not "
        "signed (no manifest.sig)",
    ]
    assert run("export", "--data", data, "--out", filtered, "--action", "read").returncode == 0
    assert assert_ok(filtered, key, SPANS // 4)[1].startswith(
        "NOT proven: the selection (action in read) or that no matching record was left out"
    )


def test_export_refuses_a_signing_key_others_may_read_or_of_another_log(
    ledger: Path, tmp_path: Path
) -> None:
    data = fresh(ledger, tmp_path)
    (data / "signing.key").chmod(0o644)
    result = run("export", "--data", data, "--out", tmp_path / "out")
    assert result.returncode == 2
    assert "signing.key has mode 0644, which allows group or other access" in result.stderr
    (data / "signing.key").chmod(0o600)
    other = tmp_path / "other.key"
    SigningKey.generate("someone-else").save(other)
    result = run("export", "--data", data, "--out", tmp_path / "out", "--key-file", other)
    assert result.returncode == 2
    assert "signing key someone-else+" in result.stderr and "is not the log's key" in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_bundle_re_signed_with_its_own_key_needs_the_real_key(
    whole: Path, key: str, tmp_path: Path
) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(whole, bundle)
    signed_by_another_key(bundle, key)
    result = verify(bundle, None)  # consistent in itself: only the out-of-band key tells
    assert result.returncode == 0, result.stderr
    assert "warning: no --key given" in result.stderr
    assert key not in result.stdout


def test_key_mismatch(whole: Path, tmp_path: Path) -> None:
    other = SigningKey.generate("someone-else").verifier_key()
    result = verify(whole, other)
    assert result.returncode == 1
    assert "FAILED: checkpoint: signed note has no signature by someone-else+" in result.stderr


# -- the standalone script of docs/verifying.md ---------------------------------------------


def docs_script() -> str:
    text = DOCS.read_text()
    section = text.split("### Checking a bundle without otaudit", 1)[1]
    script = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert 40 <= script.count("\n") <= 70
    return script


def run_docs_script(bundle: Path, key: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "check_bundle.py"
    path.write_text(docs_script())
    return subprocess.run(  # a short timeout: reading a FIFO or /dev/zero would never end
        [sys.executable, str(path), str(bundle), key], capture_output=True, text=True, timeout=30
    )


def test_docs_script_accepts_real_bundles(
    whole: Path, ledger: Path, key: str, tmp_path: Path
) -> None:
    result = run_docs_script(whole, key, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"OK: every record is in {key.split('+')[0]}'s tree of size 44, " \
                            f"signed by {key.split('+')[0]}\n" \
                            "the manifest is signed by that key\n"  # fmt: skip
    out = tmp_path / "filtered"
    data = fresh(ledger, tmp_path)
    assert run("export", "--data", data, "--out", out, "--action", "read").returncode == 0
    assert run_docs_script(out, key, tmp_path).returncode == 0
    (out / "manifest.sig").unlink()  # as in a bundle exported without the signing key
    unsigned = run_docs_script(out, key, tmp_path)
    assert unsigned.returncode == 0, unsigned.stderr
    assert unsigned.stdout.endswith(
        "\nNOT proven: the selection or completeness (the manifest is not signed)\n"
    )


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (byte_changed, "seq 5: record does not match its proof"),
        (proof_hash_flipped, "seq 3: not included in the signed tree"),
        (proofs_swapped, "seq 5: record does not match its proof"),
        (signed_by_another_key, "checkpoint is not signed by that key"),
        (manifest_edited_signature_kept, "manifest.sig does not sign this manifest.json"),
        (manifest_signed_by_another_key, "manifest.sig is not signed by that key"),
        (manifest_hash_mismatch, "records.jsonl is not the file the manifest lists"),
        (records_csv_links_to_dev_zero, "records.csv is not a regular file"),
        (records_csv_is_a_fifo, "records.csv is not a regular file"),
    ],
)
def test_docs_script_detects_tampering(
    whole: Path, key: str, tmp_path: Path, tamper: Callable[[Path, str], None], message: str
) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(whole, bundle)
    tamper(bundle, key)
    result = run_docs_script(bundle, key, tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == message
