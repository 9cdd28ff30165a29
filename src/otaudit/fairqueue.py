"""Fair shares of the single writer: what the next commit takes, from whom.

Every export waits for the transaction that is committing when it arrives, so the
time one commit takes is the wait it can impose on everyone else. A client sending
1,000-record requests as fast as they are answered would otherwise keep the writer
busy with its own transactions and add one whole commit to every other client's
latency. The queue here keeps, per source (an ingest token, or a client address
when tokens are off), the requests waiting, and hands out slices:

- each :meth:`FairQueue.take` serves the sources waiting in the order they were
  last served, least recently first, a share of the slice each, round after round;
- a request larger than its share is split: its first records commit now, the rest
  in the next commit after the other sources had their turn. The request is answered
  once its last record is durable (nothing is acknowledged early).

How large a slice is, the sequencer decides (:mod:`otaudit.ledger`): the whole batch
limit while one source is active, about ten milliseconds of commit work while
several are, so that a lone busy Collector loses nothing to fairness.

The processor is shared the same way one step earlier: :class:`SourceRates` tells which
source sends more than its share, and ingest decodes that source's requests in worker
processes of lower CPU priority while others are active.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar


class Sized(Protocol):
    """What the queue needs of a request: how many records it holds."""

    @property
    def size(self) -> int:
        """The number of records."""
        ...


W = TypeVar("W", bound=Sized)


@dataclass
class Piece(Generic[W]):
    """Records ``start:end`` of ``work``; ``last`` when they finish it."""

    work: W
    start: int
    end: int

    @property
    def last(self) -> bool:
        """Whether this piece holds the request's last records."""
        return self.end == self.work.size


@dataclass
class _Waiting(Generic[W]):
    work: W
    queued_at: float
    taken: int = 0  # records of work already handed out


@dataclass
class FairQueue(Generic[W]):
    """Requests per source, handed out in fair slices (not thread-safe: the caller locks).

    Sources with nothing waiting are forgotten; one that starts waiting again is in line
    before every source served since, in order of arrival.
    """

    _fresh: OrderedDict[str, deque[_Waiting[W]]] = field(default_factory=OrderedDict)
    _served: OrderedDict[str, deque[_Waiting[W]]] = field(default_factory=OrderedDict)
    _records: int = 0

    def put(self, source: str, work: W, queued_at: float) -> None:
        """Queue ``work`` (not empty) behind the earlier requests of ``source``."""
        waiting = self._served.get(source) or self._fresh.get(source)
        if waiting is None:
            waiting = self._fresh[source] = deque()
        waiting.append(_Waiting(work, queued_at))
        self._records += work.size

    def __len__(self) -> int:
        """Records queued and not yet handed out."""
        return self._records

    @property
    def sources(self) -> int:
        """How many sources have records waiting."""
        return len(self._fresh) + len(self._served)

    def oldest(self) -> float | None:
        """The earliest ``queued_at`` of a request not yet handed out completely."""
        heads = [w[0].queued_at for d in (self._fresh, self._served) for w in d.values()]
        return min(heads, default=None)

    def take(self, limit: int) -> list[Piece[W]]:
        """At most ``limit`` records (at least one piece while any wait), shared out
        round-robin over the sources, least recently served first."""
        pieces: list[Piece[W]] = []
        room = max(1, limit)
        while room > 0 and self.sources:
            share = max(1, room // self.sources)
            line = [(s, self._fresh) for s in self._fresh] + [
                (s, self._served) for s in self._served
            ]
            for source, where in line:
                if room <= 0:
                    break
                waiting = where.pop(source)
                head = waiting[0]
                n = min(head.work.size - head.taken, share, room)
                pieces.append(Piece(head.work, head.taken, head.taken + n))
                head.taken += n
                room -= n
                self._records -= n
                if head.taken == head.work.size:
                    waiting.popleft()
                if waiting:
                    self._served[source] = waiting  # served: to the back of the line
        return pieces


#: How fast a source's recent rate forgets: the rate halves after this many seconds idle.
RATE_HALF_LIFE_S = 1.0
#: A source is heavy when its recent bytes exceed the mean of the active sources' by this factor
#: (for two sources: when one sends more than 1.5x the other).
HEAVY_FACTOR = 1.2
#: Sources tracked at most (the least recently seen beyond it are forgotten): a bound on
#: the work per request when many client addresses send at once.
MAX_SOURCES = 1024


@dataclass
class SourceRates:
    """Recent bytes per source (a sum decaying with a half-life of
    :data:`RATE_HALF_LIFE_S`), to tell who takes more than a fair share.

    Decoding runs before a request's records are known, so its share is measured in
    request bytes (decode time grows with them). While two or more sources are active
    (within ``active_s``), a source that sent more than :data:`HEAVY_FACTOR` times the
    mean is *heavy*: its requests are decoded at a lower CPU priority (see
    :mod:`otaudit.ingest`), so that a flood on two cores cannot make every other client
    wait for the processor. A lone source is never heavy. Not thread-safe: the caller locks.
    """

    active_s: float
    _rates: dict[str, tuple[float, float]] = field(default_factory=dict)  # rate, at

    def note(self, source: str, amount: int, now: float) -> bool:
        """Count ``amount`` bytes from ``source`` at ``now``; whether it is heavy now.

        A source is judged on what it sent before this request, so that sources sending
        alike are never heavy for the request that happens to arrive last.
        """
        rates, horizon = self._rates, now - self.active_s
        before = self._decayed(source, now)
        rates.pop(source, None)
        # Least recently seen first: forget the expired ones and any beyond the bound.
        while rates and (len(rates) >= MAX_SOURCES or next(iter(rates.values()))[1] < horizon):
            del rates[next(iter(rates))]
        heavy = False
        if rates:
            total = before + sum(self._decayed(other, now) for other in rates)
            heavy = before > HEAVY_FACTOR * total / (len(rates) + 1)
        rates[source] = (before + amount, now)
        return heavy

    def _decayed(self, source: str, now: float) -> float:
        rate, at = self._rates.get(source, (0.0, now))
        decay: float = 0.5 ** ((now - at) / RATE_HALF_LIFE_S)
        return rate * decay
