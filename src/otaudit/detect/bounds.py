"""How much a rule may remember, and what it forgets first when it would remember more.

Every rule that keeps state per group (``threshold``, ``sequence``, ``new_value``,
``silence``) keeps at most :attr:`Bounds.max_groups` groups and an estimated
:attr:`Bounds.max_bytes` of them; within one group, a window keeps at most
:attr:`Bounds.max_group_records` records and :attr:`Bounds.max_group_bytes` of them, and a
baseline as many values. Past a bound, the rule forgets its least useful groups (the
rule kind says which: fewest records, then least recently seen) down to three quarters
of the bound, counts them in ``evicted`` and says so in the log. Values that a rule only
compares (``distinct`` values, baseline values) are kept as a 16-byte digest when long.

The byte figures are estimates of what Python holds (string lengths plus a fixed cost
per object), made to be cheap; the measured process stays within a small multiple of
them (``docs/detection.md``, "Bounds").
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeVar

log = logging.getLogger("otaudit.detect")

#: At most one log line per rule in this long (the first eviction is always logged).
LOG_EVERY_S: Final = 60.0
#: Compared values longer than this are kept as a digest.
MAX_KEPT_VALUE_CHARS: Final = 64
#: Estimated bytes of one Python object of each kind a rule keeps (headers, slots, entries).
OBJECT_BYTES: Final = 64
STR_BYTES: Final = 49
ITEM_BYTES: Final = 120
#: Estimated bytes of one count a silence rule keeps (a dict entry of two small numbers).
COUNT_BYTES: Final = 64


@dataclass(frozen=True)
class Bounds:
    """The limits on one rule's memory (each rule has its own)."""

    #: Groups one rule keeps (actors, client addresses, services ...).
    max_groups: int = 20_000
    #: Estimated bytes of one rule's groups, with their keys, records and values.
    max_bytes: int = 32 * 1024 * 1024
    #: Records one group's window keeps (the newest by record time); also the largest
    #: ``threshold`` a rule may ask for (``rules.MAX_THRESHOLD``).
    max_group_records: int = 10_000
    #: Estimated bytes of one group's records or values (the newest are kept).
    max_group_bytes: int = 2 * 1024 * 1024

    def __post_init__(self) -> None:
        for name in ("max_groups", "max_bytes", "max_group_records", "max_group_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"Bounds.{name} must be at least 1, got {getattr(self, name)}")


DEFAULT_BOUNDS: Final = Bounds()


def text_bytes(value: Any) -> int:
    """The estimated bytes of one kept value (a string, number, digest or None)."""
    if isinstance(value, str):
        return STR_BYTES + len(value)
    if isinstance(value, bytes):
        return 33 + len(value)
    return 32


def key_bytes(key: tuple[Any, ...]) -> int:
    """The estimated bytes of a group key (a tuple of field values)."""
    return OBJECT_BYTES + sum(text_bytes(v) for v in key)


def kept_value(value: Any) -> Any:
    """What a rule keeps of a value it only compares: the value, or when long its digest."""
    if isinstance(value, str) and len(value) > MAX_KEPT_VALUE_CHARS:
        encoded = value.encode("utf-8", "surrogatepass")
        return hashlib.blake2b(encoded, digest_size=16).digest()
    return value


class Sized(Protocol):
    """A group's state that knows its estimated size."""

    nbytes: int


G = TypeVar("G", bound=Sized)
K = TypeVar("K", bound=Hashable)


class GroupTable(dict[K, G]):
    """A rule's groups by key, with their estimated bytes (``nbytes``, keys included) and
    the number of groups forgotten to stay within the bounds (``evicted``).

    Whoever changes a group's size adds the change to ``nbytes`` (``grew``); ``fit``
    forgets the least useful groups when the table is over a bound.
    """

    def __init__(self, rule_name: str, bounds: Bounds,
                 worth: Callable[[G], tuple[Any, ...]]) -> None:  # fmt: skip
        super().__init__()
        self.rule_name = rule_name
        self.bounds = bounds
        self.worth = worth
        self.nbytes = 0
        self.evicted = 0
        self._logged: tuple[float, int] | None = None  # (when, evicted) at the last log line

    def add(self, key: K, group: G) -> G:
        """Keep a new group (its key and its present size are counted)."""
        self[key] = group
        self.nbytes += key_bytes(key) + group.nbytes  # type: ignore[arg-type]
        return group

    def drop(self, key: K) -> None:
        """Forget one group."""
        group = self.pop(key)
        self.nbytes -= key_bytes(key) + group.nbytes  # type: ignore[arg-type]

    def keep_only(self, keep: Callable[[K, G], bool]) -> None:
        """Forget the groups for which ``keep`` is False (pruning old state, not counted)."""
        for key in [k for k, g in self.items() if not keep(k, g)]:
            self.drop(key)

    def over(self) -> bool:
        """Whether the table is past one of its bounds."""
        return len(self) > self.bounds.max_groups or self.nbytes > self.bounds.max_bytes

    def fit(self, protect: K | None = None) -> list[K]:
        """When past a bound, forget the least useful groups (never ``protect``, the group
        of the record being judged) down to three quarters of each bound; return the keys
        forgotten (in the order forgotten)."""
        if not self.over():
            return []
        most_groups = self.bounds.max_groups * 3 // 4
        most_bytes = self.bounds.max_bytes * 3 // 4
        worth = self.worth
        order = sorted(self, key=lambda k: worth(self[k]))
        forgotten: list[K] = []
        for key in order:
            if len(self) <= most_groups and self.nbytes <= most_bytes:
                break
            if key == protect:
                continue
            self.drop(key)
            forgotten.append(key)
        self.evicted += len(forgotten)
        now = time.monotonic()
        if self._logged is None or now - self._logged[0] >= LOG_EVERY_S:
            since = self.evicted - (0 if self._logged is None else self._logged[1])
            log.warning(
                "rule %s: over its bound of %d groups or %d bytes; forgot %d of its least "
                "useful groups (%d forgotten so far; %d groups and about %d bytes kept)",
                self.rule_name, self.bounds.max_groups, self.bounds.max_bytes, since,
                self.evicted, len(self), self.nbytes,
            )  # fmt: skip
            self._logged = (now, self.evicted)
        return forgotten
