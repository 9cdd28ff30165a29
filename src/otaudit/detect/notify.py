"""Telling people about new alerts: a webhook (JSON) and an OTLP/HTTP logs endpoint.

Each new alert is posted to every configured destination from a background
thread, retried with exponential backoff (honouring ``Retry-After``) on
connection errors, 408, 429 and 5xx, up to ``attempts`` tries. The alert is
already sealed in the ledger when it is queued; a destination that stays
unreachable is logged as an error with the alert id, and ``otaudit alerts``
still lists it.
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
from dataclasses import dataclass
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
    that is not an HTTP token, a value with control characters)."""
    for sep in (":", "="):
        name, found, value = text.partition(sep)
        name, value = name.strip(), value.strip()
        if found and _TOKEN.fullmatch(name):
            if any((ord(c) < 32 and c != "\t") or ord(c) == 127 for c in value):
                raise ConfigError(f"{option}: the value of {name} has control characters")
            return name, value
    raise ConfigError(f"{option} expects 'Name: value' with an HTTP header name, got {text!r}")


def check_url(url: str, option: str) -> str:
    """An http(s) URL with a host; ConfigError naming the option otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{option} expects an http:// or https:// URL, got {url!r}")
    return url


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are refused (a 3xx is a failed delivery): following one would resend the
    alert, and its credentials, somewhere not configured."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@dataclass(frozen=True)
class NotifySettings:
    """Where new alerts go besides the ledger and the log."""

    webhook: str | None = None
    webhook_headers: tuple[tuple[str, str], ...] = ()
    #: Signs each webhook body: ``X-Otaudit-Signature: sha256=<HMAC-SHA256 hex>``.
    webhook_secret: bytes | None = None
    otlp_endpoint: str | None = None  # an OTLP/HTTP logs URL, e.g. http://collector:4318/v1/logs
    otlp_headers: tuple[tuple[str, str], ...] = ()
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
    headers: tuple[tuple[str, str], ...]


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
                      delivery.alert_id, delivery.destination, delivery.url,
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
                  d.alert_id, d.destination, d.url, error)  # fmt: skip

    def _deliver(self, d: _Delivery) -> None:
        s = self.settings
        delay = s.backoff_s
        for attempt in range(1, s.attempts + 1):
            retry_after, error = self._post(d)
            if error is None:
                self.delivered += 1
                log.info("alert %s sent to the %s %s", d.alert_id, d.destination, d.url)
                return
            if retry_after is None or attempt == s.attempts or self._stopping.is_set():
                break
            if time.monotonic() + max(delay, retry_after) > self._deadline:
                break
            log.warning("alert %s: %s %s failed (%s); retry %d of %d in %.0f s", d.alert_id,
                        d.destination, d.url, error, attempt, s.attempts - 1,
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
