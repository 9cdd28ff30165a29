"""A resource is stored once, not once per record (issue 14, finding 1).

A client that sends a large resource with many tiny audit spans used to
multiply the resource into the permanent ledger: every record's sealed bytes
carry a copy, and so did every stored row. The leaf still covers the whole
sealed bytes (proofs, bundles and ``verify`` see them whole), but a store
keeps each distinct resource once and splices it back on every read.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import orjson
import psycopg
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from psycopg.types import TypeInfo
from psycopg.types.hstore import register_hstore

from conftest import query_args
from otaudit import datadir
from otaudit.canonical import canonical_bytes
from otaudit.keys import SigningKey, VerifierKey
from otaudit.record import COLUMN_NAMES, Entry, resource_offset, seal
from otaudit.store.base import Store
from otaudit.store.postgres import PostgresStore
from otaudit.store.sqlite import SQLiteStore
from otaudit.tree import plan_append
from otaudit.verify import verify_ledger
from sealing import RESOURCE_BYTES, SPANS, big_request, blob, sealed_entries, sign
from support import Server, otaudit, post

REQUESTS = 10
ORIGIN = "example.com/resources-once"


def _tags() -> list[str]:
    """Half the requests share one resource, the other half have one each."""
    return ["same"] * (REQUESTS // 2) + [f"{i}-distinct" for i in range(REQUESTS // 2)]


def sqlite_path(store_url: str) -> Path:
    """The file a ``sqlite:///`` store URL names."""
    return Path("/" + store_url.removeprefix("sqlite:///").lstrip("/"))


