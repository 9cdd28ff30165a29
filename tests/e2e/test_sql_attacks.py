"""User SQL attacks through the read API of a real server, on both stores.

A holder of a read token once wrote rows into the PostgreSQL ledger that no
one could remove, read the token table, and (as a superuser login) ran a
program on the database host; on SQLite a single query took the ingest
server to 3.6 GB. Each attack here goes through ``POST /api/v1/sql`` of a
running ``otaudit serve``; afterwards the ledger verifies, nothing new but
the records of the reads is in it, and the server still takes exports.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from conftest import query_args
from otaudit.demo import free_port
from pgcluster import PgServer
from support import Server, audit_request, otaudit, post

ATTACKS = [
    "SELECT 1; COMMIT; BEGIN READ WRITE; INSERT INTO otaudit.meta VALUES ('x', 'y'); COMMIT",
    "SELECT \"set_config\"('role', 'otaudit_writer', true),"
    " query_to_xml('select id, hash from otaudit.tokens', true, true, '')",
    "SELECT 1; COPY (SELECT 1) TO PROGRAM 'touch /tmp/otaudit-sql-pwned'",
    "WITH x AS (INSERT INTO otaudit.meta VALUES ('x', 'y') RETURNING 1) SELECT * FROM x",
    "SELECT count(*) FROM tokens",
    "SELECT count(*) FROM meta",
]


@dataclass
class ReadApi:
    server: Server
    url: str
    store_args: list[str]


def _serve(tmp_path: Path, store_args: list[str]) -> ReadApi:
    port = free_port()
    server = Server(tmp_path / "data", extra_args=[*store_args, "--read-api", f"127.0.0.1:{port}"])
    server.start()
    assert post(server, audit_request(3)).status_code == 200
    return ReadApi(server, f"http://127.0.0.1:{port}/api/v1/sql", store_args)


@pytest.fixture(params=["sqlite", "postgresql"])
def read_api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ReadApi]:
    store_args: list[str] = []
    if request.param == "postgresql":
        url = request.getfixturevalue("pg").database()
        store_args = ["--store", url]
    api = _serve(tmp_path, [*store_args, *query_args(store_args[-1] if store_args else None,
                                                        request)])  # fmt: skip
    api.store_args = store_args
    yield api
    if api.server.proc is not None:
        api.server.stop()


def _sql(api: ReadApi, statement: str, **extra: object) -> httpx.Response:
    return httpx.post(api.url, json={"sql": statement, **extra}, timeout=60)


def test_attacks_get_400_and_the_ledger_stays_as_it_was(read_api: ReadApi) -> None:
    for attack in ATTACKS:
        response = _sql(read_api, attack)
        assert response.status_code == 400, (attack, response.text)
        assert response.json()["error"]["code"] == "bad_sql"
    assert not Path("/tmp/otaudit-sql-pwned").exists()
    rows = _sql(read_api, "SELECT pipeline, count(*) AS n FROM audit_records"
                          " GROUP BY pipeline ORDER BY pipeline").json()["rows"]  # fmt: skip
    assert rows == [["otaudit", len(ATTACKS)], ["otlp", 3]]  # the exports and the reads only
    assert post(read_api.server, audit_request(2)).status_code == 200
    assert read_api.server.stop() == 0
    verified = otaudit("verify", "--data", str(read_api.server.data), *read_api.store_args)
    assert verified.returncode == 0, verified.stderr


def _rss_mib(server: Server) -> int:
    assert server.proc is not None
    status = Path(f"/proc/{server.proc.pid}/status").read_text()
    line = next(x for x in status.splitlines() if x.startswith("VmRSS:"))
    return int(line.split()[1]) // 1024


def test_runaway_queries_do_not_touch_the_server(read_api: ReadApi) -> None:
    big = "printf('%.*c', 900000000, 'x')"
    blobs = "randomblob(1000000)"
    if read_api.store_args:  # PostgreSQL's own spelling of the same queries
        big, blobs = "repeat('x', 900000000)", "convert_to(repeat('x', 1000000), 'UTF8')"
    before = _rss_mib(read_api.server)
    endless = _sql(
        read_api,
        f"WITH RECURSIVE r(x) AS (SELECT {blobs} UNION ALL SELECT {blobs} FROM r) SELECT x FROM r",
        page_size=10_000,
    )
    huge = _sql(read_api, f"SELECT length({big})", timeout_ms=3000)
    # Bounded: a page cut short at the byte cap, or a clear error; never a dead server.
    assert endless.status_code == 200, endless.text
    assert endless.json()["next_cursor"] is not None
    assert huge.status_code in (200, 400), huge.text
    assert _rss_mib(read_api.server) < before + 200
    assert post(read_api.server, audit_request(2)).status_code == 200
    assert httpx.get(read_api.server.http_url + "/healthz", timeout=10).status_code == 200


def test_a_login_that_can_write_is_refused_for_user_sql(pg: PgServer, tmp_path: Path) -> None:
    api = _serve(tmp_path, ["--store", pg.database()])  # a superuser login, no --query-store
    try:
        response = _sql(api, "SELECT count(*) FROM audit_records")
        assert response.status_code == 400
        message = response.json()["error"]["message"]
        assert "refusing to run user SQL as 'postgres': it is a superuser" in message
        assert "--query-store" in message
        records = httpx.get(api.url.replace("/sql", "/records"), timeout=10)
        assert records.status_code == 200  # search runs otaudit's own statements: unaffected
    finally:
        api.server.stop()


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_a_busy_query_worker_dies_with_a_killed_server(tmp_path: Path) -> None:
    api = _serve(tmp_path, [])
    assert api.server.proc is not None
    server_pid = api.server.proc.pid
    endless = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n)"

    def ask() -> None:
        with contextlib.suppress(httpx.HTTPError):  # the server dies under it
            _sql(api, endless + " SELECT count(*) FROM n", timeout_ms=60_000)

    asking = threading.Thread(target=ask, daemon=True)
    workers: list[int] = []
    deadline = time.monotonic() + 10
    asking.start()
    while not workers and time.monotonic() < deadline:
        time.sleep(0.05)
        workers = [
            pid
            for pid in _children(server_pid)
            if b"otaudit.sqlworker" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
    assert len(workers) == 1
    time.sleep(0.5)  # the worker is inside the statement now
    api.server.stop(signal.SIGKILL)
    deadline = time.monotonic() + 5
    while _alive(workers[0]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(workers[0]), "the query worker outlived its server"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
