"""The console's in-browser verifier (``otaudit/console/static/verify.js``) in Chromium, alone.

A tiny Starlette app on a loopback port serves the script from the package, a page with the
contract's elements (``#verify``, ``#verify-steps``, ``#verify-verdict``) under the console's
Content-Security-Policy, and ``/console/api/proof/{seq}`` answered from real ledgers built
here (``otaudit.proofs.proven_record`` and ``checkpoint_at``). A server that lies (changed
bytes, a changed or missing proof hash, a checkpoint signed by another key) and a missing or
wrong pinned key must turn the verdict red; every leaf of trees of several sizes, green.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from playwright.sync_api import Page, Route
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route as StarletteRoute

import otaudit
from browser import Browser, browser_fixture
from otaudit.checkpoint import Checkpoint, sign_checkpoint
from otaudit.keys import SigningKey
from otaudit.merkle import inclusion_proof, leaf_hash, root_hash, verify_inclusion
from otaudit.proofs import checkpoint_at, proven_record
from otaudit.store.sqlite import SQLiteStore
from sealing import entries, sign

browser = browser_fixture()


def _key_with_plus(name: str) -> SigningKey:
    """A key whose verifier key text holds a '+' in its base64 too (the parser must split
    ``<name>+<id>+<base64>`` at the first two only), the same on every run."""
    for i in range(1000):
        key = SigningKey.from_seed(name, i.to_bytes(32, "big"))
        if "+" in key.verifier_key().split("+", 2)[2]:
            return key
    raise AssertionError("no seed below 1000 gives a '+' in the key's base64")


KEY = _key_with_plus("console.test")
SIZES = (1, 2, 3, 7, 8, 100)
VERIFY_JS = Path(otaudit.__file__).parent / "console" / "static" / "verify.js"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "no-referrer"}  # fmt: skip
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Record {seq}</title>
<link rel="icon" href="data:,">
<script src="/console/static/verify.js" defer></script></head>
<body><h1>Record {seq}</h1>
<button id="verify" data-seq="{seq}">Verify in this browser</button>
<ol id="verify-steps"></ol>
<p id="verify-verdict"></p>
</body></html>
"""

Proof = dict[str, Any]


@dataclass
class Ledger:
    """One signed ledger: the proof response of each record, as the console serves it."""

    size: int
    root: bytes
    proofs: dict[int, Proof]


@dataclass
class Site:
    """The test server: its address and the ledger it answers proofs from."""

    base: str
    ledger: Ledger | None = None
    requests: list[int] = field(default_factory=list)


def _ledger(folder: Path, records: int) -> Ledger:
    """A real ledger of ``records`` sealed spans signed by KEY, and every record's proof."""
    folder.mkdir()
    store = SQLiteStore(folder / "ledger.db")
    try:
        store.append(entries(records))
        sign(store, KEY, KEY.name)
        cp = checkpoint_at(store, None)
        assert cp.tree_size == records
        proofs = {}
        for seq in range(cp.tree_size):
            proven = proven_record(store, seq, cp.tree_size)
            proofs[seq] = {
                "seq": seq,
                "tree_size": proven["tree_size"],
                "leaf_input_b64": proven["leaf_input_b64"],
                "hashes": proven["hashes"],
                "checkpoint": cp.note,
            }
            # What the browser will check, checked here by otaudit itself first.
            verify_inclusion(leaf_hash(base64.b64decode(proven["leaf_input_b64"])), seq,
                             cp.tree_size, [bytes.fromhex(h) for h in proven["hashes"]],
                             cp.root_hash)  # fmt: skip
        return Ledger(cp.tree_size, cp.root_hash, proofs)
    finally:
        store.close()


@pytest.fixture(scope="module")
def ledgers(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Ledger]:
    folder = tmp_path_factory.mktemp("ledgers")
    return {n: _ledger(folder / str(n), n) for n in SIZES}


