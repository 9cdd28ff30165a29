"""Detection rules: their YAML form, validation, and the built-in set.

A rule file is a mapping with one key, ``rules``, a list of rules::

    rules:
      - name: brute_force_user      # [a-z0-9_.-]+, unique
        kind: threshold             # match | threshold | sequence | new_value | silence
        severity: high              # low | medium | high | critical
        where: {...}                # the records the rule looks at (conditions.py)
        group_by: [actor]           # fields that must be equal within a group
        threshold: 20
        window: 60m
        summary: "{count} failed logins for account {actor} within {window}"

What each kind needs is in ``_KIND_KEYS``; ``docs/detection.md`` explains the
kinds. A rule named like a built-in one replaces the keys it gives (and
``enabled: false`` turns it off). Anything wrong raises :class:`RuleError`
naming the file, the rule and the key; a file without rules is an error too,
so a broken rule file never leaves monitoring silently off.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Final

import yaml

from otaudit.detect.bounds import DEFAULT_BOUNDS, Bounds
from otaudit.detect.conditions import (
    Predicate,
    RuleError,
    check_field,
    compile_condition,
    working_hours,
)
from otaudit.detect.event import FIELDS
from otaudit.timespec import parse_duration

SEVERITIES: Final = ("low", "medium", "high", "critical")
#: How late (out of order, by record time) a record may arrive and still meet the records
#: of its window.
LATE_NS: Final = 3600 * 1_000_000_000
#: The largest ``threshold``: a group's window keeps no more records than this.
MAX_THRESHOLD: Final = DEFAULT_BOUNDS.max_group_records
_NAME: Final = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
_PLACEHOLDER: Final = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.]*)\}")
_COMMON: Final = frozenset({"name", "kind", "severity", "description", "summary", "where",
                            "group_by", "enabled", "working_hours", "max_groups",
                            "max_bytes"})  # fmt: skip
#: Per kind: the keys it requires and the keys it may have, besides the common ones.
_KIND_KEYS: Final[dict[str, tuple[frozenset[str], frozenset[str]]]] = {
    "match": (frozenset({"where"}), frozenset()),
    "threshold": (frozenset({"where", "group_by", "threshold", "window"}), frozenset({"distinct"})),
    "sequence": (frozenset({"where", "then", "group_by", "threshold", "window"}), frozenset()),
    "new_value": (frozenset({"group_by", "field", "baseline"}), frozenset({"learning"})),
    "silence": (frozenset({"group_by", "after", "min_records"}), frozenset({"compare_with"})),
}
#: Placeholders a summary may use besides record fields.
#: Keys that leave the rule's fingerprint (and so its alerts' identities) unchanged.
_NOT_IDENTITY: Final = frozenset({"enabled", "description", "max_groups", "max_bytes"})
_SIZE: Final = re.compile(r"([0-9]{1,12})\s*(|B|KiB|MiB|GiB)")
_SIZE_UNITS: Final = {"": 1, "B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}
_SUMMARY_EXTRAS: Final = frozenset({"count", "window", "value", "after", "baseline", "threshold",
                                    "rule"})  # fmt: skip


@dataclass(frozen=True, eq=False)
class Rule:
    """One validated rule. Durations are in nanoseconds; unused ones are 0."""

    name: str
    kind: str
    severity: str
    description: str
    summary: str
    where: Predicate | None
    group_by: tuple[str, ...]
    threshold: int
    window_ns: int
    distinct: str | None
    then: Predicate | None
    field: str | None
    baseline_ns: int
    learning_ns: int
    after_ns: int
    min_records: int
    #: silence: how long ago the stretches lie that a silence is compared with
    compare_ns: tuple[int, ...]
    spec: dict[str, Any]
    #: Changes whenever the rule's definition does; part of each alert's identity.
    fingerprint: str
    #: How much the rule may remember (``max_groups``, ``max_bytes``); None: the defaults.
    bounds: Bounds | None = None

    @property
    def lookback_ns(self) -> int:
        """How far back the rule's state reaches: history to read before the first record
        judged, so that what it finds does not depend on where reading began."""
        windowed = 2 * self.window_ns + LATE_NS if self.window_ns else 0
        return max(windowed, self.baseline_ns + self.learning_ns,
                   max(self.compare_ns, default=0) + 2 * self.after_ns)  # fmt: skip

    def render(self, values: dict[str, Any]) -> str:
        """The rule's summary with ``{placeholders}`` filled (``-`` where a value is absent)."""

        def fill(m: re.Match[str]) -> str:
            value = values.get(m[1])
            return "-" if value is None or value == "" else str(value)

        return _PLACEHOLDER.sub(fill, self.summary)

    def record_placeholders(self) -> list[str]:
        """The record fields the summary uses (not ``count``, ``window`` ...)."""
        return [p for p in _PLACEHOLDER.findall(self.summary) if p not in _SUMMARY_EXTRAS]


