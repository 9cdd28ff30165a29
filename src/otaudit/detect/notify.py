"""Telling people about new alerts: a webhook (JSON) and an OTLP/HTTP logs endpoint.

Each new alert is posted to every configured destination from a background
thread, retried with exponential backoff (honouring ``Retry-After``) on
connection errors, 408, 429 and 5xx, up to ``attempts`` tries. The alert is
already sealed in the ledger when it is queued; a destination that stays
unreachable is logged as an error with the alert id, and ``otaudit alerts``
still lists it.

Notifications wait in one bounded queue per severity (``max_queue`` each) and go out most
severe first, and within a severity one rule after another: a flood of low alerts fills the
low queue only, a flood from one rule waits its turn with the other rules of its severity,
and a notification waiting to be retried steps aside whenever a more severe one is waiting,
so none of these can delay a high or critical alert by more than the one post under way.
A full queue drops the new notification of its severity, counted in ``dropped`` and logged;
at shutdown the least severe, served last, are the ones left undelivered.

Header values and the signing secret come from files or the environment, never the
command line (see ``otaudit.cli.options``); URLs carry no credentials, and every log line
and message shows a URL with its query string redacted (:func:`redact_url`).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import logging
import re
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

import orjson

from otaudit import defaults
from otaudit.errors import ConfigError

log = logging.getLogger("otaudit.alerts")

#: The header carrying the webhook body's HMAC-SHA256 under ``--alert-webhook-secret-file``.
SIGNATURE_HEADER: Final = "X-Otaudit-Signature"
_TOKEN: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_RETRY_STATUS: Final = frozenset({408, 429, 500, 502, 503, 504})
#: Rule severities, most severe first: the order notifications go out in.
SEVERITIES: Final = ("critical", "high", "medium", "low")
#: The severity of a notification sent without one.
_DEFAULT_SEVERITY: Final = "medium"
#: Drops logged one by one per severity; after that, one line per this many.
_DROPS_LOGGED: Final = 20
_DROP_LOG_EVERY: Final = 1000


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
    #: Notifications waiting per severity (per destination each alert has).
    max_queue: int = 1000
    #: Findings of one rule and group within this long make one alert (``--alert-group-window``).
    group_window_s: int = defaults.ALERT_GROUP_WINDOW_S

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


class _Lanes:
    """The notifications of one severity: a queue per rule, served in turn (oldest first
    within a rule), so that one rule's flood does not hold up another rule's alert."""

    def __init__(self) -> None:
        self._lanes: dict[str, deque[_Pending]] = {}  # in serving order
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def append(self, p: _Pending) -> None:
        self._lanes.setdefault(p.rule, deque()).append(p)
        self._size += 1

    def appendleft(self, p: _Pending) -> None:
        """Put ``p`` back to be served next (a retry)."""
        lane = self._lanes.pop(p.rule, deque())
        lane.appendleft(p)
        self._lanes = {p.rule: lane, **self._lanes}
        self._size += 1

    def popleft(self) -> _Pending:
        rule = next(iter(self._lanes))
        lane = self._lanes.pop(rule)
        p = lane.popleft()
        if lane:
            self._lanes[rule] = lane  # its next one after every other rule's
        self._size -= 1
        return p


@dataclass
class _Pending:
    """A delivery waiting: its attempts so far and, for a retry, how long to wait first."""

    delivery: _Delivery
    delay_s: float
    rule: str = ""
    attempt: int = 1
    pause_s: float = 0.0  # to wait before the next attempt
    not_before: float = 0.0  # monotonic time the wait ends


class Notifier:
    """Delivers alert notifications in the background, most severe first, with retries."""

    def __init__(self, settings: NotifySettings,
                 sleep: Callable[[float], object] | None = None) -> None:  # fmt: skip
        """``sleep``: replaces the wait before a retry (tests); by default the wait ends early
        when a more severe notification arrives or the notifier stops."""
        self.settings = settings
        self._waiting = {s: _Lanes() for s in SEVERITIES}
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._closing = threading.Event()
        self._deadline = float("inf")  # monotonic time after which close() gives up
        self._sleep = sleep
        self._opener = urllib.request.build_opener(_NoRedirect)
        self.delivered = 0
        self.failed = 0  # given up or dropped
        self.dropped = dict.fromkeys(SEVERITIES, 0)  # refused for a full queue, per severity
        self._thread = threading.Thread(target=self._run, name="otaudit-notify", daemon=True)
        self._thread.start()

    def send(self, alert_id: str, payload: dict[str, object], otlp_body: bytes,
             severity: str | None = None) -> None:  # fmt: skip
        """Queue one alert for every destination (the JSON payload; the OTLP request), by
        its ``severity`` (the payload's ``severity`` when not given) and in turn with the
        other rules (the payload's ``rule``) of that severity."""
        s = self.settings
        chosen = severity or payload.get("severity")
        rank = chosen if isinstance(chosen, str) and chosen in SEVERITIES else _DEFAULT_SEVERITY
        rule = str(payload.get("rule", ""))
        if s.webhook is not None:
            body = orjson.dumps(payload)
            headers = s.webhook_headers
            if s.webhook_secret is not None:
                digest = hmac.new(s.webhook_secret, body, hashlib.sha256).hexdigest()
                headers = (*headers, (SIGNATURE_HEADER, f"sha256={digest}"))
            self._put(_Delivery(alert_id, "webhook", s.webhook, body, "application/json",
                                headers), rank, rule)  # fmt: skip
        if s.otlp_endpoint is not None:
            self._put(_Delivery(alert_id, "OTLP endpoint", s.otlp_endpoint, otlp_body,
                                "application/x-protobuf", s.otlp_headers), rank, rule)  # fmt: skip

    def _put(self, delivery: _Delivery, severity: str, rule: str) -> None:
        with self._cond:
            waiting = self._waiting[severity]
            if len(waiting) < self.settings.max_queue:
                waiting.append(_Pending(delivery, self.settings.backoff_s, rule))
                self._cond.notify()
                return
            self.failed += 1
            self.dropped[severity] += 1
            dropped = self.dropped[severity]
        if dropped <= _DROPS_LOGGED or dropped % _DROP_LOG_EVERY == 0:
            log.error("alert %s not sent to the %s %s: %d %s notifications already waiting "
                      "(%d %s dropped so far; it is in the ledger: otaudit alerts)",
                      delivery.alert_id, delivery.destination, delivery.shown,
                      self.settings.max_queue, severity, dropped, severity)  # fmt: skip

    def close(self, timeout_s: float = 30.0) -> None:
        """Deliver what is queued for at most ``timeout_s``, most severe first; what is left
        then is logged as not sent (each alert by id), and the notifier stops."""
        self._deadline = time.monotonic() + timeout_s
        with self._cond:
            self._closing.set()
            self._cond.notify_all()
        self._thread.join(timeout_s)
        with self._cond:
            self._stopping.set()
            self._cond.notify_all()
        self._thread.join(self.settings.timeout_s + 5)

    def _next(self) -> tuple[_Pending, str] | None:
        """The most severe waiting delivery (oldest first); None once closed and empty."""
        with self._cond:
            while True:
                for severity in SEVERITIES:
                    if self._waiting[severity]:
                        return self._waiting[severity].popleft(), severity
                if self._closing.is_set():
                    return None
                self._cond.wait(0.2)

    def _run(self) -> None:
        while (item := self._next()) is not None:
            pending, severity = item
            if self._stopping.is_set() or time.monotonic() > self._deadline:
                self._give_up(pending.delivery, "otaudit stopped before it could be sent")
                continue
            try:
                self._attempt(pending, severity)
            except Exception:  # the notifier must outlive any one delivery
                log.exception("alert %s: delivery to the %s failed", pending.delivery.alert_id,
                              pending.delivery.destination)  # fmt: skip
                self.failed += 1

    def _give_up(self, d: _Delivery, error: str | None) -> None:
        self.failed += 1
        log.error("alert %s NOT sent to the %s %s: %s (it is in the ledger: otaudit alerts)",
                  d.alert_id, d.destination, d.shown, error)  # fmt: skip

    def _pause(self, p: _Pending, severity: str) -> str:
        """Wait before a retry: ``go``; ``yield`` when a more severe delivery is waiting (this
        one goes back to the front of its queue); ``stop`` when the notifier stops first."""
        if p.pause_s <= 0:
            return "go"
        if self._sleep is not None:
            self._sleep(p.pause_s)
            p.pause_s = 0.0
            return "go"
        more_severe = SEVERITIES[: SEVERITIES.index(severity)]
        with self._cond:
            while True:
                now = time.monotonic()
                if self._stopping.is_set() or now > self._deadline:
                    return "stop"
                if now >= p.not_before:
                    p.pause_s = 0.0
                    return "go"
                if any(self._waiting[s] for s in more_severe):
                    self._waiting[severity].appendleft(p)
                    return "yield"
                self._cond.wait(min(p.not_before, self._deadline) - now)

    def _attempt(self, p: _Pending, severity: str) -> None:
        """One attempt at ``p`` (after its wait); a retry goes back to the front of its queue."""
        s, d = self.settings, p.delivery
        waited = self._pause(p, severity)
        if waited == "yield":
            return
        if waited == "stop":
            self._give_up(d, "otaudit stopped before it could be sent")
            return
        retry_after, error = self._post(d)
        if error is None:
            self.delivered += 1
            log.info("alert %s sent to the %s %s", d.alert_id, d.destination, d.shown)
            return
        if retry_after is None or p.attempt >= s.attempts or self._stopping.is_set():
            self._give_up(d, error)
            return
        pause = max(p.delay_s, retry_after)
        if time.monotonic() + pause > self._deadline:
            self._give_up(d, error)
            return
        log.warning("alert %s: %s %s failed (%s); retry %d of %d in %.0f s", d.alert_id,
                    d.destination, d.shown, error, p.attempt, s.attempts - 1, pause)  # fmt: skip
        p.attempt += 1
        p.delay_s = min(p.delay_s * 2, 60.0)
        p.pause_s, p.not_before = pause, time.monotonic() + pause
        with self._cond:
            self._waiting[severity].appendleft(p)

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
