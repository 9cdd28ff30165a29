"""What a detection rule sees of one sealed record: an :class:`Event`.

Events are built from the stored query columns (every one of them derived
from the sealed bytes and checked by ``verify``), in sequence order, both
while records are sealed and when history is read again, so a rule sees the
same events either way.
"""

from __future__ import annotations

import calendar
import functools
from typing import Any, Final

import orjson

from otaudit.store.events import EVENT_COLUMNS as EVENT_COLUMNS

#: The text fields a rule condition or group may name, besides ``attributes.<key>``.
FIELDS: Final = frozenset(
    {"pipeline", "signal", "service", "name", "actor", "actor_role", "client_address",
     "action", "target", "resource_type", "result", "producer"}
)  # fmt: skip
#: How far past its receipt a record's own time may lie; later times count as this.
MAX_SKEW_NS: Final = 300 * 1_000_000_000


@functools.lru_cache(maxsize=4096)
def _epoch_minute(prefix: str) -> int:
    return calendar.timegm(
        (int(prefix[0:4]), int(prefix[5:7]), int(prefix[8:10]), int(prefix[11:13]),
         int(prefix[14:16]), 0, 0, 0, 0)
    )  # fmt: skip


def parse_rfc3339_ns(text: str) -> int:
    """UTC nanoseconds of a stored ``YYYY-MM-DDTHH:MM:SS.fffffffffZ`` column."""
    seconds = _epoch_minute(text[:16]) + int(text[17:19])
    if len(text) == 30:  # the stored form: nine fraction digits
        return seconds * 1_000_000_000 + int(text[20:29])
    fraction = text[20:-1] if len(text) > 20 else ""
    return seconds * 1_000_000_000 + int(fraction.ljust(9, "0")[:9] or 0)


class Event:
    """One sealed record as rules see it: its audit fields, times and attributes.

    ``time`` is the record's own time (UTC ns), at most five minutes past ``received``
    (its receipt); ``seq`` its place in the ledger.
    """

    __slots__ = (
        "_attributes",
        "action",
        "actor",
        "actor_role",
        "client_address",
        "name",
        "pipeline",
        "producer",
        "received",
        "resource_type",
        "result",
        "seq",
        "service",
        "signal",
        "target",
        "time",
    )  # fmt: skip

    def __init__(self, row: tuple[Any, ...]) -> None:
        (self.seq, time, received, self.pipeline, self.signal, self.service, self.name,
         self.actor, self.actor_role, self.client_address, self.action, self.target,
         self.resource_type, self.result, self.producer, self._attributes) = row  # fmt: skip
        self.received: int = parse_rfc3339_ns(received)
        # A producer cannot date records into the future to hold windows open.
        self.time: int = min(time, self.received + MAX_SKEW_NS)

    def attribute(self, key: str) -> str | None:
        """The text value of one record attribute (as query columns show it), or None."""
        attrs = self._attributes
        if attrs.__class__ is not dict:
            attrs = self._attributes = orjson.loads(attrs or "{}")
        value = attrs.get(key)
        return None if value is None else str(value)

    def get(self, field: str) -> Any:
        """A field by name: a column, ``time``/``received`` (UTC ns) or ``attributes.<key>``."""
        if field.startswith("attributes."):
            return self.attribute(field[len("attributes.") :])
        return getattr(self, field)
