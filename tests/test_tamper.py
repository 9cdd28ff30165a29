"""Tampering with a stopped server's SQLite ledger, and what only a checkpoint kept
elsewhere can catch.

One server receives 40 audit spans over OTLP/HTTP and is stopped (SIGTERM:
it signs a final checkpoint). Each case then copies the data directory and
edits the copy with plain ``sqlite3``, the way someone with file access
would: drop the append-only triggers first, then rewrite history, recompute
the tree, swap the key or roll the file back. ``otaudit verify`` must exit 1
with a ``FAILED:`` message naming the place. ``INSERT OR REPLACE`` (SQLite's
UPDATE in all but name) and the read-only ``otaudit sql`` are tested on the
untouched ledger too. Changes to single rows, and UPDATE and DELETE against
the triggers, are tested on every store by ``tests/contract``.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from forgery import DELETE_FROM_SEQ, forged_tail
from otaudit import merkle, tree
from otaudit.checkpoint import Checkpoint, sign_checkpoint
from otaudit.keys import SigningKey
from otaudit.record import COLUMN_NAMES, content_key, derive_columns, parse_sealed
from otaudit.store.sqlite import SQLiteStore, stored_bytes_reader
from support import Server, audit_request, otaudit, post

RECORDS = 40
REQUESTS = 4
LEDGER_TABLES = ("records", "tree_nodes", "checkpoints", "meta", "schema_migrations")
ACTIONS = ("login", "role_update", "read", "export")


def actor(i: int) -> str:
    return f"employee{i:02d}@example.com"


def _kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _span(i: int) -> Span:
    return Span(
        trace_id=(0x5B8E0000 + i).to_bytes(16, "big"),
        span_id=(0xEEE10000 + i).to_bytes(8, "big"),
        name=f"audit-op-{i}",
        kind=Span.SPAN_KIND_SERVER,
        start_time_unix_nano=1_700_000_000_000_000_000 + i * 1_000_000,
        end_time_unix_nano=1_700_000_000_000_500_000 + i * 1_000_000,
        attributes=[
            _kv("audit.action", ACTIONS[i % len(ACTIONS)]),
            _kv("user.id", actor(i)),
            _kv("audit.target", f"doc-{i}"),
        ],
    )


def _request(first: int, count: int) -> bytes:
    request = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=Resource(attributes=[_kv("service.name", "tamper-test")]),
                scope_spans=[ScopeSpans(spans=[_span(i) for i in range(first, first + count)])],
            )
        ]
    )
    return request.SerializeToString()


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The data directory of a stopped server holding 40 audit spans (seq 0..39)."""
    data = tmp_path_factory.mktemp("tamper") / "data"
    srv = Server(data).start()
    try:
        per_request = RECORDS // REQUESTS
        with httpx.Client(base_url=srv.http_url, timeout=30) as client:
            for first in range(0, RECORDS, per_request):
                response = client.post(
                    "/v1/traces",
                    content=_request(first, per_request),
                    headers={"content-type": "application/x-protobuf"},
                )
                assert response.status_code == 200
                assert response.content == b""
        assert int(srv.metrics()["otaudit_tree_size"]) == RECORDS
    finally:
        assert srv.stop() == 0
    # On a copy: verify records its read in the ledger it checks, and the cases below count.
    checked = shutil.copytree(data, data.with_name("checked"))
    result = otaudit("verify", "--data", str(checked))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"OK: {RECORDS} records verified")
    assert f"latest at size {RECORDS}\n" in result.stdout  # the final checkpoint covers all
    return data


def _connect(data: Path) -> sqlite3.Connection:
    return sqlite3.connect(data / "ledger.db", isolation_level=None)


