"""The retention policy: how long each kind of record is kept, from its sealed receive time.

A policy is a YAML file given to ``serve`` and ``prune`` with ``--retention FILE``::

    minimum: 365d          # a rule shorter than this is refused unless --allow-short
    default: 400d          # the keep of a record no rule matches (at least minimum)
    archive: 7y            # optional: how long an archived copy is kept
    rules:
      - match: {action: login}            # action, resource_type, service, pipeline, signal
        keep: 90d
      - match: {service: [billing, ledger], signal: span}
        keep: 2y
        archive: 7y                       # optional, this rule's archive keep

A duration is a whole number and a unit, ``s m h d w y`` (``y`` is 365 days). A rule's
``match`` names one or more columns, each equal to a string or to one of a list of
strings (all must hold); the first rule that matches a record gives its keep, else
``default``. A record's age is counted from its ``received_at`` (the sealed receive time),
never from the time its client claims. otaudit's own records that the ledger needs to be
checked (receipts, policies, holds, key rotations: :data:`STRUCTURAL_ACTIONS`) are never
prunable, whatever the policy says.

Every mistake (invalid YAML, an unknown or repeated key, a wrong type, a bad duration, an
empty ``match``, a keep under ``minimum``) is a ConfigError naming ``file:line``.
Loading a policy whose SHA-256 differs from the last one on the ledger appends a policy
record (:func:`record_policy`), so the ledger says which policy every prune applied.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson
import yaml

from otaudit.access import Reader, log_request, seal_request
from otaudit.conventions import OWN_PIPELINE
from otaudit.errors import ConfigError
from otaudit.ownrecords import Appender, append_one
from otaudit.record import Entry, rfc3339_ns
from otaudit.store.base import Store

#: The action of a policy record.
POLICY_ACTION: Final = "otaudit.retention_policy"
#: Attributes of a policy record: the policy's SHA-256 (hex) and its text.
HASH_ATTRIBUTE: Final = "otaudit.retention.policy"
TEXT_ATTRIBUTE: Final = "otaudit.retention.policy_text"
#: otaudit's own records (pipeline ``otaudit``) that no policy ever prunes.
STRUCTURAL_ACTIONS: Final = (
    "otaudit.prune", "otaudit.erase", "otaudit.retention_policy", "otaudit.hold_create",
    "otaudit.hold_release", "otaudit.key_rotate", "otaudit.archive_restore",
)  # fmt: skip
#: The columns a rule's ``match`` may name.
MATCH_FIELDS: Final = ("action", "resource_type", "service", "pipeline", "signal")
SIGNALS: Final = ("span", "log")
#: The largest policy file: its text goes into the policy record whole.
MAX_POLICY_BYTES: Final = 32 * 1024

_DURATION: Final = re.compile(r"([0-9]{1,12})([smhdwy])")
_UNIT_S: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 365 * 86400}
_STR: Final = "tag:yaml.org,2002:str"
_TOP_KEYS: Final = ("minimum", "default", "archive", "rules")
_RULE_KEYS: Final = ("match", "keep", "archive")


@dataclass(frozen=True, slots=True)
class Duration:
    """A duration as written (``90d``) and in seconds."""

    text: str
    seconds: int


@dataclass(frozen=True, slots=True)
class PolicyRule:
    """One rule: the records it matches (column -> accepted values), their keep and archive."""

    match: tuple[tuple[str, tuple[str, ...]], ...]
    keep: Duration
    archive: Duration | None
    line: int

    def matches(self, columns: Mapping[str, Any]) -> bool:
        """Whether a record with these ``columns`` is one of this rule's."""
        return all(columns.get(name) in values for name, values in self.match)

    def condition(self, placeholder: str) -> tuple[str, list[Any]]:
        """The rule's match as SQL over the ``records`` columns."""
        parts = [f"{name} IN ({', '.join([placeholder] * len(values))})"
                 for name, values in self.match]  # fmt: skip
        return " AND ".join(parts), [v for _, values in self.match for v in values]


