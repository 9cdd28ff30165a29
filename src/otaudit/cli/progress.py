"""A progress bar on stderr for long work, shown only on a terminal.

Commands that read or check many records (``verify``, ``export``, ``verify-bundle``,
``detect --since``, ``migrate``, ``sample``, ``backup``) wrap the library call in
:func:`progress_bar` and pass what it yields as the call's ``progress`` callback: a bar
when stderr is a terminal and the work is large, None (nothing printed) otherwise, so
piped output and logs stay clean.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from otaudit.progress import Progress as ProgressFn

#: Work below this many records finishes quickly enough to need no bar.
BAR_FROM_RECORDS: Final = 100_000


@contextmanager
def progress_bar(
    what: str, total: int | None, *, work: int | None = None, bar_from: int = BAR_FROM_RECORDS
) -> Iterator[ProgressFn | None]:
    """A bar titled ``what`` counting up to ``total`` (None: not known ahead, a count only),
    when stderr is a terminal and ``work`` (default ``total``) is at least ``bar_from``;
    otherwise None. The bar disappears when the work ends."""
    console = Console(stderr=True)
    size = total if work is None else work
    if size is None or size < bar_from or not console.is_terminal:
        yield None
        return
    columns = (*Progress.get_default_columns()[:1], BarColumn(), MofNCompleteColumn(),
               TimeRemainingColumn())  # fmt: skip
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(what, total=total)
        yield lambda done: bar.update(task, completed=done)