def _app(site: Site) -> Starlette:
    async def record_page(request: Request) -> Response:
        seq = int(request.path_params["seq"])
        return HTMLResponse(PAGE.format(seq=seq), headers=HEADERS)

    async def script(request: Request) -> Response:
        return Response(VERIFY_JS.read_bytes(), media_type="text/javascript", headers=HEADERS)

    async def proof(request: Request) -> Response:
        seq = int(request.path_params["seq"])
        site.requests.append(seq)
        found = site.ledger.proofs.get(seq) if site.ledger else None
        if found is None:
            return JSONResponse({"error": f"no record {seq} in the signed tree"}, 404, HEADERS)
        return JSONResponse(found, headers=HEADERS)

    async def trap(request: Request) -> Response:
        """Pages that break the rules, for the harness's own test."""
        kind = request.path_params["kind"]
        if kind == "throw.js":
            return Response("throw new Error('boom');", media_type="text/javascript",
                            headers=HEADERS)  # fmt: skip
        body = {
            "inline": "<script>document.title = 'ran';</script>",
            "throw": '<script src="/harness/throw.js" defer></script>',
            "console": "",
        }[kind]
        return HTMLResponse(f"<!doctype html><title>trap</title>{body}<p>{kind}</p>", 200, HEADERS)

    return Starlette(routes=[
        StarletteRoute("/console/records/{seq:int}", record_page),
        StarletteRoute("/console/static/verify.js", script),
        StarletteRoute("/console/api/proof/{seq:int}", proof),
        StarletteRoute("/harness/{kind}", trap),
    ])  # fmt: skip


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    """The app on 127.0.0.1 (a secure context, so WebCrypto is there), in a thread."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    served = Site(f"http://127.0.0.1:{port}")
    config = uvicorn.Config(_app(served), log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.01)
    yield served
    server.should_exit = True
    thread.join(10)
    sock.close()


@dataclass
class Verdict:
    """What the page showed after the click."""

    ok: bool
    text: str
    ms: float
    steps: list[tuple[str, str]]


Tamper = Callable[[Proof], None]


def _intercept(page: Page, tamper: Tamper) -> None:
    """Change the proof response on its way to the page (Playwright request interception)."""

    def handle(route: Route) -> None:
        response = route.fetch()
        body = response.json()
        tamper(body)
        route.fulfill(response=response, json=body)

    page.route("**/console/api/proof/*", handle)


def _verify(
    browser: Browser,
    site: Site,
    ledger: Ledger,
    seq: int,
    *,
    name: str = "verify",
    pinned: str | None = None,
    tamper: Tamper | None = None,
    allow: tuple[str, ...] = (),
) -> Verdict:
    """Open record ``seq``'s page, pin ``pinned`` (default KEY's verifier key), click Verify."""
    site.ledger = ledger
    with browser.page(name, allow=allow) as page:
        if tamper is not None:
            _intercept(page, tamper)
        page.goto(f"{site.base}/console/records/{seq}")
        key = KEY.verifier_key() if pinned is None else pinned
        if key:
            page.evaluate("k => localStorage.setItem('otaudit.verifierKey', k)", key)
        page.click("#verify")
        page.locator("#verify-verdict[data-ms]").wait_for()
        verdict = page.locator("#verify-verdict")
        classes = verdict.get_attribute("class")
        steps = page.locator("#verify-steps li")
        result = Verdict(
            ok=classes == "ok",
            text=verdict.inner_text(),
            ms=float(verdict.get_attribute("data-ms") or "nan"),
            steps=[
                (steps.nth(i).get_attribute("class") or "", steps.nth(i).inner_text())
                for i in range(steps.count())
            ],
        )
    if result.ok:
        assert result.text.startswith("Verified"), result
        assert result.steps and all(c == "ok" for c, _ in result.steps), result
    else:
        assert classes == "bad" and result.text.startswith("NOT verified: "), result
        assert result.steps == [] or result.steps[-1][0] == "bad", result
    return result


def _red(verdict: Verdict, *reasons: str) -> None:
    assert not verdict.ok, verdict
    assert any(r in verdict.text for r in reasons), verdict.text


def test_a_record_of_a_signed_ledger_verifies_green_with_every_step(
    browser: Browser, site: Site, ledgers: dict[int, Ledger]
) -> None:
    ledger = ledgers[100]
    verdict = _verify(browser, site, ledger, 42, name="green")
    assert verdict.ok, verdict
    assert verdict.text.startswith("Verified: record 42 is leaf 42 of the tree of 100 records")
    labels = [text.split(":")[0] for _, text in verdict.steps]
    assert labels == [
        "Pinned verifier key",
        "Proof fetched from the server",
        "Leaf hash SHA-256(0x00 || sealed bytes)",
        "Checkpoint read",
        "Inclusion proof walked to the checkpoint's root (RFC 9162)",
        "Checkpoint signature (Ed25519)",
        "Sealed bytes are an otaudit record",
    ]
    assert ledger.root.hex() in verdict.steps[4][1]
    assert f"{KEY.name}+{KEY.key_id.hex()}" in verdict.steps[5][1]
    leaf = leaf_hash(base64.b64decode(ledger.proofs[42]["leaf_input_b64"]))
    assert leaf.hex() in verdict.steps[2][1]


@pytest.mark.parametrize("size", SIZES)
def test_trees_of_several_sizes_verify(
    browser: Browser, site: Site, ledgers: dict[int, Ledger], size: int
) -> None:
    for seq in sorted({0, size // 2, size - 1}):
        verdict = _verify(browser, site, ledgers[size], seq, name=f"tree{size}-leaf{seq}")
        assert verdict.ok, verdict
        assert f"of the tree of {size} records" in verdict.text


def test_every_leaf_of_a_seven_record_tree_verifies(
    browser: Browser, site: Site, ledgers: dict[int, Ledger]
) -> None:
    for seq in range(7):
        verdict = _verify(browser, site, ledgers[7], seq, name=f"tree7-leaf{seq}")
        assert verdict.ok, (seq, verdict)


def test_verification_takes_under_200_ms(
    browser: Browser, site: Site, ledgers: dict[int, Ledger]
) -> None:
    times = [_verify(browser, site, ledgers[100], seq, name="timing").ms for seq in (0, 63, 99)]
    print(f"in-browser verification of one record of 100: {times} ms")
    assert max(times) < 200, times


def _million(seqs: tuple[int, ...]) -> Ledger:
    """A tree of a million leaves signed by KEY (as the figure of issue 20 asks), where the
    leaves ``seqs`` are real sealed records and the others stand-in hashes: the proofs have
    the 20 hashes of a real ledger of that size, without sealing a million records here."""
    size = 1_000_000
    sealed = [e.sealed for e in entries(len(seqs))]
    leaves = [hashlib.sha256(b"\x00" + i.to_bytes(8, "big")).digest() for i in range(size)]
    for seq, data in zip(seqs, sealed, strict=True):
        leaves[seq] = leaf_hash(data)
    root = root_hash(leaves)
    note = sign_checkpoint(Checkpoint(KEY.name, size, root), KEY)
    proofs = {
        seq: {
            "seq": seq,
            "tree_size": size,
            "leaf_input_b64": base64.b64encode(data).decode("ascii"),
            "hashes": [h.hex() for h in inclusion_proof(leaves, seq)],
            "checkpoint": note,
        }
        for seq, data in zip(seqs, sealed, strict=True)
    }
    return Ledger(size, root, proofs)


def test_a_record_of_a_million_verifies_under_200_ms(browser: Browser, site: Site) -> None:
    ledger = _million((0, 524_287, 777_777, 999_999))
    times = []
    for seq in ledger.proofs:
        verdict = _verify(browser, site, ledger, seq, name=f"million-{seq}")
        assert verdict.ok and "of the tree of 1000000 records" in verdict.text, verdict
        times.append(verdict.ms)
    assert max(len(p["hashes"]) for p in ledger.proofs.values()) == 20  # 2**19 < 10**6 < 2**20
    print(f"in-browser verification of one record of 1,000,000: {times} ms")
    assert max(times) < 200, times


def _flip_sealed_byte(body: Proof) -> None:
    raw = bytearray(base64.b64decode(body["leaf_input_b64"]))
    at = raw.index(b'"received_at":"') + len(b'"received_at":"')
    raw[at] = ord("9") if raw[at] != ord("9") else ord("8")  # another time, still JSON
    body["leaf_input_b64"] = base64.b64encode(bytes(raw)).decode("ascii")


def test_a_changed_byte_of_the_record_is_red(
    browser: Browser, site: Site, ledgers: dict[int, Ledger]
) -> None:
    verdict = _verify(browser, site, ledgers[7], 3, name="changed-byte", tamper=_flip_sealed_byte)
    _red(verdict, "the proof leads to")
    assert verdict.steps[-1][0] == "bad" and verdict.steps[-1][1].startswith("Inclusion proof")


def test_a_changed_proof_hash_is_red(
    browser: Browser, site: Site, ledgers: dict[int, Ledger]
) -> None:
    def change(body: Proof) -> None:
        first = body["hashes"][1]
        body["hashes"][1] = ("0" if first[0] != "0" else "1") + first[1:]

    _red(_verify(browser, site, ledgers[7], 3, name="changed-hash", tamper=change),
         "the proof leads to")  # fmt: skip


@pytest.mark.parametrize(
    ("case", "tamper", "reason"),
    [
        ("dropped", lambda b: b["hashes"].pop(), "the inclusion proof has 2 hashes"),
        ("added", lambda b: b["hashes"].append("00" * 32), "the inclusion proof has 4 hashes"),
        ("not-hex", lambda b: b["hashes"].__setitem__(0, "zz" * 32), "proof hash 0 must be"),
        ("other-seq", lambda b: b.__setitem__("seq", 4), "is for seq 4, not 3"),
        ("other-size", lambda b: b.__setitem__("tree_size", 8), "of tree size 7, the proof of 8"),
        ("bad-base64", lambda b: b.__setitem__("leaf_input_b64", "a=b"), "standard padded base64"),
        ("no-checkpoint", lambda b: b.pop("checkpoint"), "has no checkpoint"),
        ("unsigned", lambda b: b.__setitem__("checkpoint", b["checkpoint"].split("\n\n")[0]),
         "does not end with a newline"),
    ],
)  # fmt: skip
def test_a_malformed_proof_response_is_red(
    browser: Browser,
    site: Site,
    ledgers: dict[int, Ledger],
    case: str,
    tamper: Tamper,
    reason: str,
) -> None:
    _red(_verify(browser, site, ledgers[7], 3, name=f"malformed-{case}", tamper=tamper), reason)


def test_the_proof_of_another_leaf_is_red(
    browser: Browser, site: Site, ledgers: dict[int, Ledger]
) -> None:
    """The server answers seq 3 with record 2's bytes and proof (each genuine)."""
    other = ledgers[7].proofs[2]

    def swap(body: Proof) -> None:
        body["leaf_input_b64"], body["hashes"] = other["leaf_input_b64"], other["hashes"]

    _red(_verify(browser, site, ledgers[7], 3, name="other-leaf", tamper=swap),
         "the proof leads to")  # fmt: skip


