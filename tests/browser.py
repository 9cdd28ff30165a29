"""Debian's Chromium driven by Playwright, for the console's browser tests.

Never a downloaded browser: Playwright launches the system's Chromium (``OTAUDIT_CHROMIUM``,
else ``/usr/lib/chromium/chromium``, else ``chromium`` on the PATH; ``scripts/ensure-chromium``
installs it), with ``--no-sandbox`` when running as root.

A test module makes its fixture with :func:`browser_fixture` (one browser for the module)::

    from browser import Browser, browser_fixture

    browser = browser_fixture()

    def test_something(browser: Browser) -> None:
        with browser.page("records") as page:
            page.goto(url)
            ...

Each :meth:`Browser.page` is a fresh context (its own cookies and storage). When the block
ends, a screenshot of the page is saved under the run's base temporary directory
(``<basetemp>/screenshots/<test>-<name>.png``, its path printed; also when the test failed),
and the test fails if the page logged a console error, threw an uncaught exception or
reported a Content-Security-Policy violation, unless its text matches one of the ``allow``
patterns.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser as PlaywrightBrowser
from playwright.sync_api import ConsoleMessage, Page, Playwright, sync_playwright
from playwright.sync_api import Error as PlaywrightError

__all__ = ["Browser", "browser_fixture", "chromium_path"]

# Reports every CSP violation (enforced or report-only) to the console as an error. Playwright
# injects init scripts through the DevTools protocol, so the page's own CSP does not block it.
_CSP_LISTENER = """
document.addEventListener("securitypolicyviolation", (e) => {
  console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || "inline"}` +
                ` at ${e.sourceFile || "?"}:${e.lineNumber}`);
});
"""


def chromium_path() -> str:
    """The Chromium binary to drive; skips the test when there is none."""
    override = os.environ.get("OTAUDIT_CHROMIUM")
    if override:
        return override
    if Path("/usr/lib/chromium/chromium").exists():
        return "/usr/lib/chromium/chromium"
    found = shutil.which("chromium")
    if found is None:
        pytest.skip("no Chromium (scripts/ensure-chromium installs Debian's)")
    return found


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:120] or "page"


class Browser:
    """One launched Chromium; :meth:`page` gives checked pages with a screenshot each."""

    def __init__(self, playwright: Playwright, browser: PlaywrightBrowser, shots: Path) -> None:
        self._playwright = playwright
        self._browser = browser
        self.screenshots = shots
        """The folder of this run's screenshots."""

    @classmethod
    @contextmanager
    def launch(cls, screenshots: Path) -> Iterator[Browser]:
        """Start Playwright and Chromium; stop both when the block ends."""
        screenshots.mkdir(parents=True, exist_ok=True)
        args = ["--no-sandbox"] if os.geteuid() == 0 else []
        playwright = sync_playwright().start()
        try:
            chromium = playwright.chromium.launch(executable_path=chromium_path(), args=args)
            try:
                yield cls(playwright, chromium, screenshots)
            finally:
                chromium.close()
        finally:
            playwright.stop()

    def screenshot(self, page: Page, name: str) -> Path:
        """Save a full-page screenshot of ``page`` as ``<test>-<name>.png``; print its path."""
        test = os.environ.get("PYTEST_CURRENT_TEST", "test").split("::")[-1].split(" ")[0]
        path = self.screenshots / f"{_safe(test)}-{_safe(name)}.png"
        page.screenshot(path=str(path), full_page=True)
        print(f"screenshot: {path}")
        return path

    @contextmanager
    def page(self, name: str, *, allow: tuple[str, ...] = ()) -> Iterator[Page]:
        """A new page in a new context; screenshot and error check when the block ends.

        ``allow`` holds regular expressions of console errors the test expects (for example
        the browser's own ``Failed to load resource: ... 404`` line for a request that fails
        on purpose).
        """
        context = self._browser.new_context()
        context.add_init_script(_CSP_LISTENER)
        page = context.new_page()
        errors: list[str] = []

        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error":
                where = message.location.get("url", "")
                errors.append(f"console error: {message.text} ({where})")

        def on_page_error(error: PlaywrightError) -> None:
            errors.append(f"uncaught exception: {error.message}")

        page.on("console", on_console)
        page.on("pageerror", on_page_error)
        try:
            yield page
        finally:
            try:  # also when the test failed: the screenshot shows what the page showed
                self.screenshot(page, name)
            finally:
                context.close()
        unexpected = [e for e in errors if not any(re.search(p, e) for p in allow)]
        assert not unexpected, f"the page {name!r} reported errors:\n" + "\n".join(unexpected)


def browser_fixture() -> Callable[..., Iterator[Browser]]:
    """A module-scoped ``browser`` fixture: assign it to ``browser`` in a test module."""

    @pytest.fixture(scope="module")
    def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
        shots = tmp_path_factory.getbasetemp() / "screenshots"
        with Browser.launch(shots) as launched:
            yield launched

    return browser