def ledger_bytes(store_url: str) -> int:
    """The ledger's size on disk: SQLite's file and WAL after a checkpoint; PostgreSQL's
    records and resources tables with their indexes and TOAST."""
    if store_url.startswith("sqlite:///"):
        path = sqlite_path(store_url)
        conn = sqlite3.connect(path)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
        wal = path.with_name(path.name + "-wal")
        return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
    with psycopg.connect(store_url) as pg:
        row = pg.execute(
            "SELECT pg_total_relation_size('otaudit.records')"
            " + COALESCE(pg_total_relation_size(to_regclass('otaudit.resources')), 0)"
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_a_large_resource_is_stored_once_by_the_server(store_url: str, tmp_path: Path) -> None:
    """10 requests of a 60 KiB resource and 100 tiny audit spans each, over OTLP/HTTP."""
    server = Server(tmp_path / "data", extra_args=["--store", store_url]).start()
    try:
        before = ledger_bytes(store_url)
        sent = stored = 0
        for tag in _tags():
            body = big_request(tag)
            sent += len(body)
            response = post(server, body)
            assert response.status_code == 200, response.text
            answer = ExportTraceServiceResponse.FromString(response.content)
            stored += SPANS - answer.partial_success.rejected_spans
    finally:
        assert server.stop() == 0
    growth = ledger_bytes(store_url) - before
    copies = stored * RESOURCE_BYTES
    print(f"\n{store_url.split(':')[0]}: sent {sent} bytes, {stored} records sealed"
          f" ({copies} bytes of resource copies), ledger grew {growth} bytes")  # fmt: skip
    assert stored >= REQUESTS * SPANS // 2  # the per-request sealed budget takes the rest
    assert growth < 3 * sent
    verified = otaudit("verify", "--store", store_url, "--data", str(server.data))
    assert verified.returncode == 0, verified.stderr
    assert f"OK: {stored + 1}" in verified.stdout or f"OK: {stored}" in verified.stdout


def test_every_record_of_a_request_shares_one_stored_resource(
    any_store: Store, store_url: str
) -> None:
    """Without the request budget, 1,000 records carry 100 copies of each resource in
    their sealed bytes: the store grows by about one copy per distinct resource."""
    key = SigningKey.generate(ORIGIN)
    any_store.set_meta("origin", ORIGIN)
    before = ledger_bytes(store_url)
    sent = sealed = 0
    appended: list[Entry] = []
    for tag in _tags():
        body = big_request(tag)
        entries = sealed_entries(body)
        assert len(entries) == SPANS
        assert all(e.resource is not None for e in entries)
        assert len({id(e.resource) for e in entries}) == 1  # computed once per request
        any_store.append(entries)
        appended += entries
        sent += len(body)
        sealed += sum(len(e.sealed) for e in entries)
    growth = ledger_bytes(store_url) - before
    print(f"\n{store_url.split(':')[0]}: sent {sent} bytes, sealed {sealed} bytes,"
          f" ledger grew {growth} bytes")  # fmt: skip
    assert growth < 3 * sent
    assert sealed > 50 * sent
    # Reads give the whole sealed bytes back, and verify passes.
    stored = list(any_store.iter_records())
    assert [r.sealed for r in stored] == [e.sealed for e in appended]
    assert [r.columns for r in stored] == [e.columns for e in appended]
    sign(any_store, key, ORIGIN)
    report = verify_ledger(any_store, VerifierKey.parse(key.verifier_key()))
    assert report.records == REQUESTS * SPANS


def test_the_cut_is_where_the_record_format_puts_the_resource() -> None:
    """An attribute named ``resource`` (or ``scope``) cannot pass for the record's member."""
    resource = {"attributes": {"service.name": "a"}, "dropped_attributes_count": 0,
                "entity_refs": [], "schema_url": ""}  # fmt: skip
    body = canonical_bytes(resource)
    record = {
        "attributes": {"audit.action": "x", "resource": body.decode(), "scope": "y"},
        "body": {"kvlist": {"resource": {"kvlist": {"attributes": "z"}}, "scope": "s"}},
        "resource": resource,
        "scope": {"attributes": {"resource": body.decode()}, "dropped_attributes_count": 0,
                  "name": "", "schema_url": "", "version": ""},
        "signal": "log", "time_unix_nano": "1", "observed_time_unix_nano": "1",
        "severity_number": 0, "severity_text": "", "dropped_attributes_count": 0,
        "flags": 0, "trace_id": "", "span_id": "", "event_name": "",
    }  # fmt: skip
    entry = seal(record, canonical_bytes(record), "otlp", 1)
    assert entry.resource is not None
    at = entry.resource_at
    assert entry.sealed[at : at + len(body)] == body
    assert entry.sealed[:at].endswith(b'"observed_time_unix_nano":"1","resource":')
    assert entry.sealed[at + len(body) :].startswith(b',"scope":{')
    assert resource_offset(entry.sealed, body) == at


@pytest.fixture
def old_ledger(store_url: str, tmp_path: Path) -> Iterator[tuple[Store, list[Entry]]]:
    """A ledger at schema version 4 holding records written before resources were kept
    once (whole sealed bytes, a resource column each), opened by this otaudit (migrated)."""
    sealed = sealed_entries(big_request("old", 20))
    entries = [Entry(e.sealed, e.leaf, e.dedup_key, e.columns) for e in sealed]
    if store_url.startswith("sqlite:///"):
        path = sqlite_path(store_url)
        old: Store = SQLiteStore(path, migrate=False)
    else:
        old = PostgresStore(store_url)
    try:
        _migrate_to(old, 4)
        _append_as_version_4(old, store_url, entries)
        old.migrate(online_only=False)  # as `otaudit migrate` does
    finally:
        old.close()
    store = datadir.open_store(tmp_path, store_url, readonly=False)
    try:
        yield store, entries
    finally:
        store.close()


def _migrate_to(store: Store, version: int) -> None:
    for m in store.migrations[:version]:
        if isinstance(store, SQLiteStore):
            conn = sqlite3.connect(store.path, isolation_level=None)
            try:
                conn.executescript("BEGIN;" + m.script + "COMMIT;")
                if m.version >= 2:
                    conn.execute(
                        "INSERT INTO schema_migrations VALUES (?, ?, '')",
                        (m.version, m.description),
                    )
            finally:
                conn.close()
        else:
            assert isinstance(store, PostgresStore)
            with psycopg.connect(store.dsn, autocommit=True) as pg, pg.transaction():
                pg.execute(m.script)
                pg.execute(
                    "INSERT INTO otaudit.schema_migrations VALUES (%s, %s, now())",
                    (m.version, m.description),
                )


def _append_as_version_4(store: Store, store_url: str, entries: list[Entry]) -> None:
    """Append as otaudit did before migration 5: rows without resource_hash/resource_at."""
    plan = plan_append(entries, 0, set(), [])
    assert not plan.resources
    rows = [row[:-2] for row in plan.records]
    names = f"seq, sealed, dedup_key, {', '.join(COLUMN_NAMES)}"
    if isinstance(store, SQLiteStore):
        marks = ", ".join("?" * len(rows[0]))
        conn = sqlite3.connect(store.path, isolation_level=None)
        try:
            conn.execute("BEGIN")
            conn.executemany(f"INSERT INTO records ({names}) VALUES ({marks})", rows)
            conn.executemany("INSERT INTO tree_nodes VALUES (?, ?, ?)", plan.nodes)
            conn.execute("COMMIT")
        finally:
            conn.close()
        return
    with psycopg.connect(store_url) as pg:
        info = TypeInfo.fetch(pg, "otaudit.hstore")
        assert info is not None
        register_hstore(info, pg)
        at = [3 + COLUMN_NAMES.index("attributes"), 3 + COLUMN_NAMES.index("resource")]
        values = []
        for row in rows:
            cells = list(row)
            for i in at:
                cells[i] = orjson.loads(cells[i])
            values.append(cells)
        marks = ", ".join(["%s"] * len(rows[0]))
        quoted = names.replace("timestamp", '"timestamp"')
        with pg.cursor() as cur:
            cur.executemany(f"INSERT INTO otaudit.records ({quoted}) VALUES ({marks})", values)
            cur.executemany("INSERT INTO otaudit.tree_nodes VALUES (%s, %s, %s)", plan.nodes)


def test_a_ledger_written_before_the_migration_keeps_verifying(
    old_ledger: tuple[Store, list[Entry]], store_url: str, request: pytest.FixtureRequest
) -> None:
    store, old_entries = old_ledger
    assert store.schema_version() == store.migrations[-1].version
    new_entries = sealed_entries(big_request("new", 20))
    store.append(new_entries)
    key = SigningKey.generate(ORIGIN)
    store.set_meta("origin", ORIGIN)
    sign(store, key, ORIGIN)
    stored = list(store.iter_records())
    assert [r.resource is None for r in stored] == [True] * 20 + [False] * 20
    assert [r.sealed for r in stored] == [e.sealed for e in old_entries + new_entries]
    assert verify_ledger(store, VerifierKey.parse(key.verifier_key())).records == 40
    # Queries see the resource column of both kinds of rows alike.
    shown = otaudit("sql", "--store", store_url, *query_args(store_url, request), "--format",
                    "csv", "SELECT seq, resource['host.blob'] AS blob FROM audit_records"
                    " ORDER BY seq")  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    blobs = [line.split(",")[1] for line in shown.stdout.splitlines()[1:]]
    assert blobs == [blob("old")] * 20 + [blob("new")] * 20


def test_user_sql_reads_resources_only_through_the_views(
    any_store: Store, store_url: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The kept-once resources are read through the views; the table itself is not
    readable (its bodies) nor countable by user SQL."""
    any_store.append(sealed_entries(big_request("sql", 5)))
    args = ["--store", store_url, "--data", str(tmp_path / "data"), *query_args(store_url, request)]
    statement = "SELECT count(*) AS n, count(DISTINCT resource) AS r FROM audit_spans"
    counted = otaudit("sql", *args, "--format", "csv", statement)
    assert counted.returncode == 0, counted.stderr
    assert counted.stdout.splitlines() == ["n,r", "5,1"]
    for statement in ("SELECT body FROM resources", "SELECT count(*) FROM resources",
                      "SELECT 1 FROM otaudit.resources"):  # fmt: skip
        refused = otaudit("sql", *args, statement)
        assert refused.returncode != 0, (statement, refused.stdout)
        assert "SQL error" in refused.stderr, refused.stderr
