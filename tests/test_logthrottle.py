"""The same log line at most once per interval, then once more with the count held back."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest

from otaudit.logthrottle import Throttle, throttle


class Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def logger() -> Iterator[tuple[logging.Logger, Keep]]:
    logger = logging.getLogger("otaudit.test.throttle")
    keep = Keep()
    logger.addHandler(keep)
    logger.addFilter(Throttle(interval_s=0.3))
    logger.propagate = False
    yield logger, keep
    logger.removeHandler(keep)
    logger.filters.clear()


def test_a_flood_is_one_line_then_a_count(logger: tuple[logging.Logger, Keep]) -> None:
    log, keep = logger
    for n in range(1000):
        log.warning("connection refused, %d open", n)
    assert keep.lines == ["connection refused, 0 open"]
    time.sleep(0.5)
    assert len(keep.lines) == 2
    assert keep.lines[1].startswith("connection refused, 999 open (999 times in the last ")
    log.warning("connection refused, %d open", 1000)  # within the window the summary began
    time.sleep(0.5)
    assert len(keep.lines) == 3
    assert keep.lines[2].startswith("connection refused, 1000 open (1 times in the last ")
    log.warning("connection refused, %d open", 1001)  # a quiet interval passed: shown at once
    assert keep.lines[3:] == ["connection refused, 1001 open"]


def test_kinds_are_counted_apart(logger: tuple[logging.Logger, Keep]) -> None:
    log, keep = logger
    for _ in range(3):
        log.warning("header timeout")
        log.warning("body timeout")
        for exc in (OSError("Too many open files"), ValueError("bad fd")):
            try:
                raise exc
            except Exception:
                log.exception("accept failed")
    assert keep.lines == ["header timeout", "body timeout", "accept failed", "accept failed"]


def test_throttle_installs_once() -> None:
    throttle(("otaudit.test.once",))
    throttle(("otaudit.test.once",))
    filters = logging.getLogger("otaudit.test.once").filters
    assert [type(f) for f in filters] == [Throttle]
    filters.clear()
