"""The auditor console in Chromium, against a real ``otaudit serve --console`` with tokens.

What an auditor does, through the pages' own forms and links: sign in with a read token,
filter the Records page, page past the first thousand records, reopen a bookmarked view,
export it as CSV (the very bytes ``otaudit sql`` prints for the same filter), pin the verifier
key and get a green in-browser verification of a record, red when the proof response is
altered on its way (Playwright's request interception); triage an alert as admin and find
the sealed triage record; a bad SQL statement's error; sign-out; forms without their CSRF
token refused; hostile values (in span names, log bodies and attributes) inert on every page.

Screenshots of each page go under the run's base temporary directory (tests/browser.py);
with ``OTAUDIT_SCREENSHOTS_TO_DOCS=1`` the Records, verified Record, Alerts, SQL and
Overview pages are also saved as ``docs/images/console-<page>.png`` (1280x800).
"""

from __future__ import annotations

import base64
import calendar
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Dialog, Page, Route, ViewportSize

from browser import Browser, browser_fixture
from console_server import COLUMNS, CONFIG_RECORDS, PAYLOADS, Console, sql, start_console
from support import otaudit

browser = browser_fixture()

DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
OWN_SCRIPTS = {"/console/static/console.js", "/console/static/verify.js"}
#: The browser's own line for a page answered with an error status (a refusal on purpose).
REFUSED = (r"Failed to load resource: the server responded with a status of 40[03]",)

SQL_EXAMPLE = """SELECT actor, result, count(*) AS changes, min(timestamp) AS first
FROM audit_records
WHERE action = 'config.update'
GROUP BY actor, result
ORDER BY actor, result"""

Proof = dict[str, Any]


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """One server for the module, its ledger holding the config changes (more than a
    thousand), the hostile spans and logs, and a role change that raises an alert."""
    with start_console(tmp_path_factory.mktemp("console-browser"), [], [], logs=True) as started:
        yield started


def _docs(page: Page, name: str) -> None:
    """Save the page's viewport as docs/images/console-<name>.png when asked to."""
    if os.environ.get("OTAUDIT_SCREENSHOTS_TO_DOCS") == "1":
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOCS_IMAGES / f"console-{name}.png"))


def _signin(page: Page, console: Console, scope: str = "read") -> None:
    """Sign in through the form, as a person would."""
    page.set_viewport_size(VIEWPORT)
    page.goto(f"{console.base}/console/signin")
    page.fill("#token", console.tokens[scope])
    with page.expect_navigation():
        page.locator("main form button[type=submit]").click()
    assert page.url == f"{console.base}/console/", page.url
    assert page.locator("#signout").count() == 1


def _follow(page: Page, selector: str) -> None:
    with page.expect_navigation():
        page.click(selector)


def _rows(page: Page) -> list[int]:
    seqs: list[str] = page.locator("#records tbody tr[data-seq]").evaluate_all(
        "rows => rows.map(r => r.dataset.seq)"
    )
    return [int(s) for s in seqs]


def _filter(page: Page, console: Console, action: str, size: str = "500") -> None:
    """Type the filter into the Records page's form and apply it."""
    page.goto(f"{console.base}/console/records")
    page.fill("#since", console.since)
    assert page.locator("#range").input_value() == "custom"  # console.js follows `since`
    page.fill("#f-action", action)
    page.select_option("select[name=size]", size)
    _follow(page, "#apply")


def test_filter_page_past_a_thousand_bookmark_and_export(
    browser: Browser, console: Console
) -> None:
    with browser.page("records") as page:
        _signin(page, console)
        _filter(page, console, "config.update")
        assert "action=config.update" in page.url and "since=" in page.url
        first = _rows(page)
        assert len(first) == 500
        bookmark = page.url
        _docs(page, "records")
        seen = list(first)
        while page.locator("#next-page").count():
            _follow(page, "#next-page")
            assert "cursor=" in page.url
            seen += _rows(page)
        browser.screenshot(page, "records-last-page")
        assert len(seen) == len(set(seen)) == CONFIG_RECORDS > 1000
        assert seen == sorted(seen, reverse=True)
        assert page.locator("#first-page").count() == 1

        reopened = page.context.new_page()  # the bookmark, opened anew
        reopened.goto(bookmark)
        assert _rows(reopened) == first
        assert reopened.locator("#f-action").input_value() == "config.update"
        permalink = reopened.locator("#permalink").get_attribute("href") or ""
        given = {k: v for k, v in httpx.URL(bookmark).params.multi_items() if v}
        assert dict(httpx.URL(permalink).params.multi_items()).items() >= given.items()
        with reopened.expect_download() as info:
            reopened.click("#export-csv")
        download = info.value
        exported = Path(download.path()).read_bytes()
        reopened.close()
    since_ns = calendar.timegm(time.strptime(console.since, "%Y-%m-%dT%H:%M:%SZ")) * 10**9
    expected = sql(console, f"SELECT {COLUMNS} FROM audit_records WHERE action = 'config.update'"
                            f" AND time_unix_nano >= {since_ns} ORDER BY seq DESC")  # fmt: skip
    assert download.suggested_filename.endswith(".csv")
    assert exported.count(b"\n") == CONFIG_RECORDS + 1
    assert exported == expected.encode()


