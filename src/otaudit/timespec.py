"""Points in time as users write them: RFC 3339, a date, or a duration ago."""

from __future__ import annotations

import calendar
import re
from typing import Final

_DURATION: Final = re.compile(r"([0-9]{1,12})([smhdw])")  # 12 digits reach past 1970 in any unit
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_TIME: Final = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})(?:[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]{1,9}))?([Zz]|[+-][0-9]{2}:[0-9]{2}))?"
)
_MAX_NS: Final = 2**63 - 1
TIME_HELP: Final = (
    "RFC 3339 (2026-01-01T00:00:00Z, or a date: 2026-01-01) or a duration ago (90d, 12h, 30m)"
)


def _shown(text: str) -> str:
    """``text`` quoted for an error message, cut to 40 characters (it may be a client's)."""
    return repr(text) if len(text) <= 40 else f"{text[:40]!r}... ({len(text)} characters)"


def parse_duration(text: str) -> int:
    """Seconds in a duration: a number and one of ``s m h d w`` (``90d``, ``12h``, ``30m``).

    Raises ``ValueError`` for anything else.
    """
    if m := _DURATION.fullmatch(text):
        return int(m[1]) * _UNITS[m[2]]
    raise ValueError(f"{_shown(text)} is not a duration like 90d, 12h, 30m, 45s")


def parse_time(text: str, now_ns: int) -> int:
    """UTC nanoseconds since the epoch of ``text``.

    ``text`` is RFC 3339 with an offset (``2026-01-01T00:00:00Z``,
    ``2026-01-01T02:00:00.5+02:00``), a date alone (midnight UTC), or a
    duration back from ``now_ns``: a number and one of ``s m h d w``
    (``90d``, ``12h``, ``30m``). Raises ``ValueError`` for anything else.
    """
    if m := _DURATION.fullmatch(text):
        # A duration reaching back before 1970 means "from the beginning".
        return max(0, now_ns - int(m[1]) * _UNITS[m[2]] * 1_000_000_000)
    m = _TIME.fullmatch(text)
    if not m:
        raise ValueError(f"{_shown(text)} is neither RFC 3339 nor a duration like 90d, 12h, 30m")
    y, mo, d, h, mi, s = (int(g or 0) for g in m.groups()[:6])
    offset = 0
    if (zone := m[8]) and zone not in "Zz":
        offset = (-1 if zone[0] == "-" else 1) * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    if not (1 <= mo <= 12 and 1 <= d <= calendar.monthrange(y, mo)[1]) or h > 23 or mi > 59:
        raise ValueError(f"{_shown(text)} is not a valid date and time")
    if s > 59 or abs(offset) >= 86400:
        raise ValueError(f"{_shown(text)} is not a valid date and time")
    seconds = calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0)) - offset
    # Stored times are int64 nanoseconds: 1970 to 2262 is what a bound can mean.
    return min(max(0, seconds * 1_000_000_000 + int((m[7] or "").ljust(9, "0"))), _MAX_NS)