@dataclass(frozen=True, slots=True)
class Policy:
    """A validated retention policy with its text and the text's SHA-256 (hex)."""

    text: str
    source: str
    sha256: str
    minimum: Duration
    default: Duration
    archive: Duration | None
    rules: tuple[PolicyRule, ...]

    def rule_for(self, columns: Mapping[str, Any]) -> PolicyRule | None:
        """The first rule matching ``columns`` (None: the default applies)."""
        return next((rule for rule in self.rules if rule.matches(columns)), None)

    def keep_for(self, columns: Mapping[str, Any]) -> int:
        """Seconds a record with these ``columns`` is kept from its receive time (a structural
        record is kept for ever whatever this says: :func:`is_structural`)."""
        rule = self.rule_for(columns)
        return (self.default if rule is None else rule.keep).seconds

    def archive_for(self, columns: Mapping[str, Any]) -> int | None:
        """Seconds an archived copy of such a record is kept from its receive time (its
        rule's ``archive``, else the policy's), or None: it is not archived."""
        rule = self.rule_for(columns)
        chosen = rule.archive if rule is not None and rule.archive is not None else self.archive
        return None if chosen is None else chosen.seconds

    def expired_condition(self, now_ns: int, placeholder: str) -> tuple[str, list[Any]]:
        """A WHERE fragment over the ``records`` table, true for a record whose age at
        ``now_ns``, counted from ``received_at``, exceeds its keep (never for otaudit's
        structural records), and its parameters in order."""

        def cutoff(keep: Duration) -> str:
            return rfc3339_ns(max(0, now_ns - keep.seconds * 1_000_000_000))

        ph = placeholder
        structural = ", ".join([ph] * len(STRUCTURAL_ACTIONS))
        sql = f"(pipeline <> {ph} OR action IS NULL OR action NOT IN ({structural}))"
        params: list[Any] = [OWN_PIPELINE, *STRUCTURAL_ACTIONS]
        whens = []
        for rule in self.rules:
            condition, values = rule.condition(ph)
            whens.append(f"WHEN {condition} THEN {ph}")
            params += [*values, cutoff(rule.keep)]
        params.append(cutoff(self.default))
        limit = f"CASE {' '.join(whens)} ELSE {ph} END" if whens else ph
        return f"({sql} AND received_at < {limit})", params


def is_structural(columns: Mapping[str, Any]) -> bool:
    """Whether a record with these ``columns`` is one of otaudit's own records that the
    ledger needs (:data:`STRUCTURAL_ACTIONS`): never prunable, whatever its keep."""
    return columns.get("pipeline") == OWN_PIPELINE and columns.get("action") in STRUCTURAL_ACTIONS