def _wait_for_proof(console: Console, seq: int) -> None:
    """Until a signed checkpoint covers ``seq`` (the server signs on its own schedule)."""
    with console.client() as client:
        for _ in range(200):
            if client.get(f"/console/api/proof/{seq}").status_code == 200:
                return
            time.sleep(0.1)
    raise AssertionError(f"no signed checkpoint covers record {seq}")


def _click_verify(page: Page) -> tuple[str, str]:
    page.click("#verify")
    page.locator("#verify-verdict[data-ms]").wait_for()
    verdict = page.locator("#verify-verdict")
    return verdict.get_attribute("class") or "", verdict.inner_text()


def _tampered(change: Callable[[Proof], None]) -> Callable[[Route], None]:
    def handle(route: Route) -> None:
        response = route.fetch()
        body = response.json()
        change(body)
        route.fulfill(response=response, json=body)

    return handle


def _flip_sealed_byte(body: Proof) -> None:
    raw = bytearray(base64.b64decode(body["leaf_input_b64"]))
    at = raw.index(b"deploy step")
    raw[at] = ord("D")  # one byte, the record still JSON
    body["leaf_input_b64"] = base64.b64encode(bytes(raw)).decode("ascii")


def _flip_proof_hash(body: Proof) -> None:
    first = body["hashes"][0]
    body["hashes"][0] = ("0" if first[0] != "0" else "1") + first[1:]


def test_a_record_verifies_green_in_the_browser_and_red_when_altered(
    browser: Browser, console: Console
) -> None:
    shown = otaudit("key", "show", "--data", str(console.server.data))
    assert shown.returncode == 0, shown.stderr
    key = shown.stdout.strip().splitlines()[-1]
    with browser.page("record-verified") as page:
        _signin(page, console)
        _follow(page, "nav a[href='/console/settings']")
        assert page.locator("#server-key").inner_text() == key
        page.fill("#pinned-key", key)
        page.click("#pin-key")
        assert page.locator("#pin-status").inner_text() == "Pinned."
        assert page.locator("#pinned-now").inner_text() == key
        browser.screenshot(page, "settings")

        _filter(page, console, "config.update", size="50")
        link = page.locator("#records tbody tr[data-seq] a").nth(3)
        seq = int(link.inner_text())
        _wait_for_proof(console, seq)
        _follow(page, f"#records tbody tr[data-seq='{seq}'] a")
        assert page.url == f"{console.base}/console/records/{seq}"
        assert "config.update" in page.locator("#columns").inner_text()
        verdict, text = _click_verify(page)
        assert verdict == "ok", text
        assert text.startswith(f"Verified: record {seq} is leaf {seq} of the tree of"), text
        steps = page.locator("#verify-steps li")
        assert steps.count() >= 6
        assert {steps.nth(i).get_attribute("class") for i in range(steps.count())} == {"ok"}
        _docs(page, "record")

        for name, change in (("leaf", _flip_sealed_byte), ("hash", _flip_proof_hash)):
            page.route("**/console/api/proof/*", _tampered(change))
            page.reload()
            verdict, text = _click_verify(page)
            assert verdict == "bad", (name, text)
            assert text.startswith("NOT verified: ") and "the proof leads to" in text, text
            browser.screenshot(page, f"record-red-{name}")
            page.unroute("**/console/api/proof/*")


