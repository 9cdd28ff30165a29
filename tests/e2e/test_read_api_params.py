"""Hostile but well-formed read API requests (issue 14, finding 13).

Before: ``limit=²`` (``str.isdigit`` true, ``int`` refuses), ``page_size: "²"``,
a 5,000-digit ``limit`` (``int`` refuses over 4,300 digits) and a cursor
naming position 2^63 answered 500 with a traceback; anyone could write a
cursor (it was unsigned); HEAD on records ran the search and recorded a read.
Now every one is a 400 naming the parameter (or 405 for HEAD), and a cursor
that this server did not sign is refused.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from otaudit.demo import free_port
from otaudit.errors import ConfigError
from otaudit.readapi.cursor import KEY_FILE, CursorSigner, load_cursor_key
from otaudit.readapi.params import BadRequest
from support import Server, audit_request, post

RECORDS = 12


@dataclass
class Api:
    server: Server
    base: str

    def records(self, query: str) -> httpx.Response:
        return httpx.get(f"{self.base}/records?{query}", timeout=30)

    def sql(self, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(f"{self.base}/sql", json=body, timeout=30)

    def reads(self) -> int:
        """How many reads the ledger holds (this count is one more)."""
        count = "SELECT count(*) FROM audit_logs WHERE action = 'audit_log.query'"
        response = self.sql({"sql": count})
        assert response.status_code == 200, response.text
        return int(response.json()["rows"][0][0])


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    port = free_port()
    directory = tmp_path_factory.mktemp("read-api-params")
    server = Server(directory / "data", extra_args=["--read-api", f"127.0.0.1:{port}"]).start()
    assert post(server, audit_request(RECORDS)).status_code == 200
    yield Api(server, f"http://127.0.0.1:{port}/api/v1")
    if server.proc is not None:
        server.stop()


def _refused(response: httpx.Response, code: str, *words: str) -> str:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == code
    for word in words:
        assert word in error["message"]
    assert len(error["message"]) < 400  # the client's value is quoted cut, not whole
    return str(error["message"])


BAD_LIMITS = {
    "superscript": "²",
    "arabic-indic": "%D9%A1%D9%A2",
    "fullwidth": "%EF%BC%95",
    "plus": "+5",
    "minus": "-1",
    "lead-space": "%205",
    "trail-space": "5%20",
    "exponent": "1e2",
    "hex": "0x10",
    "empty": "",
    "5000-digits": "9" * 5000,
    "21-digits": "0" * 21 + "5",
    "over": "1001",
    "zero": "0",
}
BAD_SQL_NUMBERS = {
    "superscript": "²",
    "arabic-indic": "\u0661\u0662",
    "fullwidth": "\uff15",
    "space": " 5",
    "5000-digits": "9" * 5000,
    "true": True,
    "float": 1.5,
    "negative": -1,
    "zero": 0,
    "huge": 10**9,
    "list": [5],
    "null": None,
}


@pytest.mark.parametrize("value", BAD_LIMITS.values(), ids=BAD_LIMITS.keys())
def test_limit_must_be_ascii_digits_in_range(api: Api, value: str) -> None:
    message = _refused(api.records(f"limit={value}"), "bad_parameter", "limit", "1 to 1000")
    if value == "9" * 5000:
        assert "(5000 characters)" in message


@pytest.mark.parametrize("field", ["page_size", "timeout_ms"])
@pytest.mark.parametrize("value", BAD_SQL_NUMBERS.values(), ids=BAD_SQL_NUMBERS.keys())
def test_sql_numbers_must_be_integers_in_range(api: Api, field: str, value: object) -> None:
    _refused(api.sql({"sql": "SELECT 1", field: value}), "bad_parameter", field)


def test_digit_strings_still_work(api: Api) -> None:
    assert len(api.records("limit=0005").json()["records"]) == 5
    assert api.sql({"sql": "SELECT 1", "page_size": "10", "timeout_ms": 5000}).status_code == 200


def test_a_long_time_is_refused_by_name(api: Api) -> None:
    _refused(api.records("since=" + "9" * 5000 + "d"), "bad_parameter", "since", "at most 64")


_DIGEST_OF_NOTHING = hashlib.sha256(b"").hexdigest()[:16]  # of a search without filters


def _unsigned(kind: str, position: int, asked: str) -> str:
    """A cursor in the old, unsigned format, as anyone could write one."""
    digest = hashlib.sha256(asked.encode()).hexdigest()[:16]
    raw = json.dumps({"k": kind, "p": position, "d": digest}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize("position", [2**63, 2**64, 5, -1])
def test_forged_record_cursors_are_refused(api: Api, position: int) -> None:
    cursor = _unsigned("records", position, "")
    _refused(api.records(f"cursor={cursor}"), "bad_cursor", "not signed by this server")


def test_forged_sql_cursor_is_refused(api: Api) -> None:
    cursor = _unsigned("sql", 2**63, "SELECT 1")
    _refused(api.sql({"sql": "SELECT 1", "cursor": cursor}), "bad_cursor", "not signed")


def _next_cursor(api: Api) -> str:
    cursor = api.records("limit=2").json()["next_cursor"]
    assert isinstance(cursor, str)
    return cursor


def test_edited_cursors_are_refused(api: Api) -> None:
    payload, _, mac = _next_cursor(api).partition(".")
    moved = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    moved["p"] = 2**63
    edited = base64.urlsafe_b64encode(json.dumps(moved).encode()).decode().rstrip("=")
    for cursor in (f"{edited}.{mac}", payload, f"{payload}.", f"{payload}.{mac[:-2]}",
                   f"{payload}.{mac}!", "x" * 10_000):  # fmt: skip
        message = _refused(api.records(f"cursor={cursor}"), "bad_cursor")
        assert "cursor" in message


def test_head_does_no_search_and_records_no_read(api: Api) -> None:
    before = api.reads()
    head = httpx.head(f"{api.base}/records?limit=1", timeout=30)
    assert head.status_code == 405
    assert head.headers["allow"] == "GET"
    assert head.content == b""
    assert api.reads() == before + 1  # only the count itself


def test_the_server_signs_with_the_key_in_its_data_directory(api: Api) -> None:
    # The key is read from the data directory, so a cursor outlives a restart.
    key = api.server.data / KEY_FILE
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    made = CursorSigner(load_cursor_key(api.server.data)).encode("records", 9, _DIGEST_OF_NOTHING)
    page = api.records(f"limit=2&cursor={made}")
    assert page.status_code == 200, page.text
    assert [r["seq"] for r in page.json()["records"]] == [10, 11]


def test_the_key_file_is_made_once_and_checked(tmp_path: Path) -> None:
    key = load_cursor_key(tmp_path)
    assert load_cursor_key(tmp_path) == key
    made = CursorSigner(key).encode("records", 7, "d")
    assert CursorSigner(load_cursor_key(tmp_path)).decode(made, "records", "d") == 7
    with pytest.raises(BadRequest, match="not signed by this server"):
        CursorSigner().decode(made, "records", "d")  # another process's own key
    (tmp_path / KEY_FILE).write_text("not hex\n")
    with pytest.raises(ConfigError, match="must hold 64 hexadecimal digits"):
        load_cursor_key(tmp_path)
    (tmp_path / KEY_FILE).chmod(0o644)
    with pytest.raises(ConfigError, match="allows group or other access"):
        load_cursor_key(tmp_path)
