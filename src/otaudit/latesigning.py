"""Records left unsigned while the server went on receiving: the trace of a history signed again.

A running server signs what it has sealed within seconds (``--checkpoint-interval``,
1 s by default). Someone who can write the database but not the signing key can rewrite
records, rebuild the tree and delete the checkpoints that commit to the old history; if
the server then signs again without a saved checkpoint to check against (see
:mod:`otaudit.signerstate`), the rewritten records end up under a checkpoint signed long
after they were received. ``verify`` looks for exactly that, in sealed data only.

A record *s* is reported when the checkpoint that first covers it also covers a client
record (any pipeline but otaudit's own) received more than ``max_delay_s`` after *s*:
the server was receiving that record while *s* was still unsigned. The receive times are
sealed in the records and the checkpoint sizes are signed, so nothing a database writer
can change without breaking a signature hides it (the stored signing time is not signed
and is not used). Records that only wait for a server to start (a crash, reads recorded by
a command while no server ran) are not reported: only the server receives client records,
and it signs what is waiting when it starts, before it takes any.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from otaudit.record import rfc3339_ns

DEFAULT_MAX_DELAY_S: Final = 600
"""The default bound: ten minutes, 600 checkpoint intervals of a default server, and room
for a slow commit under load or clocks of several servers that differ a little."""


@dataclass(frozen=True)
class LateRecord:
    """A record that stayed unsigned while the server received one ``later_ns`` after it."""

    seq: int
    received_ns: int
    checkpoint_size: int
    later_seq: int
    later_ns: int

    def message(self, max_delay_s: int) -> str:
        """The failure ``verify`` reports, naming this record first."""
        return (
            f"seq {self.seq}: received at {rfc3339_ns(self.received_ns)} but first signed by the "
            f"checkpoint at tree size {self.checkpoint_size}, which also covers seq "
            f"{self.later_seq}, received {_span(self.later_ns - self.received_ns)} later "
            f"(limit: --max-signing-delay {duration_text(max_delay_s)}): the server went on "
            "receiving while this record stayed unsigned; the history from here on may have "
            "been rewritten and signed again, or the server could not sign for that long"
        )


def duration_text(seconds: int) -> str:
    """``seconds`` as a duration option value: ``10m``, ``1h``, ``90s``."""
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _span(ns: int) -> str:
    seconds = ns / 1e9
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class LateSigning:
    """Finds the first record signed too late (module docstring), fed records in seq order.

    Per checkpoint range it keeps the records whose receive time is lower than every one
    before them (the only ones that can be the first late record), so memory stays small
    while receive times rise with seq, as they do.
    """

    def __init__(self, checkpoint_sizes: Iterable[int], max_delay_s: int) -> None:
        self._ends = sorted({size for size in checkpoint_sizes if size > 0})
        self._max_ns = max_delay_s * 1_000_000_000
        self._at = 0  # index in _ends of the checkpoint that first covers the record seen
        self._minima: list[tuple[int, int]] = []  # (seq, received_ns), times falling
        self._negated: list[int] = []  # -received_ns of _minima, rising (for bisect)
        self._done = False
        self.found: LateRecord | None = None

    def see(self, seq: int, received_ns: int, client: bool) -> None:
        """Take the next record: its seq, sealed receive time, and whether a client sent it."""
        if self._done:
            return
        if self._at < len(self._ends) and seq >= self._ends[self._at]:
            if self.found is not None:  # the earliest range with a late record decides
                self._done = True
                return
            while self._at < len(self._ends) and seq >= self._ends[self._at]:
                self._at += 1
            self._minima.clear()
            self._negated.clear()
        if self._at == len(self._ends):  # not under any checkpoint yet
            self._done = True
            return
        if client and self._minima:
            # The first earlier record of this range received more than the bound before.
            i = bisect.bisect_right(self._negated, self._max_ns - received_ns)
            if i < len(self._minima):
                first, first_ns = self._minima[i]
                if self.found is None or first < self.found.seq:
                    self.found = LateRecord(first, first_ns, self._ends[self._at], seq,
                                            received_ns)  # fmt: skip
        if not self._minima or received_ns < self._minima[-1][1]:
            self._minima.append((seq, received_ns))
            self._negated.append(-received_ns)