def load_policy(path: Path, *, allow_short: bool = False) -> Policy:
    """The policy in the file ``path`` (ConfigError naming ``file:line`` if it is invalid)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read retention policy {path}: {exc.strerror}") from None
    if len(raw) > MAX_POLICY_BYTES:
        raise ConfigError(
            f"{path}: a retention policy is at most {MAX_POLICY_BYTES} bytes, got {len(raw)}"
        )
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: a retention policy is UTF-8 text") from None
    return parse_policy(text, str(path), allow_short=allow_short)


def parse_policy(text: str, source: str, *, allow_short: bool = False) -> Policy:
    """Validate a policy's ``text`` (``source`` names it in errors); a keep under ``minimum``
    is refused unless ``allow_short``."""
    if len(text.encode()) > MAX_POLICY_BYTES:
        raise ConfigError(f"{source}: a retention policy is at most {MAX_POLICY_BYTES} bytes")
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):  # an auditor reads the policy as written
                mark = event.start_mark
                line = 1 if mark is None else mark.line + 1
                raise ConfigError(f"{source}:{line}: aliases (*{event.anchor}) are not allowed "
                                  "in a retention policy: write each value out")  # fmt: skip
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = 1 if mark is None else mark.line + 1
        raise ConfigError(f"{source}:{line}: not valid YAML: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}:1: not valid YAML: {exc}") from None
    if root is None:
        raise ConfigError(f"{source}:1: the policy is empty: expected minimum, default, rules")
    top = _mapping(root, source, "the policy", _TOP_KEYS)
    for key in ("minimum", "default"):
        if key not in top:
            raise ConfigError(f"{_at(source, root)}: the policy needs {key!r}")
    minimum = _duration(top["minimum"], source, "minimum")
    default = _duration(top["default"], source, "default")
    if default.seconds < minimum.seconds:
        raise ConfigError(f"{_at(source, top['default'])}: default {default.text} is shorter "
                          f"than minimum {minimum.text}")  # fmt: skip
    archive = _duration(top["archive"], source, "archive") if "archive" in top else None
    rules: list[PolicyRule] = []
    if "rules" in top:
        node = top["rules"]
        if not isinstance(node, yaml.SequenceNode):
            raise ConfigError(f"{_at(source, node)}: rules: expected a list of rules")
        for i, item in enumerate(node.value):
            rules.append(_rule(item, source, f"rules[{i}]", minimum, allow_short))
    if archive is not None:
        shortest = [default, *(r.keep for r in rules if r.archive is None)]
        longest = max(shortest, key=lambda d: d.seconds)
        if archive.seconds < longest.seconds:
            raise ConfigError(f"{_at(source, top['archive'])}: archive {archive.text} is shorter "
                              f"than the keep {longest.text} it applies to")  # fmt: skip
    return Policy(
        text=text,
        source=source,
        sha256=hashlib.sha256(text.encode()).hexdigest(),
        minimum=minimum,
        default=default,
        archive=archive,
        rules=tuple(rules),
    )


def parse_duration(text: str) -> int:
    """Seconds in a policy duration (``90d``, ``12h``, ``7y``; ValueError otherwise)."""
    if m := _DURATION.fullmatch(text):
        return int(m[1]) * _UNIT_S[m[2]]
    raise ValueError(f"{text[:40]!r} is not a duration like 90d, 12h, 2w, 7y")


def _at(source: str, node: yaml.Node) -> str:
    return f"{source}:{node.start_mark.line + 1}"


def _mapping(
    node: yaml.Node, source: str, what: str, allowed: tuple[str, ...]
) -> dict[str, yaml.Node]:
    """A mapping node's values by key: keys are known names, each given once."""
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError(f"{_at(source, node)}: {what}: expected a mapping")
    out: dict[str, yaml.Node] = {}
    lines: dict[str, int] = {}
    for key, value in node.value:
        name = key.value if isinstance(key, yaml.ScalarNode) and key.tag == _STR else None
        if name is None or name not in allowed:
            shown = key.value if isinstance(key, yaml.ScalarNode) else key.tag
            raise ConfigError(f"{_at(source, key)}: {what}: unknown key {str(shown)[:40]!r} "
                              f"(allowed: {', '.join(allowed)})")  # fmt: skip
        if name in out:
            raise ConfigError(f"{_at(source, key)}: {what}: {name!r} is given twice "
                              f"(first on line {lines[name]})")  # fmt: skip
        out[name] = value
        lines[name] = key.start_mark.line + 1
    return out


def _string(node: yaml.Node, source: str, what: str) -> str:
    if not isinstance(node, yaml.ScalarNode) or node.tag != _STR or not node.value:
        raise ConfigError(f"{_at(source, node)}: {what}: expected a non-empty string")
    return str(node.value)


