"""Telling people about new alerts: a webhook (JSON) and an OTLP/HTTP logs endpoint.

Each new alert is posted to every configured destination from a background
thread, retried with exponential backoff (honouring ``Retry-After``) on
connection errors, 408, 429 and 5xx, up to ``attempts`` tries. The alert is
already sealed in the ledger when it is queued; a destination that stays
unreachable is logged as an error with the alert id, and ``otaudit alerts``
still lists it.

Header values and the signing secret come from files or the environment, never the
command line (see ``otaudit.cli.detect``); URLs carry no credentials, and every log line
and message shows a URL with its query string redacted (:func:`redact_url`).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import logging
import queue
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

import orjson

from otaudit.errors import ConfigError

log = logging.getLogger("otaudit.alerts")

#: The header carrying the webhook body's HMAC-SHA256 under ``--alert-webhook-secret-file``.
SIGNATURE_HEADER: Final = "X-Otaudit-Signature"
_TOKEN: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_RETRY_STATUS: Final = frozenset({408, 429, 500, 502, 503, 504})
_STOP: Final = object()


def parse_header(text: str, option: str) -> tuple[str, str]:
    """``Name: value`` or ``Name=value``; ConfigError naming the option otherwise (a name
    that is not an HTTP token, a value with control characters or beyond Latin-1). The
    messages never show the value: it is usually a credential."""
    for sep in (":", "="):
        name, found, value = text.partition(sep)
        name, value = name.strip(), value.strip()
        if found and _TOKEN.fullmatch(name):
            if any((ord(c) < 32 and c != "\t") or ord(c) == 127 for c in value):
                raise ConfigError(f"{option}: the value of {name} has control characters")
            if any(ord(c) > 255 for c in value):
                raise ConfigError(f"{option}: the value of {name} is not Latin-1 text")
            return name, value
    raise ConfigError(
        f"{option} expects 'Name: value' with an HTTP header name (the text is not shown here)"
    )


def parse_header_lines(text: str, where: str) -> tuple[tuple[str, str], ...]:
    """The headers of ``Name: value`` lines (a header file, or an environment variable);
    blank lines and lines starting with ``#`` are skipped. ConfigError names ``where`` and
    the line."""
    headers = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#"):
            headers.append(parse_header(line, f"{where} line {n}"))
    return tuple(headers)


def redact_url(url: str) -> str:
    """``url`` as logs and messages show it: credentials (``user:password@``), query string and
    fragment replaced by ``***``; scheme, host, port and path kept."""
    parts = urlsplit(url)
    scheme = f"{parts.scheme}:" if parts.scheme else ""
    if parts.netloc:
        _, at, host = parts.netloc.rpartition("@")
        shown = f"{scheme}//" + ("***@" if at else "") + host + parts.path
    else:  # no authority (``user:pw@host``): whatever comes before an @ may be a credential
        _, at, rest = (scheme + parts.path).rpartition("@")
        shown = ("***@" if at else "") + rest
    return shown + ("?***" if parts.query else "") + ("#***" if parts.fragment else "")


def check_url(url: str, option: str) -> str:
    """An http(s) URL with a host and no credentials in it; ConfigError naming the option
    otherwise (the URL shown redacted, see :func:`redact_url`).

    Credentials in the URL (``https://user:password@host/``) are refused wherever the URL
    comes from: on a command line every local user reads them in the process list, they
    would reach the logs, and urllib never sends them anyway. An ``Authorization`` header
    from a header file does the same job.
    """
    if any(ord(c) <= 32 or ord(c) == 127 for c in url):
        raise ConfigError(f"{option}: the URL has spaces or control characters")
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - a port that is not a number raises here, not at each post
    except ValueError:
        raise ConfigError(f"{option} {redact_url(url)}: the port is not a number") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{option} expects an http:// or https:// URL, got {redact_url(url)!r}")
    if "@" in parts.netloc:
        raise ConfigError(
            f"{option} {redact_url(url)}: credentials in a URL are refused (they would be "
            "visible in the process list and the logs, and are not sent); put an "
            "'Authorization: ...' line in a header file instead"
        )
    return url


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are refused (a 3xx is a failed delivery): following one would resend the
    alert, and its credentials, somewhere not configured."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@dataclass(frozen=True)
class NotifySettings:
    """Where new alerts go besides the ledger and the log."""

    # Secrets (header values, the signing secret, a URL whose path is a token) stay out of
    # the repr: a settings object that ends up in a log or a traceback shows none of them.
    webhook: str | None = field(default=None, repr=False)
    webhook_headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    #: Signs each webhook body: ``X-Otaudit-Signature: sha256=<HMAC-SHA256 hex>``.
    webhook_secret: bytes | None = field(default=None, repr=False)
    #: An OTLP/HTTP logs URL, e.g. http://collector:4318/v1/logs.
    otlp_endpoint: str | None = field(default=None, repr=False)
    otlp_headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    attempts: int = 6
    backoff_s: float = 1.0
    timeout_s: float = 10.0
    max_queue: int = 10_000

    @property
    def enabled(self) -> bool:
        """Whether any destination is configured."""
        return self.webhook is not None or self.otlp_endpoint is not None


@dataclass(frozen=True)
class _Delivery:
    alert_id: str
    destination: str
    url: str
    body: bytes
    content_type: str
    headers: tuple[tuple[str, str], ...] = field(repr=False)

    @property
    def shown(self) -> str:
        """The URL as the log shows it (:func:`redact_url`)."""
        return redact_url(self.url)


class Notifier:
    """Delivers alert notifications in the background, with retries."""

    def __init__(self, settings: NotifySettings,
                 sleep: Callable[[float], object] | None = None) -> None:  # fmt: skip
        self.settings = settings
        self._queue: queue.Queue[_Delivery | object] = queue.Queue(settings.max_queue)
        self._stopping = threading.Event()
        self._closing = threading.Event()
        self._deadline = float("inf")  # monotonic time after which close() gives up
        # Waiting between attempts ends early when the notifier closes.
        self._sleep = sleep or self._stopping.wait
        self._opener = urllib.request.build_opener(_NoRedirect)
        self._thread = threading.Thread(target=self._run, name="otaudit-notify", daemon=True)
        self._thread.start()
        self.delivered = 0
        self.failed = 0

    def send(self, alert_id: str, payload: dict[str, object], otlp_body: bytes) -> None:
        """Queue one alert for every destination (the JSON payload; the OTLP request)."""
        s = self.settings
        if s.webhook is not None:
            body = orjson.dumps(payload)
            headers = s.webhook_headers
            if s.webhook_secret is not None:
                digest = hmac.new(s.webhook_secret, body, hashlib.sha256).hexdigest()
                headers = (*headers, (SIGNATURE_HEADER, f"sha256={digest}"))
            self._put(_Delivery(alert_id, "webhook", s.webhook, body, "application/json",
                                headers))  # fmt: skip
        if s.otlp_endpoint is not None:
            self._put(_Delivery(alert_id, "OTLP endpoint", s.otlp_endpoint, otlp_body,
                                "application/x-protobuf", s.otlp_headers))  # fmt: skip

    def _put(self, delivery: _Delivery) -> None:
        try:
            self._queue.put_nowait(delivery)
        except queue.Full:
            self.failed += 1
            log.error("alert %s not sent to the %s %s: %d notifications already waiting",
                      delivery.alert_id, delivery.destination, delivery.shown,
                      self.settings.max_queue)  # fmt: skip

    def close(self, timeout_s: float = 30.0) -> None:
        """Deliver what is queued for at most ``timeout_s``; what is left then is logged as
        not sent (each alert by id), and the notifier stops."""
        self._deadline = time.monotonic() + timeout_s
        self._closing.set()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(_STOP)
        self._thread.join(timeout_s)
        self._stopping.set()
        self._thread.join(self.settings.timeout_s + 5)

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=0.2)
            except queue.Empty:
                if self._closing.is_set():
                    return
                continue
            if item is _STOP:
                return
            assert isinstance(item, _Delivery)
            if self._stopping.is_set() or time.monotonic() > self._deadline:
                self._give_up(item, "otaudit stopped before it could be sent")
                continue
            try:
                self._deliver(item)
            except Exception:  # the notifier must outlive any one delivery
                log.exception("alert %s: delivery to the %s failed", item.alert_id,
                              item.destination)  # fmt: skip
                self.failed += 1

    def _give_up(self, d: _Delivery, error: str | None) -> None:
        self.failed += 1
        log.error("alert %s NOT sent to the %s %s: %s (it is in the ledger: otaudit alerts)",
                  d.alert_id, d.destination, d.shown, error)  # fmt: skip

    def _deliver(self, d: _Delivery) -> None:
        s = self.settings
        delay = s.backoff_s
        for attempt in range(1, s.attempts + 1):
            retry_after, error = self._post(d)
            if error is None:
                self.delivered += 1
                log.info("alert %s sent to the %s %s", d.alert_id, d.destination, d.shown)
                return
            if retry_after is None or attempt == s.attempts or self._stopping.is_set():
                break
            if time.monotonic() + max(delay, retry_after) > self._deadline:
                break
            log.warning("alert %s: %s %s failed (%s); retry %d of %d in %.0f s", d.alert_id,
                        d.destination, d.shown, error, attempt, s.attempts - 1,
                        max(delay, retry_after))  # fmt: skip
            self._sleep(max(delay, retry_after))
            delay = min(delay * 2, 60.0)
        self._give_up(d, error)

    def _post(self, d: _Delivery) -> tuple[float | None, str | None]:
        """POST once: (None, None) on success; else (retry after seconds or None, error)."""
        request = urllib.request.Request(d.url, data=d.body, method="POST")
        request.add_header("Content-Type", d.content_type)
        request.add_header("User-Agent", "otaudit-alerts")
        for name, value in d.headers:
            request.add_header(name, value)
        try:
            with self._opener.open(request, timeout=self.settings.timeout_s) as response:
                response.read()
            return None, None
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code not in _RETRY_STATUS:
                return None, f"HTTP {exc.code} {exc.reason}"
            header = exc.headers.get("Retry-After", "") if exc.headers else ""
            wait = float(header) if header.isdigit() else 0.0
            return min(wait, 300.0), f"HTTP {exc.code} {exc.reason}"
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            return 0.0, f"{type(exc).__name__}: {reason}"