def _resigned(ledger: Ledger, key: SigningKey) -> Tamper:
    note = sign_checkpoint(Checkpoint(KEY.name, ledger.size, ledger.root), key)

    def replace(body: Proof) -> None:
        body["checkpoint"] = note

    return replace


def test_a_checkpoint_signed_by_another_key_is_red(
    browser: Browser, site: Site, ledgers: dict[int, Ledger]
) -> None:
    ledger = ledgers[7]
    other = SigningKey.generate("another.log")
    verdict = _verify(browser, site, ledger, 3, name="other-key", tamper=_resigned(ledger, other))
    _red(verdict, "is not signed by the pinned key")
    assert verdict.steps[-1][1].startswith("Checkpoint signature")
    # Same name, another key: the key id tells them apart.
    namesake = SigningKey.generate(KEY.name)
    _red(_verify(browser, site, ledger, 3, name="namesake-key", tamper=_resigned(ledger, namesake)),
         "is not signed by the pinned key")  # fmt: skip


def test_a_forged_signature_under_the_pinned_key_id_is_red(
    browser: Browser, site: Site, ledgers: dict[int, Ledger]
) -> None:
    ledger = ledgers[7]
    other = SigningKey.generate("another.log")
    forged = sign_checkpoint(Checkpoint(KEY.name, ledger.size, ledger.root), other)
    text, sig_line = forged.rsplit("\n\n", 1)
    raw = base64.b64decode(sig_line.split(" ")[2])
    line = f"\u2014 {KEY.name} {base64.b64encode(KEY.key_id + raw[4:]).decode()}\n"

    def replace(body: Proof) -> None:
        body["checkpoint"] = f"{text}\n\n{line}"

    _red(_verify(browser, site, ledger, 3, name="forged-signature", tamper=replace),
         "does not verify with the pinned key")  # fmt: skip