def test_an_admin_triages_an_alert_and_the_decision_is_sealed(
    browser: Browser, console: Console
) -> None:
    note = f"checked with bob {time.time_ns()}"
    with browser.page("alerts") as page:
        _signin(page, console, "admin")
        links = page.locator("#alerts tbody a[href^='/console/alerts/']")
        for _ in range(100):  # the detector judges the records in a process of its own
            page.goto(f"{console.base}/console/alerts?state=all&rule=privilege_escalation")
            if links.count():
                break
            time.sleep(0.1)
        assert links.count() >= 1, page.content()
        _docs(page, "alerts")
        alert_id = links.first.inner_text()
        _follow(page, f"#alerts tbody a[href='/console/alerts/{alert_id}']")
        assert "privilege_escalation" in page.locator("main dl").inner_text()
        page.select_option("#triage-form select[name=decision]", "resolved")
        page.fill("#triage-form textarea[name=note]", note)
        _follow(page, "#triage-form button[type=submit]")
        assert page.url == f"{console.base}/console/alerts/{alert_id}"
        assert page.locator("#alert-state").inner_text() == "resolved"
        assert note in page.locator("#triage").inner_text()
    sealed = sql(console, "SELECT target, attributes['audit.alert.decision'],"
                          " attributes['audit.alert.note'] FROM audit_logs"
                          " WHERE action = 'otaudit.alert_triage'")  # fmt: skip
    assert f"{alert_id},resolved,{note}" in sealed.splitlines()[1:], sealed


def test_a_read_token_may_not_triage(browser: Browser, console: Console) -> None:
    with browser.page("alerts-read", allow=REFUSED) as page:
        _signin(page, console)
        links = page.locator("#alerts tbody a[href^='/console/alerts/']")
        for _ in range(100):  # the detector judges the records in a process of its own
            page.goto(f"{console.base}/console/alerts?state=all")
            if links.count():
                break
            time.sleep(0.1)
        alert_id = links.first.inner_text()
        _follow(page, f"#alerts tbody a[href='/console/alerts/{alert_id}']")
        assert page.locator("#triage-form").count() == 0
        assert "needs a token with the admin scope" in page.locator("main").inner_text()
        token = page.locator("input[name=csrf]").first.get_attribute("value") or ""
        fields = {"csrf": token, "decision": "resolved", "note": "a reader's try"}
        assert _post_form(page, f"/console/alerts/{alert_id}/ack", fields) == 403


def test_the_sql_editor_runs_the_example_and_shows_an_error(
    browser: Browser, console: Console
) -> None:
    with browser.page("sql", allow=REFUSED) as page:
        _signin(page, console)
        _follow(page, "nav a[href='/console/sql']")
        page.click("#example")
        assert page.locator("#q").input_value().strip().upper().startswith(("SELECT", "WITH"))
        _follow(page, "#run")
        assert page.locator("#sql-error").count() == 0
        assert page.locator("#result thead th").count() >= 1  # no such change here: no rows
        page.fill("#q", SQL_EXAMPLE)
        _follow(page, "#run")
        assert page.locator("#sql-error").count() == 0
        assert page.locator("#result tbody tr").count() == 6
        _docs(page, "sql")
        page.fill("#q", "SELEC 1")
        _follow(page, "#run")
        error = page.locator("#sql-error").inner_text()
        assert error.startswith("otaudit: error: SQL error:"), error
        assert page.locator("#q").input_value() == "SELEC 1"


def test_the_overview(browser: Browser, console: Console) -> None:
    with browser.page("overview") as page:
        _signin(page, console)
        size = page.locator("#tree-size").inner_text()
        assert int(size.split()[0]) >= CONFIG_RECORDS
        assert page.locator(".charts figure img").count() >= 1
        _docs(page, "overview")


def test_after_sign_out_the_pages_need_sign_in(browser: Browser, console: Console) -> None:
    with browser.page("signed-out") as page:
        _signin(page, console)
        _follow(page, "#signout")
        assert page.url == f"{console.base}/console/signin"
        for path in ("/console/", "/console/records", "/console/settings", "/console/sql"):
            page.goto(f"{console.base}{path}")
            assert page.url == f"{console.base}/console/signin", path
            assert page.locator("#token").count() == 1
        assert not [c for c in page.context.cookies() if c["name"] == "otaudit_session"]


_SUBMIT = """([action, fields]) => {
  const form = document.createElement("form");
  form.method = "post";
  form.action = action;
  for (const [name, value] of Object.entries(fields)) {
    const input = document.createElement("input");
    input.type = "hidden";
    input.name = name;
    input.value = value;
    form.appendChild(input);
  }
  document.body.appendChild(form);
  form.submit();
}"""


