"""The same log line at most once per interval, and then how often it was held back.

A client can make a server log once per connection or request (a refused
connection, an invalid request, a timeout), and a full file table makes
asyncio's accept loop log once per attempt: without a limit, the log grows
by megabytes a second and fills the disk. :class:`Throttle` passes the first
record of each kind, holds back the others for ``interval_s``, and at the end
of that interval logs the last one held back once more with their count.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Final

#: The loggers a client can make write once per connection or request.
NOISY_LOGGERS: Final = ("asyncio", "uvicorn.error", "grpc._server", "otaudit.receiver")
_SUMMARY: Final = "_otaudit_throttle_summary"

_Kind = tuple[str, str, str]


@dataclass
class _Window:
    started: float
    held: int = 0
    last: logging.LogRecord | None = None
    timer: threading.Timer | None = field(default=None, repr=False)


class Throttle(logging.Filter):
    """A logger filter: one record per kind (logger, message template, exception type) and
    ``interval_s``; then one summary of the records held back, with their count."""

    def __init__(self, interval_s: float = 10.0) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._windows: dict[_Kind, _Window] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        """Pass the first record of its kind in a window; hold back the rest."""
        if getattr(record, _SUMMARY, False):
            return True
        exc_type = record.exc_info[0].__name__ if record.exc_info and record.exc_info[0] else ""
        kind = (record.name, str(record.msg), exc_type)
        now = time.monotonic()
        with self._lock:
            window = self._windows.get(kind)
            if window is None or (now - window.started >= self.interval_s and not window.held):
                if len(self._windows) > 1000:  # kinds seen long ago are forgotten
                    self._windows = {k: w for k, w in self._windows.items() if w.held}
                self._windows[kind] = _Window(now)
                return True
            window.held += 1
            window.last = record
            if window.timer is None:
                delay = max(0.0, window.started + self.interval_s - now)
                window.timer = threading.Timer(delay, self._summarize, (kind,))
                window.timer.daemon = True
                window.timer.start()
            return False

    def _summarize(self, kind: _Kind) -> None:
        """Log the last record held back in ``kind``'s window, with the count; a new window
        starts with it."""
        with self._lock:
            window = self._windows[kind]
            held, last, seconds = window.held, window.last, time.monotonic() - window.started
            self._windows[kind] = _Window(time.monotonic())
        if last is None:
            return
        summary = copy.copy(last)
        summary.msg = f"{last.msg} ({held} times in the last {seconds:.0f} s)"
        setattr(summary, _SUMMARY, True)
        logging.getLogger(last.name).handle(summary)


def throttle(loggers: tuple[str, ...] = NOISY_LOGGERS, interval_s: float = 10.0) -> None:
    """Put a :class:`Throttle` on each of ``loggers`` (once; calling again changes nothing)."""
    for name in loggers:
        logger = logging.getLogger(name)
        if not any(isinstance(f, Throttle) for f in logger.filters):
            logger.addFilter(Throttle(interval_s))