def _copy(ledger: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(ledger, copy)
    return copy


def _drop_triggers(conn: sqlite3.Connection) -> None:
    names = [
        r[0]
        for r in conn.execute("SELECT name, tbl_name FROM sqlite_master WHERE type = 'trigger'")
        if r[1] in LEDGER_TABLES
    ]
    assert len(names) == 3 * len(LEDGER_TABLES)  # no replace, no UPDATE, no DELETE, per table
    for name in names:
        conn.execute(f'DROP TRIGGER "{name}"')


def _flip_bit(blob: bytes, at: int = 0) -> bytes:
    return blob[:at] + bytes([blob[at] ^ 0x01]) + blob[at + 1 :]


def _one(conn: sqlite3.Connection, sql: str, *params: object) -> Any:
    rows = conn.execute(sql, params).fetchall()
    assert len(rows) == 1, rows
    return rows[0][0]


def _whole_sealed(conn: sqlite3.Connection, seq: int) -> bytes:
    """Record ``seq``'s canonical bytes, its resource (kept once) spliced back."""
    stored, at, body = conn.execute(
        "SELECT r.sealed, r.resource_at, s.body FROM records r"
        " LEFT JOIN resources s ON s.hash = r.resource_hash WHERE r.seq = ?",
        (seq,),
    ).fetchone()
    stored = stored_bytes_reader(conn).decode(bytes(stored))  # it may be compressed
    return stored if at is None else stored[:at] + body + stored[at:]


# -- the tampering (each case on every store: tests/contract/test_contract_tamper.py) --


def leaf_hash_changed(conn: sqlite3.Connection) -> None:
    leaf = bytes(_one(conn, "SELECT hash FROM tree_nodes WHERE level = 0 AND idx = 11"))
    conn.execute(
        "UPDATE tree_nodes SET hash = ? WHERE level = 0 AND idx = 11", (_flip_bit(leaf, 31),)
    )


# -- the append-only triggers ----------------------------------------------------


def _table_dump(conn: sqlite3.Connection, table: str) -> list[tuple[object, ...]]:
    return conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()


def _replace_statement(conn: sqlite3.Connection, table: str) -> str:
    """An ``INSERT OR REPLACE`` that overwrites an existing row of ``table`` with other values."""
    if table == "records":
        columns = [r[1] for r in conn.execute("PRAGMA table_info(records)")]
        values = ["'mallory'" if c == "actor" else c for c in columns]
        return (
            f"INSERT OR REPLACE INTO records ({', '.join(columns)}) "
            f"SELECT {', '.join(values)} FROM records WHERE seq = 9"
        )
    return {
        "tree_nodes": "INSERT OR REPLACE INTO tree_nodes VALUES (0, 11, zeroblob(32))",
        "checkpoints": "INSERT OR REPLACE INTO checkpoints VALUES (40, zeroblob(32), 0, 'forged')",
        "meta": "INSERT OR REPLACE INTO meta VALUES ('origin', 'evil')",
        "schema_migrations": "INSERT OR REPLACE INTO schema_migrations VALUES (2, 'x', 'y')",
    }[table]


@pytest.mark.parametrize("table", LEDGER_TABLES)
def test_triggers_refuse_insert_or_replace(ledger: Path, tmp_path: Path, table: str) -> None:
    """``INSERT OR REPLACE`` deletes the row it replaces: an UPDATE in all but name.

    SQLite fires no DELETE trigger for a REPLACE unless ``recursive_triggers``
    is on in the writing connection, so the append-only guarantee has to
    cover this path explicitly.
    """
    copy = _copy(ledger, tmp_path)
    conn = _connect(copy)
    try:
        before = _table_dump(conn, table)
        statement = _replace_statement(conn, table)
        with pytest.raises(sqlite3.Error, match="append-only"):
            conn.execute(statement)
        assert _table_dump(conn, table) == before
    finally:
        conn.close()


# -- otaudit sql is read-only ------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        pytest.param(
            "INSERT INTO meta (key, value) VALUES ('note', 'forged')",
            id="insert",
        ),
        pytest.param("UPDATE records SET actor = 'mallory' WHERE seq = 9", id="update"),
        pytest.param("DELETE FROM records WHERE seq = 20", id="delete"),
        pytest.param("ATTACH DATABASE '{tmp}/other.db' AS other", id="attach"),
        pytest.param("PRAGMA user_version = 7", id="pragma"),
    ],
)
def test_sql_refuses_writes(ledger: Path, tmp_path: Path, statement: str) -> None:
    copy = _copy(ledger, tmp_path)
    before = _rows_before(copy)
    text = statement.format(tmp=tmp_path)
    result = otaudit("sql", "--data", str(copy), text)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("otaudit: error: ")
    assert len(result.stderr.strip()) > len("otaudit: error: ")
    assert not (tmp_path / "other.db").exists()
    # Nothing changed; one record was added: the refused read, as a failure.
    assert _rows_before(copy) == before
    conn = _connect(copy)
    try:
        added = conn.execute(
            "SELECT seq, action, result, attributes ->> '$.\"audit.query.text\"' FROM records"
            f" WHERE seq >= {RECORDS}"
        ).fetchall()
    finally:
        conn.close()
    assert added == [(RECORDS, "audit_log.query", "failure", text)]
    assert otaudit("verify", "--data", str(copy)).returncode == 0


