"""Waiting for something another process does, in one place: poll with a deadline.

A test that waits calls these and then asserts on what they return, so that a timeout
fails with the assertion's message (what was expected, what was there), not here.
Nothing in the suite sleeps to show that something did not happen: it waits for a later
event that could only come after it (a checkpoint, a position, a log line) instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def wait_until(check: Callable[[], T], timeout_s: float = 30.0, interval_s: float = 0.05) -> T:
    """Call ``check`` until it returns a true value or ``timeout_s`` passes; its last value."""
    deadline = time.monotonic() + timeout_s
    while not (value := check()) and time.monotonic() < deadline:
        time.sleep(interval_s)
    return value


def wait_for_text(path: Path, *texts: str, timeout_s: float = 10.0) -> str:
    """The text of ``path`` once it holds every one of ``texts``, or as it is at the end."""

    def holds() -> bool:
        log = path.read_text(errors="replace")
        return all(t in log for t in texts)

    wait_until(holds, timeout_s)
    return path.read_text(errors="replace")