def _post_form(page: Page, action: str, fields: dict[str, str]) -> int:
    """Submit a crafted form from the page; the status of the answer."""
    with page.expect_navigation() as navigation:
        page.evaluate(_SUBMIT, [action, fields])
    response = navigation.value
    assert response is not None
    first = response.request
    while first.redirected_from is not None:
        first = first.redirected_from
    assert first.method == "POST"
    answer = first.response()
    assert answer is not None
    return answer.status


def test_forms_without_the_right_csrf_token_are_refused(browser: Browser, console: Console) -> None:
    with browser.page("csrf", allow=REFUSED) as page:
        _signin(page, console, "admin")
        for fields in ({}, {"csrf": "0" * 64}):
            page.goto(f"{console.base}/console/records")
            assert _post_form(page, "/console/signout", fields) == 403
            page.goto(f"{console.base}/console/records")
            assert page.url.startswith(f"{console.base}/console/records")  # still signed in
        refused = page.request.post(f"{console.base}/console/alerts/0/ack",
                                    form={"decision": "resolved", "note": "x"})  # fmt: skip
        assert refused.status == 403
        page.goto(f"{console.base}/console/records")
        token = page.locator("input[name=csrf]").first.get_attribute("value") or ""
        assert _post_form(page, "/console/signout", {"csrf": token}) == 303
        assert page.url == f"{console.base}/console/signin"


def _inert(page: Page, dialogs: list[str]) -> None:
    """Nothing of the data runs on ``page``: no dialog, no script, no handler, no js: link."""
    assert dialogs == [], dialogs
    scripts: list[str | None] = page.locator("script").evaluate_all(
        "all => all.map(s => s.getAttribute('src'))"
    )
    assert set(scripts) <= OWN_SCRIPTS, (page.url, scripts)
    urls: list[str] = page.locator("[href], [src], [action], [formaction]").evaluate_all(
        """all => all.flatMap(e => ["href", "src", "action", "formaction"]
                                .map(a => e.getAttribute(a)).filter(v => v !== null))"""
    )
    assert not [u for u in urls if u.strip().lower().startswith("javascript:")], (page.url, urls)
    handlers: list[str] = page.locator("*").evaluate_all(
        """all => all.flatMap(e => Array.from(e.attributes).map(a => a.name))
                     .filter(n => n.startsWith("on"))"""
    )
    assert handlers == [], (page.url, handlers)
    assert page.locator("img[src='x']").count() == 0


def test_hostile_values_are_inert_on_every_page(browser: Browser, console: Console) -> None:
    dialogs: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    with browser.page("hostile") as page:
        page.on("dialog", on_dialog)
        _signin(page, console)
        _inert(page, dialogs)
        _filter(page, console, "xss.probe")
        hostile = _rows(page)
        assert len(hostile) == 2 * len(PAYLOADS)  # spans and logs
        text = page.locator("#records").inner_text()
        for payload in PAYLOADS:
            assert payload in text  # shown as text
        _inert(page, dialogs)
        listing = page.url
        for seq in hostile:
            _follow(page, f"#records tbody tr[data-seq='{seq}'] a")
            assert any(p in page.locator("#sealed").inner_text() for p in PAYLOADS)
            _inert(page, dialogs)
            browser.screenshot(page, f"hostile-record-{seq}")
            page.goto(listing)
        statement = "SELECT signal, name, actor, target, attributes FROM audit_records" \
                    " WHERE action = 'xss.probe'"  # fmt: skip
        pages = [
            f"/console/sql?{httpx.QueryParams({'q': statement})}",
            f"/console/sql?{httpx.QueryParams({'q': f'SELECT {chr(39)}{PAYLOADS[1]}{chr(39)}'})}",
            f"/console/records?{httpx.QueryParams({'actor': PAYLOADS[0], 'range': '24h'})}",
            f"/console/records?{httpx.QueryParams({'name': PAYLOADS[2], 'range': '24h'})}",
            "/console/alerts?state=all",
            "/console/",
            "/console/settings",
            "/console/evidence",
        ]
        for path in pages:
            page.goto(f"{console.base}{path}")
            assert page.url.startswith(f"{console.base}/console/"), path
            _inert(page, dialogs)
            browser.screenshot(page, f"hostile-{path.split('?')[0].strip('/').replace('/', '-')}")
        page.goto(f"{console.base}{pages[0]}")
        assert page.locator("#result tbody tr").count() == 2 * len(PAYLOADS)
        # Clicking every link of the records listing runs nothing either.
        page.goto(listing)
        for i in range(page.locator("main a").count()):
            href = page.locator("main a").nth(i).get_attribute("href") or ""
            assert href.startswith("/console/"), href
        _inert(page, dialogs)
