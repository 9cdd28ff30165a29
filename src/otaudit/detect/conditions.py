"""Rule conditions: a small YAML language compiled to predicates over events.

A condition is a mapping; every entry must hold::

    action: login                      # equal (numbers and booleans compare as text)
    result: {in: [failure, denied]}    # one of
    actor: {same_as: target}           # equal to another field of the same record
    attributes.audit.new_value: {matches: "(?i)admin"}   # RE2 syntax, searched in linear time
    client_address: {exists: true}
    time: {outside_hours: {from: "08:00", to: "18:00", days: [mon, tue, wed, thu, fri],
                           timezone: Europe/Berlin}}
    any: [{...}, {...}]                # at least one of
    all: [{...}, {...}]
    not: {...}

A field is a record column (``actor``, ``action``, ``target``, ``result``,
``client_address``, ``resource_type``, ``service``, ``producer``,
``pipeline``, ``signal``, ``name``, ``actor_role``) or ``attributes.<key>``,
the text of any record attribute. Errors name the path of the bad entry.

Patterns run on RE2 (the ``google-re2`` package), whose matching time grows linearly
with the text whatever the pattern: a rule author cannot write a pattern that one record
turns into minutes of backtracking. RE2 has no backreferences or lookaround; a pattern
using them is refused when the rule is loaded, with RE2's reason.
"""

from __future__ import annotations

import datetime
import operator
import re
import zoneinfo
from collections.abc import Callable
from typing import Any, Final

import re2

from otaudit.detect.event import FIELDS, Event
from otaudit.errors import ConfigError

Predicate = Callable[[Event], bool]

_DAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CLOCK: Final = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")
#: What a ``matches`` test remembers of the values it judged: how many, how long each may
#: be (longer ones are searched every time, never kept), how many characters in all.
_MEMO_SIZE: Final = 4096
_MEMO_VALUE_CHARS: Final = 256
_MEMO_CHARS: Final = 256 * 1024
_RE2_OPTIONS: Final = re2.Options()
_RE2_OPTIONS.log_errors = False  # the reason goes into the RuleError instead
_MAX_DEPTH: Final = 40
_OPERATORS: Final = ("equals", "not_equals", "in", "not_in", "matches", "exists", "same_as",
                     "differs_from")  # fmt: skip


class RuleError(ConfigError):
    """A rule file or rule is invalid; the message names the file, the rule and the entry."""