def _rows_before(data: Path) -> list[list[tuple[object, ...]]]:
    """Every ledger row that existed before the test's reads."""
    conn = _connect(data)
    try:
        return [
            conn.execute(f"SELECT * FROM records WHERE seq < {RECORDS} ORDER BY seq").fetchall(),
            conn.execute("SELECT * FROM meta ORDER BY key").fetchall(),
            conn.execute(
                f"SELECT * FROM tree_nodes WHERE (idx + 1) << level <= {RECORDS} ORDER BY 1, 2"
            ).fetchall(),
            conn.execute(
                f"SELECT * FROM checkpoints WHERE tree_size <= {RECORDS} ORDER BY 1"
            ).fetchall(),
        ]
    finally:
        conn.close()


def test_sql_select_as_json(ledger: Path, tmp_path: Path) -> None:
    result = otaudit(
        "sql",
        "--data",
        str(_copy(ledger, tmp_path)),
        "--format",
        "json",
        "SELECT name, seq, actor AS who, action FROM audit_records "
        "WHERE seq IN (0, 17, 39) ORDER BY seq DESC",
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    rows = json.loads(result.stdout)
    assert rows == [
        {"name": f"audit-op-{i}", "seq": i, "who": actor(i), "action": ACTIONS[i % len(ACTIONS)]}
        for i in (39, 17, 0)
    ]
    assert [list(row) for row in rows] == [["name", "seq", "who", "action"]] * 3


def test_untampered_ledger_still_verifies(ledger: Path) -> None:
    """The cases above worked on copies (``otaudit sql`` adds a record of each read)."""
    result = otaudit("verify", "--data", str(ledger))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"OK: {RECORDS} records verified")


# -- what only a checkpoint kept elsewhere can catch -------------------------------


def _saved_checkpoint(data: Path, path: Path) -> Path:
    result = otaudit("checkpoint", "--data", str(data))
    assert result.returncode == 0, result.stderr
    path.write_text(result.stdout)
    return path


