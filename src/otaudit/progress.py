"""Progress of long work: the callback the library's long loops take, and a counter for them.

A function that reads or checks many records takes ``progress: Progress | None``; it calls
it with the number of records done so far, at most every :data:`EVERY` records and once at
the end with the total, so that reporting costs nothing measurable. Without a callback the
function behaves exactly as before. Drawing a bar is the CLI's business
(``otaudit.cli.progress``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Final, TypeVar

#: Called with the number of records (or steps) done so far.
Progress = Callable[[int], object]

#: Records between two calls of a progress callback.
EVERY: Final = 10_000

T = TypeVar("T")


def counted(items: Iterable[T], progress: Progress | None, start: int = 0) -> Iterator[T]:
    """``items`` unchanged; ``progress`` is called with ``start`` plus the number yielded so
    far every :data:`EVERY` items, and once more when they are exhausted."""
    if progress is None:
        yield from items
        return
    done = start
    for item in items:
        yield item
        done += 1
        if done % EVERY == 0:
            progress(done)
    progress(done)