def text(value: Any, where: str) -> str:
    """A YAML scalar as the text a field is compared with."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise RuleError(f"{where}: expected a string, number or boolean, got {type(value).__name__}")


def check_field(name: Any, where: str) -> str:
    """A field name a condition or group-by may use; RuleError otherwise."""
    if not isinstance(name, str):
        raise RuleError(f"{where}: a field name must be a string")
    if name in FIELDS or (name.startswith("attributes.") and len(name) > len("attributes.")):
        return name
    known = ", ".join(sorted(FIELDS))
    raise RuleError(f"{where}: unknown field {name!r} (known: {known}, attributes.<key>)")


def compile_condition(spec: Any, where: str) -> Predicate:
    """Compile one condition mapping; ``where`` locates it in error messages."""
    if where.count(".") + where.count("[") > _MAX_DEPTH:
        raise RuleError(f"{where}: conditions nest deeper than {_MAX_DEPTH} levels")
    if not isinstance(spec, dict) or not spec:
        raise RuleError(f"{where}: a condition is a non-empty mapping of field: test")
    return _all([_entry(key, value, f"{where}.{key}") for key, value in spec.items()])


def _all(parts: list[Predicate]) -> Predicate:
    """All of ``parts``, in order, stopping at the first that fails (chained closures are
    several times faster than ``all()`` over a generator, and rules run on every record)."""
    if len(parts) == 1:
        return parts[0]
    first, rest = parts[0], _all(parts[1:])
    return lambda e: first(e) and rest(e)


def _any(parts: list[Predicate]) -> Predicate:
    """Any of ``parts``, in order, stopping at the first that holds."""
    if len(parts) == 1:
        return parts[0]
    first, rest = parts[0], _any(parts[1:])
    return lambda e: first(e) or rest(e)


def _entry(key: Any, value: Any, where: str) -> Predicate:
    if key in ("any", "all"):
        if not isinstance(value, list) or not value:
            raise RuleError(f"{where}: expected a non-empty list of conditions")
        parts = [compile_condition(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return _any(parts) if key == "any" else _all(parts)
    if key == "not":
        inner = compile_condition(value, where)
        return lambda e: not inner(e)
    if key == "time":
        return _time_test(value, where)
    field = check_field(key, where)
    if not isinstance(value, dict):
        return _operator(field, "equals", value, where)
    if not value:
        raise RuleError(f"{where}: empty test")
    return _all([_operator(field, op, arg, f"{where}.{op}") for op, arg in value.items()])


def value_of(field: str) -> Callable[[Event], Any]:
    """The function reading one field of an event (None when absent)."""
    if field.startswith("attributes."):
        key = field[len("attributes.") :]
        return lambda e: e.attribute(key)
    return operator.attrgetter(field)


def _operator(field: str, op: Any, arg: Any, where: str) -> Predicate:
    # Each test is one closure over the field's reader: rules run on every record.
    get = value_of(field)
    if op in ("equals", "not_equals"):
        wanted = text(arg, where)
        if op == "equals":
            return lambda e: get(e) == wanted
        return lambda e: get(e) != wanted
    if op in ("in", "not_in"):
        if not isinstance(arg, list) or not arg:
            raise RuleError(f"{where}: expected a non-empty list")
        values = frozenset(text(v, f"{where}[{i}]") for i, v in enumerate(arg))
        if op == "in":
            return lambda e: get(e) in values
        return lambda e: get(e) not in values
    if op == "matches":
        if not isinstance(arg, str):
            raise RuleError(f"{where}: expected a regular expression string")
        return _memo_search(get, compile_pattern(arg, where))
    if op == "exists":
        if not isinstance(arg, bool):
            raise RuleError(f"{where}: expected true or false")
        if arg:
            return lambda e: get(e) not in (None, "")
        return lambda e: get(e) in (None, "")
    if op in ("same_as", "differs_from"):
        other = value_of(check_field(arg, where))
        same: bool = op == "same_as"

        def compare(e: Event) -> bool:
            mine, theirs = get(e), other(e)
            if mine is None or theirs is None:
                return False
            return bool(mine == theirs) == same

        return compare
    raise RuleError(f"{where}: unknown test {op!r} (known: {', '.join(_OPERATORS)})")


def compile_pattern(pattern: str, where: str) -> Callable[[str], bool]:
    """A rule's regular expression, compiled by RE2: the function telling whether it
    matches somewhere in a text. RuleError naming ``where`` and RE2's reason when RE2
    cannot compile it (backreferences, lookaround, repetition counts over 1000 ...)."""
    try:
        compiled: Any = re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise RuleError(
            f"{where}: invalid regular expression {pattern!r}: {reason} (rule patterns use "
            "RE2 syntax, matched in linear time: no backreferences, lookahead or lookbehind)"
        ) from None
    search = compiled.search

    def matches(value: str) -> bool:
        try:
            return search(value) is not None
        except UnicodeEncodeError:  # a lone surrogate: RE2 reads UTF-8 only
            return search(value.encode("utf-8", "replace").decode("utf-8")) is not None

    return matches


def _memo_search(get: Callable[[Event], Any], matches: Callable[[str], bool]) -> Predicate:
    """Whether the pattern matches the field, remembered per value (actions and results
    repeat endlessly). Only short values are remembered, at most ``_MEMO_SIZE`` of them and
    ``_MEMO_CHARS`` characters in all; the memory starts afresh when full."""
    seen: dict[str, bool] = {}
    chars = 0

    def search(e: Event) -> bool:
        nonlocal chars
        value = get(e)
        found = seen.get(value)
        if found is None:
            if value is None:
                return False
            found = matches(value)
            if len(value) <= _MEMO_VALUE_CHARS:
                if len(seen) >= _MEMO_SIZE or chars + len(value) > _MEMO_CHARS:
                    seen.clear()
                    chars = 0
                seen[value] = found
                chars += len(value)
        return found

    return search


def _clock(value: Any, where: str) -> int:
    if not isinstance(value, str) or not (m := _CLOCK.fullmatch(value)):
        raise RuleError(f"{where}: expected a time of day HH:MM (24-hour clock), got {value!r}")
    return int(m[1]) * 60 + int(m[2])


def _time_test(value: Any, where: str) -> Predicate:
    if not isinstance(value, dict) or len(value) != 1:
        raise RuleError(f"{where}: expected {{outside_hours: ...}} or {{within_hours: ...}}")
    ((op, hours),) = value.items()
    if op not in ("outside_hours", "within_hours"):
        raise RuleError(f"{where}: unknown time test {op!r} (outside_hours, within_hours)")
    within = working_hours(hours, f"{where}.{op}")
    if op == "within_hours":
        return within
    return lambda e: not within(e)


def working_hours(spec: Any, where: str) -> Predicate:
    """Whether an event's time falls in the given hours on the given days, in a time zone.

    ``{from: "08:00", to: "18:00", days: [mon, ..., fri], timezone: UTC}``; ``to`` is
    exclusive, and ``from`` after ``to`` spans midnight.
    """
    if not isinstance(spec, dict):
        raise RuleError(f"{where}: expected a mapping with from, to, days, timezone")
    unknown = set(spec) - {"from", "to", "days", "timezone"}
    if unknown:
        first = sorted(unknown, key=str)[0]
        raise RuleError(f"{where}: unknown key {first!r} (from, to, days, timezone)")
    start = _clock(spec.get("from", "08:00"), f"{where}.from")
    end = _clock(spec.get("to", "18:00"), f"{where}.to")
    days_spec = spec.get("days", list(_DAYS[:5]))
    if not isinstance(days_spec, list) or not days_spec:
        raise RuleError(f"{where}.days: expected a non-empty list of mon, tue, ... sun")
    days = set()
    for i, day in enumerate(days_spec):
        if not isinstance(day, str) or day.lower()[:3] not in _DAYS:
            raise RuleError(f"{where}.days[{i}]: {day!r} is not a day (mon, tue, ... sun)")
        days.add(_DAYS.index(day.lower()[:3]))
    zone_name = spec.get("timezone", "UTC")
    try:
        zone = zoneinfo.ZoneInfo(str(zone_name))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise RuleError(f"{where}.timezone: unknown time zone {zone_name!r}") from None

    def inside(e: Event) -> bool:
        local = datetime.datetime.fromtimestamp(e.time / 1e9, zone)
        minute = local.hour * 60 + local.minute
        if start <= end:
            return local.weekday() in days and start <= minute < end
        # Overnight hours: the part after midnight belongs to the previous day's shift.
        if minute >= start:
            return local.weekday() in days
        return minute < end and (local.weekday() - 1) % 7 in days

    return inside