def _duration(node: yaml.Node, source: str, what: str) -> Duration:
    text = node.value if isinstance(node, yaml.ScalarNode) else ""
    try:
        seconds = parse_duration(str(text))
    except ValueError as exc:
        raise ConfigError(f"{_at(source, node)}: {what}: {exc}") from None
    if seconds <= 0:
        raise ConfigError(f"{_at(source, node)}: {what}: must be longer than 0")
    return Duration(str(text), seconds)


def _rule(
    node: yaml.Node, source: str, what: str, minimum: Duration, allow_short: bool
) -> PolicyRule:
    fields = _mapping(node, source, what, _RULE_KEYS)
    for key in ("match", "keep"):
        if key not in fields:
            raise ConfigError(f"{_at(source, node)}: {what}: a rule needs {key!r}")
    match_node = fields["match"]
    columns = _mapping(match_node, source, f"{what}.match", MATCH_FIELDS)
    if not columns:
        raise ConfigError(f"{_at(source, match_node)}: {what}.match: name at least one of "
                          f"{', '.join(MATCH_FIELDS)}")  # fmt: skip
    match = []
    for name, value in columns.items():
        where = f"{what}.match.{name}"
        items = value.value if isinstance(value, yaml.SequenceNode) else [value]
        if not items:
            raise ConfigError(f"{_at(source, value)}: {where}: expected at least one value")
        values = tuple(dict.fromkeys(_string(item, source, where) for item in items))
        if name == "signal" and (bad := [v for v in values if v not in SIGNALS]):
            raise ConfigError(f"{_at(source, value)}: {where}: expected span or log, "
                              f"got {bad[0][:40]!r}")  # fmt: skip
        match.append((name, values))
    keep = _duration(fields["keep"], source, f"{what}.keep")
    if keep.seconds < minimum.seconds and not allow_short:
        raise ConfigError(
            f"{_at(source, fields['keep'])}: {what}.keep: {keep.text} is shorter than "
            f"minimum {minimum.text} (refused unless --allow-short)"
        )
    archive = None
    if "archive" in fields:
        archive = _duration(fields["archive"], source, f"{what}.archive")
        if archive.seconds < keep.seconds:
            raise ConfigError(f"{_at(source, fields['archive'])}: {what}.archive: "
                              f"{archive.text} is shorter than keep {keep.text}")  # fmt: skip
    return PolicyRule(tuple(match), keep, archive, node.start_mark.line + 1)


def row_attributes(value: Any) -> dict[str, Any]:
    """The attributes column of a row (a JSON text on SQLite, a mapping on PostgreSQL)."""
    if isinstance(value, dict):
        return value
    parsed = orjson.loads(value or "{}")
    return parsed if isinstance(parsed, dict) else {}


def current_policy_record(store: Store) -> tuple[int, str] | None:
    """The seq and policy SHA-256 of the ledger's latest policy record (None: there is none)."""
    latest = None
    for row in store.action_rows((POLICY_ACTION,)):
        latest = (int(row[0]), str(row_attributes(row[4]).get(HASH_ATTRIBUTE, "")))
    return latest


def policy_entry(reader: Reader, policy: Policy) -> Entry:
    """The sealed policy record of ``policy``: its SHA-256 and its text."""
    attributes: dict[str, str | int] = {
        "audit.target": policy.sha256,
        HASH_ATTRIBUTE: policy.sha256,
        TEXT_ATTRIBUTE: policy.text,
        "audit.result": "success",
    }
    body = f"{reader.actor}: {POLICY_ACTION} {policy.sha256[:16]} from {policy.source}"
    return seal_request(log_request(reader, POLICY_ACTION, "retention_policy", body, attributes))


def record_policy(appender: Appender, reader: Reader, store: Store, policy: Policy) -> int | None:
    """Append a policy record for ``policy`` unless the ledger's latest one has the same
    SHA-256; the new record's seq, or None when the policy is unchanged."""
    current = current_policy_record(store)
    if current is not None and current[1] == policy.sha256:
        return None
    return append_one(appender, policy_entry(reader, policy))
