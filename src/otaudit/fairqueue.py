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
limit while one source is active, a few tens of milliseconds of commit work while
several are, so that a lone busy Collector loses nothing to fairness.
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
