"""The auditor console over HTTP, against a real ``otaudit serve --console`` with tokens:
sessions and CSRF, the records page's filters, pages and export, triage, SQL errors, hostile
attribute values, the audit of every page view, and the proof the in-browser verifier
checks."""

from __future__ import annotations

import base64
import io
import re
import tarfile
import time
from collections.abc import Iterator

import httpx
import pytest

from conftest import STORE_KINDS, new_store_url, query_args
from console_server import (
    COLUMNS,
    CONFIG_RECORDS,
    PAYLOADS,
    Console,
    start_console,
)
from console_server import csrf as _csrf
from console_server import seqs as _seqs
from console_server import sql as _sql
from console_server import token as _token
from otaudit import merkle
from support import otaudit


@pytest.fixture(scope="module", params=STORE_KINDS)
def console(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:  # fmt: skip
    directory = tmp_path_factory.mktemp("console")
    store_args: list[str] = []
    sql_args: list[str] = []
    if request.param != "sqlite":
        url = new_store_url(request.param, directory, request)
        store_args = ["--store", url]
        sql_args = query_args(url, request)
    with start_console(directory, store_args, sql_args) as started:
        yield started


def test_signin_sets_a_strict_cookie_and_pages_need_it(console: Console) -> None:
    anonymous = httpx.get(f"{console.base}/console/records", timeout=30)
    assert anonymous.status_code == 303
    assert anonymous.headers["location"] == "/console/signin"
    assert "default-src 'none'" in anonymous.headers["content-security-policy"]
    wrong = httpx.post(f"{console.base}/console/signin", timeout=30,
                       data={"token": "otaudit_0123456789ab_" + "A" * 43})  # fmt: skip
    assert wrong.status_code == 401
    assert "set-cookie" not in wrong.headers
    right = httpx.post(f"{console.base}/console/signin", data={"token": console.tokens["read"]})
    assert right.status_code == 303
    cookie = right.headers["set-cookie"]
    assert cookie.startswith("otaudit_session=")
    for attribute in ("HttpOnly", "SameSite=strict", "Path=/console/"):
        assert attribute.lower() in cookie.lower(), cookie
    assert console.tokens["read"] not in cookie
    ingest = httpx.post(f"{console.base}/console/signin", data={"token": console.tokens["ingest"]})
    assert ingest.status_code == 401


def test_a_post_without_its_csrf_token_is_refused(console: Console) -> None:
    with console.client() as client:
        assert client.post("/console/signout", data={}).status_code == 403
        assert client.post("/console/signout", data={"csrf": "0" * 64}).status_code == 403
        page = client.get("/console/records")
        out = client.post("/console/signout", data={"csrf": _csrf(page.text)})
        assert out.status_code == 303
        assert 'otaudit_session=""' in out.headers["set-cookie"]


def test_a_revoked_token_ends_its_session(console: Console) -> None:
    data = console.server.data
    token = _token(data, console.store_args, "read")
    client = httpx.Client(base_url=console.base, timeout=30)
    assert client.post("/console/signin", data={"token": token}).status_code == 303
    assert client.get("/console/settings").status_code == 200
    revoke = otaudit("token", "revoke", "--data", str(data), *console.store_args[:2],
                     token.split("_")[1])  # fmt: skip
    assert revoke.returncode == 0, revoke.stderr
    gone = client.get("/console/settings")
    assert gone.status_code == 303
    assert gone.headers["location"] == "/console/signin"
    client.close()


def test_records_filter_page_past_a_thousand_and_bookmark(console: Console) -> None:
    query = {"range": "custom", "since": console.since, "action": "config.update", "size": "500"}
    with console.client() as client:
        first = client.get("/console/records", params=query)
        assert first.status_code == 200, first.text
        seen = _seqs(first.text)
        page = first.text
        while (link := re.search(r'id="next-page" href="([^"]+)"', page)) is not None:
            page = client.get(link[1].replace("&amp;", "&")).text
            seen += _seqs(page)
        assert len(seen) == CONFIG_RECORDS > 1000
        assert seen == sorted(seen, reverse=True)
        again = client.get(str(first.url))  # the bookmark: the same URL, the same rows
        assert _seqs(again.text) == _seqs(first.text)
        by_actor = client.get("/console/records", params={**query, "sort": "actor", "dir": "asc",
                                                          "name": "STEP 1"})  # fmt: skip
        actors = re.findall(r'<tr data-seq="\d+">\s*<td>.*?</td>\s*(?:<td>.*?</td>\s*){3}'
                            r"<td>(\w*)</td>", by_actor.text)  # fmt: skip
        assert actors == sorted(actors) and set(actors) == {"alice", "bob", "carol"}
        failures = client.get("/console/records", params={**query, "result": "failure"})
        assert len(_seqs(failures.text)) == CONFIG_RECORDS // 10
        bad = client.get("/console/records", params={**query, "cursor": "forged.cursor"})
        assert bad.status_code == 400


def test_export_is_the_whole_filter_as_otaudit_sql_prints_it(console: Console) -> None:
    query = {"range": "custom", "since": console.since, "action": "config.update"}
    with console.client() as client:
        exported = client.get("/console/records/export.csv", params=query)
        lines = client.get("/console/records/export.jsonl", params=query).text.splitlines()
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    since_ns = int(time.mktime(time.strptime(console.since, "%Y-%m-%dT%H:%M:%SZ"))
                   - time.timezone) * 1_000_000_000  # fmt: skip
    expected = _sql(console, f"SELECT {COLUMNS} FROM audit_records WHERE action = 'config.update'"
                             f" AND time_unix_nano >= {since_ns} ORDER BY seq DESC")  # fmt: skip
    assert exported.text.count("\n") == CONFIG_RECORDS + 1
    if not console.store_args:  # SQLite: the very bytes (PostgreSQL's view types its columns)
        assert exported.content == expected.encode()
    seqs = [line.split(",", 1)[0] for line in exported.text.splitlines()]
    assert seqs == [line.split(",", 1)[0] for line in expected.splitlines()]
    assert len(lines) == CONFIG_RECORDS


def test_triage_is_sealed_for_admin_tokens_only(console: Console) -> None:
    with console.client("admin") as admin:
        for _ in range(100):  # the detector judges the records in a process of its own
            listed = admin.get(
                "/console/alerts", params={"state": "all", "rule": "privilege_escalation"}
            ).text
            ids = re.findall(r'href="/console/alerts/([0-9a-f]+)"', listed)
            if ids:
                break
            time.sleep(0.1)
        assert ids, listed
        page = admin.get(f"/console/alerts/{ids[0]}")
        assert "privilege_escalation" in page.text
        form = {"csrf": _csrf(page.text), "decision": "resolved", "note": "checked with bob"}
        assert admin.post(f"/console/alerts/{ids[0]}/ack", data={"decision": "resolved",
                          "note": "x"}).status_code == 403  # fmt: skip
        done = admin.post(f"/console/alerts/{ids[0]}/ack", data=form)
        assert done.status_code == 303
        assert ">resolved<" in admin.get(f"/console/alerts/{ids[0]}").text
    with console.client("read") as reader:
        page = reader.get(f"/console/alerts/{ids[0]}")
        refused = reader.post(f"/console/alerts/{ids[0]}/ack",
                              data={**form, "csrf": _csrf(page.text)})  # fmt: skip
        assert refused.status_code == 403
    sealed = _sql(console, "SELECT target, attributes['audit.alert.decision'] FROM audit_logs"
                           " WHERE action = 'otaudit.alert_triage'")  # fmt: skip
    assert sealed.splitlines()[1:] == [f"{ids[0]},resolved"]


def test_the_sql_page_shows_errors_as_the_cli_does(console: Console) -> None:
    with console.client() as client:
        bad = client.get("/console/sql", params={"q": "SELEC 1"})
        good = client.get("/console/sql", params={"q": "SELECT count(*) AS n FROM audit_spans"})
    assert bad.status_code == 400
    assert "otaudit: error: SQL error:" in bad.text
    assert good.status_code == 200 and "<th>n</th>" in good.text


def test_hostile_values_are_inert_on_every_page(console: Console) -> None:
    query = {"range": "custom", "since": console.since, "action": "xss.probe"}
    with console.client() as client:
        listing = client.get("/console/records", params=query)
        seqs = _seqs(listing.text)
        assert len(seqs) == len(PAYLOADS)
        hostile = "SELECT name, actor, attributes FROM audit_records WHERE action = 'xss.probe'"
        pages = [listing, *(client.get(f"/console/records/{seq}") for seq in seqs),
                 client.get("/console/sql", params={"q": hostile}),
                 client.get("/console/records", params={**query, "actor": PAYLOADS[0]}),
                 client.get("/console/sql", params={"q": f"SELECT '{PAYLOADS[1]}'"})]  # fmt: skip
    for page in pages:
        assert page.status_code == 200, page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        html = page.text
        assert "<script>alert" not in html and "<img src=x" not in html
        assert not re.search(r"""(href|src|action)\s*=\s*["']?\s*javascript:""", html, re.I)
        assert not re.search(r"<script(?![^>]*src=\"/console/static/)", html)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in "".join(page.text for page in pages)


def test_every_page_view_is_an_audited_read(console: Console) -> None:
    probe = f"probe-{time.time_ns()}"
    with console.client() as client:
        assert client.get("/console/records", params={"actor": probe}).status_code == 200
        assert client.get("/console/").status_code == 200
    found = _sql(console, "SELECT attributes['audit.query.kind'] AS kind, actor FROM audit_logs"
                          " WHERE action = 'audit_log.query'"
                          f" AND attributes['audit.query.text'] LIKE '%{probe}%'")  # fmt: skip
    assert found.splitlines()[1:] == [f"console,{console.tokens['read'].split('_')[1]}"]
    overview = _sql(console, "SELECT count(*) FROM audit_logs WHERE action = 'audit_log.query'"
                    " AND attributes['audit.query.text'] LIKE 'GET /console/ (%'")  # fmt: skip
    assert int(overview.splitlines()[1]) >= 1


def test_the_proof_checks_against_the_signed_checkpoint(console: Console) -> None:
    with console.client() as client:
        proof = client.get("/console/api/proof/5").json()
        missing = client.get("/console/api/proof/100000000")
        key = client.get("/console/api/verifier-key").json()["verifier_key"]
    assert missing.status_code == 404 and "error" in missing.json()
    sealed = base64.b64decode(proof["leaf_input_b64"])
    root = base64.b64decode(proof["checkpoint"].splitlines()[2])
    merkle.verify_inclusion(merkle.leaf_hash(sealed), proof["seq"], proof["tree_size"],
                            [bytes.fromhex(h) for h in proof["hashes"]], root)  # fmt: skip
    assert proof["checkpoint"].split("\n", 1)[0] == key.split("+")[0]
    assert f"\n{proof['tree_size']}\n" in proof["checkpoint"]


def test_forms_from_another_site_are_refused(console: Console) -> None:
    with console.client() as client:
        csrf = _csrf(client.get("/console/records").text)
        evil = client.post("/console/signout", data={"csrf": csrf},
                           headers={"Origin": "https://evil.example"})  # fmt: skip
        assert evil.status_code == 403
    login = httpx.post(f"{console.base}/console/signin", data={"token": console.tokens["read"]},
                       headers={"Origin": "https://evil.example"})  # fmt: skip
    assert login.status_code == 403 and "set-cookie" not in login.headers
    # Under Referrer-Policy: no-referrer a browser sends "Origin: null" for the console's own
    # forms, with Sec-Fetch-Site: same-origin; "null" from elsewhere is refused.
    form = {"token": console.tokens["read"]}
    for headers, status in (
        ({"Origin": "null", "Sec-Fetch-Site": "same-origin"}, 303),
        ({"Origin": "null"}, 403),
        ({"Origin": "null", "Sec-Fetch-Site": "cross-site"}, 403),
        ({"Sec-Fetch-Site": "same-site"}, 403),
        ({"Origin": console.base, "Sec-Fetch-Site": "cross-site"}, 403),
    ):
        answer = httpx.post(f"{console.base}/console/signin", data=form, headers=headers)
        assert answer.status_code == status, (headers, answer.text)


def test_saved_views_and_queries_are_kept_per_token(console: Console) -> None:
    view = "range=7d&actor=alice&name=step+1&sort=actor&dir=asc&size=100"
    with console.client() as client:
        csrf = _csrf(client.get("/console/records").text)
        form = {"csrf": csrf, "name": "alice's steps", "query": view}
        saved = client.post("/console/records/views", data=form)
        assert saved.status_code == 303
        page = client.get(saved.headers["location"])
        assert "alice&#39;s steps" in page.text and 'href="/console/records?range=7d' in page.text
        statement = "SELECT count(*) FROM audit_spans"
        kept = client.post("/console/sql/queries",
                           data={"csrf": csrf, "name": "spans", "q": statement})  # fmt: skip
        assert kept.status_code == 303
        assert ">spans</a>" in client.get("/console/sql").text
    with console.client("admin") as other:
        assert "alice&#39;s steps" not in other.get("/console/records").text


def test_the_record_and_settings_pages_carry_the_verifier_elements(console: Console) -> None:
    with console.client() as client:
        record = client.get("/console/records/3").text
        settings = client.get("/console/settings").text
        key = client.get("/console/api/verifier-key").json()["verifier_key"]
    assert '<button id="verify" data-seq="3">Verify in this browser</button>' in record
    assert '<ol id="verify-steps"></ol>' in record and '<p id="verify-verdict"></p>' in record
    assert '<script src="/console/static/verify.js" defer></script>' in record
    assert record.count('<li class="current">') == 1  # seqs 0..2 share one trace
    assert 'id="pinned-key"' in settings and 'id="pin-key"' in settings
    assert key in settings


def test_an_evidence_pack_downloads_whole(console: Console) -> None:
    with console.client() as client:
        csrf = _csrf(client.get("/console/evidence").text)
        pack = client.post("/console/evidence", data={"csrf": csrf, "from": "1d", "to": ""})
    assert pack.status_code == 200, pack.text[:2000]
    assert pack.headers["content-type"] == "application/gzip"
    with tarfile.open(fileobj=io.BytesIO(pack.content), mode="r:gz") as tar:
        names = tar.getnames()
    assert any(name.endswith("/MANIFEST") for name in names), names
