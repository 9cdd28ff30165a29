"""Audit data that did not arrive, said in the log: once a minute per cause at most.

A span without ``audit.action`` (a typo such as ``audit.acton``), an export to a wrong
path or with a bad token stores nothing, and a counter on ``/metrics`` is easy to miss.
:class:`DropLog` logs the first of each cause at once, then holds the rest back for
:data:`INTERVAL_S` and logs one line with how many there were and from which client
addresses (the busiest first). A client cannot make it log more than one line per cause
a minute, nor grow it: addresses past :data:`MAX_ADDRESSES` per window count as
"other addresses", and every text a client chose is cut short and shown escaped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Final

from otaudit.textsafety import terminal_text

INTERVAL_S: Final = 60.0
MAX_ADDRESSES: Final = 100
ADDRESSES_SHOWN: Final = 5
_DETAIL_CHARS: Final = 200

log = logging.getLogger("otaudit.drops")


@dataclass(frozen=True)
class Cause:
    """How one cause of loss is told: its log level and what was lost, in words."""

    level: int
    what: str  # "{n} <what>", e.g. "span(s) without audit.action were not kept"
    hint: str = ""


#: Every cause the receivers report, by the ``reason`` that also labels ``/metrics``.
CAUSES: Final = {
    "not_audit": Cause(logging.INFO, "record(s) without the audit attribute were not kept"),
    "audit_action_missing": Cause(
        logging.WARNING,
        "record(s) carrying audit attributes but not the one that selects them were not kept",
        "a misspelt attribute name, or an instrumentation that forgot the action?",
    ),
    "metrics_not_kept": Cause(logging.INFO, "metric data point(s) were not kept"),
    "unauthenticated": Cause(
        logging.WARNING,
        "export request(s) were refused for a missing or unknown token (401, UNAUTHENTICATED)",
        "check the exporter's Authorization header or otaudit token list",
    ),
    "forbidden": Cause(
        logging.WARNING,
        "export request(s) were refused: the token lacks the ingest scope (403)",
    ),
    "not_found": Cause(
        logging.WARNING,
        "request(s) went to a path this listener does not serve (404)",
        "OTLP/HTTP exports go to /v1/traces and /v1/logs",
    ),
    "method_not_allowed": Cause(
        logging.WARNING, "request(s) used a method this path does not take (405)"
    ),
    "bad_request": Cause(logging.WARNING, "export request(s) could not be decoded (400)"),
    "too_large": Cause(logging.WARNING, "export request(s) were too large (413)"),
    "unsupported_media_type": Cause(
        logging.WARNING, "export request(s) had a content type otaudit does not take (415)"
    ),
    "incomplete_body": Cause(logging.WARNING, "export request(s) ended before their body"),
    "overloaded": Cause(
        logging.WARNING, "export request(s) were answered 503 to retry later (overloaded)"
    ),
    "store_unavailable": Cause(
        logging.ERROR, "export request(s) were answered 503: the ledger was unavailable"
    ),
    "internal": Cause(logging.ERROR, "export request(s) failed with an internal error"),
}


@dataclass
class _Window:
    started: float
    total: int = 0
    addresses: Counter[str] = field(default_factory=Counter)
    detail: str = ""
    timer: threading.Timer | None = field(default=None, repr=False)


class DropLog:
    """Counts of lost audit data per cause and client address, logged at a bounded rate."""

    def __init__(self, interval_s: float = INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._windows: dict[str, _Window] = {}
        self._lock = threading.Lock()

    def note(self, cause: str, address: str | None, count: int = 1, detail: str = "") -> None:
        """Count ``count`` items lost to ``cause`` from ``address``; ``detail`` (the last
        one is kept) says more, such as the path or the attribute names seen."""
        if count <= 0:
            return
        now = time.monotonic()
        who = terminal_text((address or "an unknown address")[:64])
        detail = terminal_text(detail[:_DETAIL_CHARS])
        with self._lock:
            window = self._windows.get(cause)
            if window is None:  # the first of its cause for a while: said at once
                self._windows[cause] = window = _Window(now)
                timer = threading.Timer(self.interval_s, self._summarize, (cause,))
                timer.daemon = True
                window.timer = timer
                timer.start()
                first = True
            else:
                first = False
                window.total += count
                if who in window.addresses or len(window.addresses) < MAX_ADDRESSES:
                    window.addresses[who] += count
                else:
                    window.addresses["other addresses"] += count
                if detail:
                    window.detail = detail
        if first:
            self._log(cause, count, Counter({who: count}), detail, None)

    def close(self) -> None:
        """Log what is held back now (the server is stopping)."""
        with self._lock:
            causes = list(self._windows)
        for cause in causes:
            self._summarize(cause)

    def _summarize(self, cause: str) -> None:
        with self._lock:
            window = self._windows.pop(cause, None)
        if window is None:
            return
        if window.timer is not None:
            window.timer.cancel()
        if window.total:
            seconds = time.monotonic() - window.started
            self._log(cause, window.total, window.addresses, window.detail, seconds)

    def _log(
        self, cause: str, n: int, addresses: Counter[str], detail: str, seconds: float | None
    ) -> None:
        spec = CAUSES.get(cause) or Cause(logging.WARNING, f"item(s) were lost ({cause})")
        busiest = addresses.most_common(ADDRESSES_SHOWN)
        origin = ", ".join(f"{count} from {who}" for who, count in busiest)
        if len(addresses) > len(busiest):
            origin += f" and {len(addresses) - len(busiest)} more address(es)"
        when = "" if seconds is None else f" in the last {seconds:.0f} s"
        parts = [f"{n} {spec.what}{when}: {origin}"]
        if detail:
            parts.append(detail)
        if spec.hint:
            parts.append(spec.hint)
        if seconds is None:
            parts.append(f"more of these are summed up for {self.interval_s:g} s")
        log.log(spec.level, "; ".join(parts))