def _rebuild_tree(conn: sqlite3.Connection) -> None:
    """Recompute every tree node from the stored records, as a forger would."""
    conn.execute("DELETE FROM tree_nodes")
    level = [
        merkle.leaf_hash(_whole_sealed(conn, r[0]))
        for r in conn.execute("SELECT seq FROM records ORDER BY seq").fetchall()
    ]
    height = 0
    while level:
        conn.executemany(
            "INSERT INTO tree_nodes (level, idx, hash) VALUES (?, ?, ?)",
            [(height, i, h) for i, h in enumerate(level)],
        )
        level = [merkle.node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        height += 1


def test_tree_recomputed_and_resigned_with_a_new_key(ledger: Path, tmp_path: Path) -> None:
    saved = _saved_checkpoint(ledger, tmp_path / "saved-checkpoint")
    original_key = otaudit("key", "show", "--data", str(ledger)).stdout.strip()
    copy = _copy(ledger, tmp_path)
    conn = _connect(copy)
    try:
        _drop_triggers(conn)
        # Rewrite seq 5's actor consistently: bytes, columns, tree, checkpoint, key.
        sealed = _whole_sealed(conn, 5)
        forged = sealed.replace(actor(5).encode(), b"mallory@example.com")
        envelope, content = parse_sealed(forged)
        columns = derive_columns(envelope)
        assignments = ", ".join(f"{name} = ?" for name in COLUMN_NAMES)
        conn.execute(  # stored whole, as rows were before resources were kept once
            f"UPDATE records SET sealed = ?, dedup_key = ?, {assignments},"
            " resource_hash = NULL, resource_at = NULL WHERE seq = 5",
            (forged, content_key(content), *columns),
        )
        _rebuild_tree(conn)
        origin = conn.execute("SELECT value FROM meta WHERE key = 'origin'").fetchone()[0]
        key = SigningKey.generate(origin)
        conn.execute("UPDATE meta SET value = ? WHERE key = 'verifier_key'", (key.verifier_key(),))
        conn.execute("DELETE FROM checkpoints")
        root = tree.stored_root(SQLiteStore(copy / "ledger.db", readonly=True), RECORDS)
        note = sign_checkpoint(Checkpoint(origin, RECORDS, root), key)
        conn.execute("INSERT INTO checkpoints VALUES (?, ?, 0, ?)", (RECORDS, root, note))
        (copy / "signing.key").unlink()
        key.save(copy / "signing.key")
    finally:
        conn.close()

    # The checkpoint the server saved next to its key shows it...
    result = otaudit("verify", "--data", str(copy))
    assert result.returncode == 1
    assert result.stderr.startswith("FAILED: saved checkpoint is not a checkpoint of this log")
    assert "signing.key.checkpoint, the server's own copy" in result.stderr
    # ...but whoever replaced the key file can remove that file too. Then the forgery is
    # self-consistent: the ledger alone cannot tell.
    (copy / "signing.key.checkpoint").unlink()
    assert otaudit("verify", "--data", str(copy)).returncode == 0
    # A checkpoint kept elsewhere, or the log's real key, can.
    result = otaudit("verify", "--data", str(copy), "--checkpoint", str(saved))
    assert result.returncode == 1
    assert result.stderr.startswith("FAILED: saved checkpoint is not a checkpoint of this log")
    result = otaudit("verify", "--data", str(copy), "--key", original_key)
    assert result.returncode == 1
    assert result.stderr.startswith(f"FAILED: checkpoint at tree size {RECORDS}: ")


def test_database_rolled_back_to_an_older_copy(tmp_path: Path) -> None:
    server = Server(tmp_path / "data").start()
    assert post(server, audit_request(20)).status_code == 200
    server.stop()
    older = tmp_path / "older.db"
    shutil.copy(server.data / "ledger.db", older)
    server.start()
    assert post(server, audit_request(20)).status_code == 200
    server.stop()
    saved = _saved_checkpoint(server.data, tmp_path / "saved-checkpoint")

    shutil.copy(older, server.data / "ledger.db")  # the rollback
    result = otaudit("verify", "--data", str(server.data), "--checkpoint", str(saved))
    assert result.returncode == 1
    assert result.stderr == (
        "FAILED: saved checkpoint at tree size 40: the ledger holds only 20 records; "
        "seq 20 onwards is missing (truncated, or rolled back to an older copy)\n"
    )
    # The checkpoint the server saved next to its key shows it just the same.
    result = otaudit("verify", "--data", str(server.data))
    assert result.returncode == 1
    assert result.stderr.startswith(
        "FAILED: saved checkpoint at tree size 40: the ledger holds only "
    )
    assert "(truncated, or rolled back to an older copy)" in result.stderr

    # Rolled back, then refilled to the same size with other records: the roots differ. The
    # server, whose saved checkpoint is at size 40, signs none of it.
    server.start()
    assert post(server, audit_request(20)).status_code == 200
    server.stop()
    assert max(_checkpoint_sizes(server.data)) == 20
    result = otaudit("verify", "--data", str(server.data), "--checkpoint", str(saved))
    assert result.returncode == 1
    assert "saved checkpoint at tree size 40: signed root" in result.stderr
    assert "the ledger was rewritten" in result.stderr


def test_partial_verification_checks_its_range_against_the_signed_root(
    ledger: Path, tmp_path: Path
) -> None:
    copy = _copy(ledger, tmp_path)
    result = otaudit("verify", "--data", str(copy), "--from-seq", "10", "--to-seq", "30")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK: 20 records in the range verified")
    conn = _connect(copy)
    try:
        _drop_triggers(conn)
        leaf_hash_changed(conn)  # seq 11's leaf no longer hashes into the signed root
    finally:
        conn.close()
    inside = otaudit("verify", "--data", str(copy), "--from-seq", "10", "--to-seq", "30")
    assert inside.returncode == 1
    assert inside.stderr.startswith("FAILED: seq 11: ")
    outside = otaudit("verify", "--data", str(copy), "--from-seq", "20", "--to-seq", "40")
    assert outside.returncode == 0, outside.stderr
    assert outside.stdout.startswith("OK: 20 records in the range verified")


# -- a database writer without the signing key (issue 13, findings 3 and 4) ---------


def _rewrite_history(data: Path, seq: int, *, keep: int = 0) -> None:
    """Rewrite record ``seq``'s actor and rebuild everything after it, as a database writer
    would: the triggers dropped, the records from ``seq`` on appended again through otaudit's
    own store code, and every checkpoint above size ``keep`` deleted."""
    store = SQLiteStore(data / "ledger.db", readonly=True)
    try:
        tail = forged_tail(store, seq, actor(seq).encode(), b"mallory@example.com")
    finally:
        store.close()
    conn = _connect(data)
    try:
        _drop_triggers(conn)
        for statement in DELETE_FROM_SEQ:
            conn.execute(statement.format(seq=seq, keep=keep))
    finally:
        conn.close()
    store = SQLiteStore(data / "ledger.db", readonly=False, migrate=False)
    try:
        store.append(tail)
    finally:
        store.close()


def _checkpoint_sizes(data: Path) -> list[int]:
    conn = _connect(data)
    try:
        return [r[0] for r in conn.execute("SELECT tree_size FROM checkpoints ORDER BY 1")]
    finally:
        conn.close()


def test_a_rewritten_history_is_not_signed_again(ledger: Path, tmp_path: Path) -> None:
    original_key = otaudit("key", "show", "--data", str(ledger)).stdout.strip()
    copy = _copy(ledger, tmp_path)
    size = _checkpoint_sizes(copy)[-1]  # RECORDS
    assert size >= RECORDS
    _rewrite_history(copy, 5)
    conn = _connect(copy)
    try:  # the reads recorded since the server last signed, not signed themselves
        (end,) = conn.execute("SELECT count(*) FROM records").fetchone()
    finally:
        conn.close()
    assert _checkpoint_sizes(copy) == [0]

    # The server keeps its latest signed checkpoint next to its key, where the database
    # writer cannot reach: verify checks the ledger against it...
    result = otaudit("verify", "--data", str(copy))
    assert result.returncode == 1, result.stdout
    assert result.stderr.startswith(
        f"FAILED: saved checkpoint at tree size {size}: signed root "
    ), result.stderr
    assert "the ledger was rewritten" in result.stderr

    # ...and the server refuses to sign a tree that does not extend it, at start and at stop,
    # and puts the refusal on the ledger (once).
    server = Server(copy).start()
    assert server.stop() == 0
    assert _checkpoint_sizes(copy) == [0]
    conn = _connect(copy)
    try:
        rows = conn.execute(
            "SELECT seq, pipeline, action, result, attributes ->> '$.\"audit.query.error\"' "
            f"FROM records WHERE seq >= {end}"
        ).fetchall()
    finally:
        conn.close()
    # The failed verify above is recorded first (seq `end`), then the refusal.
    assert [row[2:4] for row in rows] == [("audit_log.query", "failure"),
                                          ("otaudit.verify", "failure")]  # fmt: skip
    seq, pipeline, _, _, error = rows[1]
    assert (seq, pipeline) == (end + 1, "otaudit")
    assert error.startswith(
        f"refusing to sign tree size {end + 1}: not consistent with the checkpoint at size "
        f"{size} saved in {copy / 'signing.key.checkpoint'}"
    ), error
    result = otaudit("verify", "--data", str(copy), "--key", original_key)
    assert result.returncode == 1
    assert "the ledger was rewritten" in result.stderr


def test_a_history_signed_again_late_is_reported(tmp_path: Path) -> None:
    """When the server lost its saved checkpoint too (the writer controls the data directory,
    or this is the first start after an upgrade), it adopts the latest checkpoint the
    ledger holds and signs what follows. verify then sees records that stayed unsigned
    while the server went on receiving others."""
    server = Server(tmp_path / "data").start()
    assert post(server, audit_request(10)).status_code == 200
    time.sleep(1.2)
    assert post(server, audit_request(10)).status_code == 200
    assert server.stop() == 0
    honest = otaudit("verify", "--data", str(server.data), "--max-signing-delay", "1s")
    assert honest.returncode == 0, honest.stderr

    store = SQLiteStore(server.data / "ledger.db", readonly=True)
    try:
        tail = forged_tail(store, 3, b'"alice"', b'"mallory"')
    finally:
        store.close()
    conn = _connect(server.data)
    try:
        _drop_triggers(conn)
        for statement in DELETE_FROM_SEQ:
            conn.execute(statement.format(seq=3, keep=0))
    finally:
        conn.close()
    store = SQLiteStore(server.data / "ledger.db", readonly=False, migrate=False)
    try:
        store.append(tail)
    finally:
        store.close()
    (server.data / "signing.key.checkpoint").unlink()
    server.start()
    assert server.stop() == 0
    size = _checkpoint_sizes(server.data)[-1]
    assert _checkpoint_sizes(server.data) == [0, size]  # the rewritten tree, signed

    result = otaudit("verify", "--data", str(server.data), "--max-signing-delay", "1s")
    assert result.returncode == 1, result.stdout
    assert result.stderr.startswith("FAILED: seq 0: received at "), result.stderr
    assert f"first signed by the checkpoint at tree size {size}" in result.stderr
    assert "--max-signing-delay 1s" in result.stderr


def _forge_with_own_key(data: Path) -> SigningKey:
    """Rewrite seq 5, replace the verifier key the ledger records and sign the forged tree."""
    _rewrite_history(data, 5)
    conn = _connect(data)
    try:
        origin = conn.execute("SELECT value FROM meta WHERE key = 'origin'").fetchone()[0]
        key = SigningKey.generate(origin)
        conn.execute("UPDATE meta SET value = ? WHERE key = 'verifier_key'", (key.verifier_key(),))
        conn.execute("DELETE FROM checkpoints")
        store = SQLiteStore(data / "ledger.db", readonly=True)
        root = tree.stored_root(store, RECORDS)
        store.close()
        note = sign_checkpoint(Checkpoint(origin, RECORDS, root), key)
        conn.execute("INSERT INTO checkpoints VALUES (?, ?, 0, ?)", (RECORDS, root, note))
    finally:
        conn.close()
    return key


def _key_elsewhere(data: Path, tmp_path: Path) -> None:
    """The signing key (and the checkpoint saved next to it) kept out of the data directory,
    as with ``serve --key-file``: a verifier here cannot read it."""
    keys = tmp_path / "keys"
    keys.mkdir()
    for name in ("signing.key", "signing.key.checkpoint"):
        shutil.move(data / name, keys / name)


def test_a_swapped_verifier_key_is_not_trusted(ledger: Path, tmp_path: Path) -> None:
    copy = _copy(ledger, tmp_path)
    _key_elsewhere(copy, tmp_path)
    forger = _forge_with_own_key(copy)

    result = otaudit("verify", "--data", str(copy))
    assert result.returncode == 1, result.stdout
    assert result.stdout == ""
    assert result.stderr.startswith("FAILED: the log's verifier key cannot be confirmed: "), (
        result.stderr
    )
    assert "--trust-stored-key" in result.stderr and "otaudit key pin" in result.stderr
    shown = otaudit("key", "show", "--data", str(copy))
    assert shown.returncode == 1
    assert shown.stdout == ""
    assert "cannot be confirmed" in shown.stderr

    # Taking the ledger's word for it is possible, and said: the forgery is self-consistent.
    trusted = otaudit("verify", "--data", str(copy), "--trust-stored-key")
    assert trusted.returncode == 0, trusted.stderr
    assert "not confirmed" in trusted.stderr
    shown = otaudit("key", "show", "--data", str(copy), "--trust-stored-key")
    assert shown.returncode == 0
    assert shown.stdout == forger.verifier_key() + "\n"
    assert "not confirmed" in shown.stderr


def test_a_pinned_verifier_key_catches_a_swapped_one(ledger: Path, tmp_path: Path) -> None:
    copy = _copy(ledger, tmp_path)
    original_key = otaudit("key", "show", "--data", str(ledger)).stdout.strip()
    pinned = otaudit("key", "pin", "--data", str(copy))
    assert pinned.returncode == 0, pinned.stderr
    assert (copy / "verifier.key").read_text() == original_key + "\n"
    assert pinned.stdout == f"pinned {original_key} in {copy / 'verifier.key'}\n"
    _key_elsewhere(copy, tmp_path)
    verified = otaudit("verify", "--data", str(copy), "--from-seq", "0", "--to-seq", "5")
    assert verified.returncode == 0, verified.stderr  # the pin confirms the key

    forger = _forge_with_own_key(copy)
    for args in (("verify",), ("key", "show"), ("verify", "--trust-stored-key")):
        result = otaudit(*args, "--data", str(copy))
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert result.stdout == ""
        assert f"is not the key pinned in {copy / 'verifier.key'}" in result.stderr
    for option in ("--trust-stored-key", f"--key={forger.verifier_key()}"):
        again = otaudit("key", "pin", "--data", str(copy), option)
        assert again.returncode == 1, again.stderr
        assert "is not the key pinned in" in again.stderr
        other = tmp_path / "other.pin"
        other.write_text(original_key + "\n")
        again = otaudit("key", "pin", "--data", str(copy), "--out", str(other), option)
        assert again.returncode == 1, again.stderr
    assert (copy / "verifier.key").read_text() == original_key + "\n"
