"""The HTTP read API, as a client sees it: every response checked against its OpenAPI document."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_spec
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from conftest import STORE_KINDS, new_store_url, query_args
from otaudit.demo import free_port
from support import Server, audit_request, otaudit, post

RECORDS = 30


@dataclass
class Api:
    """A running server with the read API, and the OpenAPI document it serves."""

    server: Server
    base: str
    spec: dict[str, Any]
    store_args: list[str]

    def check(self, response: httpx.Response, status: int, schema: str) -> Any:
        """Assert the status and that the body matches the named component schema."""
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/json"
        document = response.json()
        registry = Registry().with_resource("urn:otaudit", DRAFT202012.create_resource(self.spec))
        Draft202012Validator(
            {"$ref": f"urn:otaudit#/components/schemas/{schema}"}, registry=registry
        ).validate(document)
        return document


@pytest.fixture(scope="module", params=STORE_KINDS)
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    directory = tmp_path_factory.mktemp("read-api")
    store_args: list[str] = []
    sql_args: list[str] = []
    if request.param != "sqlite":
        url = new_store_url(request.param, directory, request)
        store_args = ["--store", url]
        sql_args = query_args(url, request)
    port = free_port()
    server = Server(
        directory / "data", extra_args=[*store_args, *sql_args, "--read-api", f"127.0.0.1:{port}"]
    )
    server.start()
    assert post(server, audit_request(RECORDS)).status_code == 200
    base = f"http://127.0.0.1:{port}/api/v1"
    spec = httpx.get(f"{base}/openapi.json", timeout=10).json()
    yield Api(server, base, spec, store_args)
    server.stop()


def test_the_openapi_document_is_valid(api: Api) -> None:
    validate_spec(api.spec)  # raises on any violation of OpenAPI 3.1
    paths = {"/api/v1/records", "/api/v1/sql", "/api/v1/schema", "/api/v1/openapi.json"}
    assert set(api.spec["paths"]) == paths


def test_the_schema_matches_its_document(api: Api) -> None:
    schema = api.check(httpx.get(f"{api.base}/schema", timeout=10), 200, "Schema")
    assert "audit_records" in schema["views"]


def test_records_page_through_with_cursors(api: Api) -> None:
    seen: list[int] = []
    query = {"action": "config_change", "since": "3650d", "limit": "7"}
    pages = 0
    while True:
        response = httpx.get(f"{api.base}/records", params=query, timeout=30)
        page = api.check(response, 200, "RecordPage")
        assert len(page["records"]) <= 7
        seen += [r["seq"] for r in page["records"]]
        pages += 1
        if page["next_cursor"] is None:
            break
        query["cursor"] = page["next_cursor"]
    assert seen == list(range(RECORDS))
    assert pages == 5
    one = api.check(httpx.get(f"{api.base}/records", params={"actor": "nobody"}, timeout=30),
                    200, "RecordPage")  # fmt: skip
    assert one == {"records": [], "next_cursor": None}


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("limit=0", "limit must be an integer from 1 to 1000"),
        ("limit=many", "limit must be an integer"),
        ("actr=alice", "unknown parameter 'actr'"),
        ("since=last+week", "since: 'last week' is neither RFC 3339 nor a duration"),
        ("cursor=not-a-cursor", "cursor is not one this API returned"),
    ],
)
def test_bad_record_queries(api: Api, query: str, message: str) -> None:
    error = api.check(httpx.get(f"{api.base}/records?{query}", timeout=30), 400, "Error")
    assert message in error["error"]["message"]


def test_a_cursor_belongs_to_its_query(api: Api) -> None:
    page = api.check(httpx.get(f"{api.base}/records?limit=2", timeout=30), 200, "RecordPage")
    query = {"limit": "2", "actor": "alice", "cursor": page["next_cursor"]}
    other = httpx.get(f"{api.base}/records", params=query, timeout=30)
    assert api.check(other, 400, "Error")["error"]["code"] == "bad_cursor"


def _sql(api: Api, body: dict[str, Any], status: int = 200) -> Any:
    response = httpx.post(f"{api.base}/sql", json=body, timeout=30)
    return api.check(response, status, "SqlResult" if status == 200 else "Error")


def test_sql_pages_and_the_article_query(api: Api) -> None:
    statement = (
        "SELECT seq, actor, attributes['audit.action'] AS action FROM audit_spans ORDER BY seq"
    )
    whole = _sql(api, {"sql": statement})
    assert whole["columns"] == ["seq", "actor", "action"]
    assert whole["rows"][0] == [0, "alice", "config_change"]
    assert (len(whole["rows"]), whole["next_cursor"], whole["truncated"]) == (RECORDS, None, False)
    rows, cursor = [], None
    while True:
        page = _sql(
            api, {"sql": statement, "page_size": 8} | ({"cursor": cursor} if cursor else {})
        )
        rows += page["rows"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert rows == whole["rows"]
    article = (
        "SELECT timestamp, attributes['enduser.id'] AS actor FROM audit_spans "
        "WHERE attributes['audit.action'] = 'role_update' "
        "AND timestamp >= NOW() - INTERVAL '90 days' ORDER BY timestamp DESC;"
    )
    assert _sql(api, {"sql": article})["rows"] == []


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        ({"sql": "SELEC 1"}, "bad_sql", "SQL error: "),
        ({"sql": "DELETE FROM audit_records"}, "bad_sql", "SQL error: "),
        ({"sql": "SELECT * FROM records"}, "bad_sql", "SQL error: "),
        ({"sql": ""}, "bad_parameter", "sql must be a non-empty string"),
        ({"sql": "SELECT 1", "page_size": 0}, "bad_parameter", "page_size must be an integer"),
        ({"sql": "SELECT 1", "limit": 5}, "bad_parameter", "unknown field 'limit'"),
        ({"sql": "SELECT 1", "cursor": 7}, "bad_cursor", "cursor must be a string"),
    ],
)
def test_bad_sql_requests(api: Api, body: dict[str, Any], code: str, message: str) -> None:
    error = _sql(api, body, 400)["error"]
    assert error["code"] == code
    assert message in error["message"]


def test_transport_errors_are_json_too(api: Api) -> None:
    plain = httpx.post(f"{api.base}/sql", content=b"SELECT 1", timeout=30,
                       headers={"content-type": "text/plain"})  # fmt: skip
    assert api.check(plain, 415, "Error")["error"]["code"] == "unsupported_media_type"
    big = httpx.post(f"{api.base}/sql", content=b"{" + b" " * (1 << 20) + b"}", timeout=30,
                     headers={"content-type": "application/json"})  # fmt: skip
    assert api.check(big, 413, "Error")["error"]["code"] == "too_large"
    broken = httpx.post(f"{api.base}/sql", content=b"{not json", timeout=30,
                        headers={"content-type": "application/json"})  # fmt: skip
    assert api.check(broken, 400, "Error")["error"]["code"] == "bad_json"
    assert api.check(httpx.get(f"{api.base}/nothing", timeout=30), 404, "Error")
    assert api.check(httpx.delete(f"{api.base}/records", timeout=30), 405, "Error")


def test_every_read_is_recorded_before_it_is_answered(api: Api) -> None:
    count = "SELECT count(*) AS n FROM audit_logs WHERE action = 'audit_log.query'"
    before = _sql(api, {"sql": count})["rows"][0][0]
    api.check(httpx.get(f"{api.base}/records?limit=1&actor=alice", timeout=30), 200, "RecordPage")
    _sql(api, {"sql": "SELEC 1"}, 400)
    rows = _sql(api, {"sql": (
        "SELECT actor, client_address, result, attributes['audit.query.kind'] AS kind,"
        " attributes['audit.query.text'] AS text FROM audit_logs"
        " WHERE action = 'audit_log.query' ORDER BY seq DESC LIMIT 3"
    )})["rows"]  # fmt: skip
    # The count itself, the search, the failed SQL (newest first, from before this query).
    assert rows == [
        ["anonymous", "127.0.0.1", "failure", "sql", "SELEC 1"],
        ["anonymous", "127.0.0.1", "success", "search",
         "GET /api/v1/records --actor alice"],
        ["anonymous", "127.0.0.1", "success", "sql", count],
    ]  # fmt: skip
    assert _sql(api, {"sql": count})["rows"][0][0] == before + 4


def test_the_ledger_still_verifies(api: Api, tmp_path: Path) -> None:
    result = otaudit("verify", "--data", str(api.server.data), *api.store_args)
    assert result.returncode == 0, result.stderr
    json.dumps(api.spec)