def test_a_checkpoint_of_another_root_signed_by_the_key_is_red(
    browser: Browser, site: Site, ledgers: dict[int, Ledger]
) -> None:
    """A genuine signature on a checkpoint of another tree (the 8-record ledger's root, with
    size 7) does not make a proof of the 7-record tree verify."""
    other = Ledger(7, ledgers[8].root, {})
    _red(_verify(browser, site, ledgers[7], 3, name="other-root", tamper=_resigned(other, KEY)),
         "the proof leads to")  # fmt: skip


@pytest.mark.parametrize(
    ("case", "pinned", "reason"),
    [
        ("none", "", "no verifier key is pinned"),
        ("garbage", "not a key", "is not <name>+<hex id>+<base64 key>"),
        ("wrong-id", "{name}+00000000+{b64}", "does not match its name and key"),
        ("upper-id", "{name}+{id_upper}+{b64}", "id must be 4 bytes of lower-case hex"),
        ("short-key", "{name}+{id}+AQID", "is not an Ed25519 key"),
        ("bad-base64", "{name}+{id}+%%%", "standard padded base64"),
        ("other-key", "other", "is not signed by the pinned key"),
    ],
)
def test_no_pinned_key_or_a_wrong_one_is_red(
    browser: Browser,
    site: Site,
    ledgers: dict[int, Ledger],
    case: str,
    pinned: str,
    reason: str,
) -> None:
    name, key_id, b64 = KEY.verifier_key().split("+", 2)  # base64 may hold '+' too
    if pinned == "other":
        pinned = SigningKey.generate(KEY.name).verifier_key()
    pinned = pinned.format(name=name, id=key_id, id_upper=key_id.upper(), b64=b64)
    verdict = _verify(browser, site, ledgers[7], 3, name=f"pinned-{case}", pinned=pinned)
    _red(verdict, reason)
    if case != "other-key":
        assert [c for c, _ in verdict.steps] == ["bad"]  # stopped before asking the server