def _ns(value: Any, where: str) -> int:
    """A duration (``30m``, ``7d``) in nanoseconds; RuleError naming ``where`` otherwise."""
    try:
        seconds = parse_duration(str(value))
    except ValueError as exc:
        raise RuleError(f"{where}: {exc}") from None
    if seconds <= 0:
        raise RuleError(f"{where}: must be longer than 0")
    return seconds * 1_000_000_000


def _duration(spec: dict[str, Any], key: str, where: str) -> int:
    value = spec.get(key)
    return 0 if value is None else _ns(value, f"{where}.{key}")


def _compare(spec: dict[str, Any], where: str) -> tuple[int, ...]:
    """``compare_with``: durations longer than ``after`` (default 1d and 7d)."""
    value = spec.get("compare_with", ["1d", "7d"])
    if not isinstance(value, list) or not value:
        raise RuleError(f"{where}.compare_with: expected a non-empty list of durations")
    out = []
    for i, item in enumerate(value):
        ns = _ns(item, f"{where}.compare_with[{i}]")
        if ns <= _duration(spec, "after", where):
            raise RuleError(f"{where}.compare_with[{i}]: must be longer than after")
        out.append(ns)
    return tuple(out)


def _positive(spec: dict[str, Any], key: str, where: str) -> int:
    value = spec.get(key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RuleError(f"{where}.{key}: expected a whole number of at least 1, got {value!r}")
    return value


def _bounds(spec: dict[str, Any], where: str) -> Bounds | None:
    """The rule's own ``max_groups`` and ``max_bytes`` (a number, or with KiB, MiB, GiB)."""
    if "max_groups" not in spec and "max_bytes" not in spec:
        return None
    groups = _positive(spec, "max_groups", where) or DEFAULT_BOUNDS.max_groups
    size = spec.get("max_bytes", DEFAULT_BOUNDS.max_bytes)
    m = _SIZE.fullmatch(str(size)) if not isinstance(size, bool) else None
    if m is None or int(m[1]) * _SIZE_UNITS[m[2]] < 64 * 1024:
        raise RuleError(
            f"{where}.max_bytes: expected a size of at least 64KiB like 64MiB, got {size!r}"
        )
    return Bounds(
        max_groups=groups,
        max_bytes=int(m[1]) * _SIZE_UNITS[m[2]],
        max_group_records=DEFAULT_BOUNDS.max_group_records,
        max_group_bytes=DEFAULT_BOUNDS.max_group_bytes,
    )


def _threshold(spec: dict[str, Any], where: str) -> int:
    threshold = _positive(spec, "threshold", where) or 1
    if threshold > MAX_THRESHOLD:
        raise RuleError(
            f"{where}.threshold: at most {MAX_THRESHOLD} (the records a group's window "
            f"keeps), got {threshold}"
        )
    return threshold


def build_rule(spec: dict[str, Any], where: str) -> Rule:
    """Validate one rule mapping (already merged over a built-in one) and compile it."""
    name = spec.get("name")
    kind = spec.get("kind")
    if not isinstance(kind, str) or kind not in _KIND_KEYS:
        raise RuleError(f"{where}.kind: expected one of {', '.join(_KIND_KEYS)}, got {kind!r}")
    required, optional = _KIND_KEYS[kind]
    unknown = sorted(set(spec) - _COMMON - required - optional, key=str)
    if unknown:
        allowed = ", ".join(sorted(_COMMON | required | optional))
        raise RuleError(
            f"{where}: unknown key {unknown[0]!r} for a {kind} rule (allowed: {allowed})"
        )
    missing = sorted(required - set(spec))
    if missing:
        raise RuleError(f"{where}: a {kind} rule needs {', '.join(repr(m) for m in missing)}")
    severity = spec.get("severity", "medium")
    if not isinstance(severity, str) or severity not in SEVERITIES:
        raise RuleError(
            f"{where}.severity: expected one of {', '.join(SEVERITIES)}, got {severity!r}"
        )
    group_spec = spec.get("group_by", [])
    if isinstance(group_spec, str):
        group_spec = [group_spec]
    if not isinstance(group_spec, list) or (kind != "match" and not group_spec):
        raise RuleError(f"{where}.group_by: expected a non-empty list of fields")
    group_by = tuple(check_field(f, f"{where}.group_by[{i}]") for i, f in enumerate(group_spec))
    distinct = spec.get("distinct")
    field = spec.get("field")
    for key, value in (("distinct", distinct), ("field", field)):
        if value is not None:
            check_field(value, f"{where}.{key}")
    for key in ("description", "summary"):
        if not isinstance(spec.get(key, ""), str):
            raise RuleError(f"{where}.{key}: expected a string")
    summary = spec.get("summary") or f"{name}: {{count}} matching record(s)"
    for placeholder in _PLACEHOLDER.findall(summary):
        known = placeholder in FIELDS or placeholder in _SUMMARY_EXTRAS
        if not (known or placeholder in ("seq", "time") or placeholder.startswith("attributes.")):
            raise RuleError(f"{where}.summary: unknown placeholder {{{placeholder}}}")
    # What the rule finds, not how much it may remember, makes its identity.
    body = {k: v for k, v in spec.items() if k not in _NOT_IDENTITY}
    canonical = json.dumps(body, sort_keys=True, default=str, separators=(",", ":"))
    fingerprint = hashlib.sha256(canonical.encode()).hexdigest()[:16]
    return Rule(
        name=str(name),
        kind=kind,
        severity=severity,
        description=spec.get("description", ""),
        summary=summary,
        where=_where(spec, where),
        group_by=group_by,
        threshold=_threshold(spec, where),
        window_ns=_duration(spec, "window", where),
        distinct=distinct,
        then=compile_condition(spec["then"], f"{where}.then") if "then" in spec else None,
        field=field,
        baseline_ns=_duration(spec, "baseline", where),
        learning_ns=_duration(spec, "learning", where),
        after_ns=_duration(spec, "after", where),
        min_records=_positive(spec, "min_records", where),
        compare_ns=_compare(spec, where) if kind == "silence" else (),
        spec=spec,
        fingerprint=fingerprint,
        bounds=_bounds(spec, where),
    )


def _where(spec: dict[str, Any], where: str) -> Predicate | None:
    """The rule's ``where``, narrowed to records outside ``working_hours`` when given."""
    condition = compile_condition(spec["where"], f"{where}.where") if "where" in spec else None
    if "working_hours" not in spec:
        return condition
    inside = working_hours(spec["working_hours"], f"{where}.working_hours")
    if condition is None:
        return lambda e: not inside(e)
    return lambda e: condition(e) and not inside(e)


def _parse(text: str, source: str) -> list[dict[str, Any]]:
    """The rule mappings of one file, each checked for a valid, unique name."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RuleError(f"{source}: not valid YAML: {exc}") from None
    if doc is None or (isinstance(doc, dict) and not doc.get("rules")):
        raise RuleError(f"{source}: the file defines no rules (expected `rules:` with a list)")
    if not isinstance(doc, dict) or set(doc) != {"rules"} or not isinstance(doc["rules"], list):
        raise RuleError(f"{source}: expected a mapping with one key, `rules:`, holding a list")
    specs: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, spec in enumerate(doc["rules"]):
        where = f"{source}: rules[{i}]"
        if not isinstance(spec, dict):
            raise RuleError(f"{where}: a rule is a mapping")
        name = spec.get("name")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise RuleError(f"{where}.name: expected a name of a-z, 0-9, _ . - (got {name!r})")
        if name in seen:
            raise RuleError(f"{where}.name: rule {name!r} is defined twice")
        seen.add(name)
        enabled = spec.get("enabled", True)
        if not isinstance(enabled, bool):
            raise RuleError(f"{where}.enabled: expected true or false")
        specs.append(spec)
    return specs


def builtin_specs() -> list[dict[str, Any]]:
    """The built-in rule mappings (``otaudit/detect/builtin.yaml``)."""
    text = resources.files("otaudit.detect").joinpath("builtin.yaml").read_text("utf-8")
    return _parse(text, "built-in rules")


def load_rules(files: tuple[Path, ...] = (), *, builtin: bool = True) -> list[Rule]:
    """The enabled rules: the built-in ones (unless ``builtin`` is False), then each file's.

    A file's rule named like an earlier one replaces the keys it gives. RuleError when a
    file cannot be read or is invalid, or when no rule is left enabled.
    """
    merged: dict[str, tuple[dict[str, Any], str]] = {}
    if builtin:
        for i, spec in enumerate(builtin_specs()):
            merged[spec["name"]] = (spec, f"built-in rules: rules[{i}] ({spec['name']})")
    for path in files:
        try:
            text = path.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise RuleError(f"cannot read rule file {path}: {exc}") from None
        for i, spec in enumerate(_parse(text, str(path))):
            base = merged.get(spec["name"], ({}, ""))[0]
            merged[spec["name"]] = ({**base, **spec}, f"{path}: rules[{i}] ({spec['name']})")
    rules = [build_rule(spec, where) for spec, where in merged.values()
             if spec.get("enabled", True)]  # fmt: skip
    if not rules:
        raise RuleError("no detection rule is enabled (use --no-detect to run without detection)")
    return rules