def test_a_record_the_server_cannot_prove_is_red(
    browser: Browser, site: Site, ledgers: dict[int, Ledger]
) -> None:
    verdict = _verify(browser, site, ledgers[7], 12, name="not-found",
                      allow=(r"Failed to load resource: .* 404",))  # fmt: skip
    _red(verdict, "answered 404: no record 12 in the signed tree")


def _answer(text: str) -> Callable[[Route], None]:
    def answer(route: Route) -> None:
        route.fulfill(status=200, content_type="application/json", body=text)

    return answer


def test_the_verdict_is_never_green_on_a_script_error(
    browser: Browser, site: Site, ledgers: dict[int, Ledger]
) -> None:
    """A proof response that is not even an object (JSON null, a list) is red, not an error."""
    site.ledger = ledgers[7]
    for i, body in enumerate((None, [1, 2], "text", {"seq": 3, "hashes": None})):
        with browser.page(f"not-an-object-{i}") as page:
            page.route("**/console/api/proof/*", _answer(json.dumps(body)))
            page.goto(f"{site.base}/console/records/3")
            page.evaluate("k => localStorage.setItem('otaudit.verifierKey', k)", KEY.verifier_key())
            page.click("#verify")
            page.locator("#verify-verdict[data-ms]").wait_for()
            verdict = page.locator("#verify-verdict")
            assert verdict.get_attribute("class") == "bad"
            assert verdict.inner_text().startswith("NOT verified: the proof response")


def test_every_leaf_of_every_tree_up_to_17_records_verifies(
    browser: Browser, site: Site, tmp_path: Path
) -> None:
    """Every (leaf, size) pair up to 17 leaves: each shape of the right border of the tree
    (fn == sn at every level) that the proof walk must get right."""
    for size in range(1, 18):
        site.ledger = _ledger(tmp_path / str(size), size)
        with browser.page(f"tree{size}-every-leaf") as page:
            page.goto(f"{site.base}/console/records/0")
            page.evaluate("k => localStorage.setItem('otaudit.verifierKey', k)", KEY.verifier_key())
            for seq in range(size):
                page.evaluate(
                    """s => {
                      document.getElementById("verify").dataset.seq = s;
                      document.getElementById("verify-verdict").removeAttribute("data-ms");
                    }""",
                    str(seq),
                )
                page.click("#verify")
                verdict = page.locator("#verify-verdict[data-ms]")
                verdict.wait_for()
                assert verdict.get_attribute("class") == "ok", (size, seq, verdict.inner_text())
                expected = f"Verified: record {seq} is leaf {seq} of the tree of {size} records"
                assert verdict.inner_text().startswith(expected)


def _trap(browser: Browser, site: Site, kind: str, allow: tuple[str, ...] = ()) -> None:
    with browser.page(f"trap-{kind}{'-allowed' if allow else ''}", allow=allow) as page:
        page.goto(f"{site.base}/harness/{kind}")
        page.locator("p").wait_for()
        if kind == "console":
            page.evaluate("() => console.error('a console error')")
        time.sleep(0.2)  # let the page report
        assert page.title() == "trap"  # the inline script did not run


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("inline", "CSP violation|Content Security Policy"),
        ("throw", "uncaught exception: .*boom"),
        ("console", "console error: a console error"),
    ],
)
def test_the_harness_fails_a_page_on_csp_violations_and_errors(
    browser: Browser, site: Site, kind: str, error: str
) -> None:
    with pytest.raises(AssertionError, match=error):
        _trap(browser, site, kind)
    _trap(browser, site, kind, allow=(error,))  # errors a test expects pass when allowed
