"""Which records are each control's population: the control mapping and the SQL it yields.

The mapping in force is the default of ``controls.yaml`` (the action names of
``docs/conventions.md``), overridden by a file given with ``--controls``::

    defaults: true            # false: only this file's controls
    controls:
      - id: CC6.1             # replaces the default CC6.1
        title: Sign-ins
        description: Every sign-in of the identity provider.
        where: {action: [user.login, user.logout], service: idp}
      - id: A1.2              # any control of your own
        title: Backups
        where_sql: "action LIKE 'backup%'"

``where`` names columns of ``audit_records`` (:data:`WHERE_COLUMNS`), each equal to one of its
values; ``where_sql`` is an SQL condition in the dialect of ``otaudit sql``; a control needs
at least one of the two, and both must hold when both are given. ``alerts: true`` adds the
period's alerts and their triage to the control. Every mistake is a ConfigError naming
``file:line``.

:func:`population_sql` turns a control and a period into the one statement that selects its
population, with every parameter written into it as a literal, so that an auditor can paste
it into ``otaudit sql`` (or ``psql``) and get the same rows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Final

import yaml

from otaudit.dialect import check_read_only, tokens
from otaudit.errors import ConfigError, QueryError
from otaudit.record import rfc3339_ns
from otaudit.smallfile import read_small_file

#: The columns a control's ``where`` may name.
WHERE_COLUMNS: Final = (
    "action", "actor", "actor_role", "target", "resource_type", "result", "service",
    "signal", "pipeline", "client_address", "name", "missing",
)  # fmt: skip
_CONTROL_KEYS: Final = ("id", "title", "description", "where", "where_sql", "alerts")
_TOP_KEYS: Final = ("defaults", "controls")
#: A control id: what a folder of the pack may be named.
_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")
_STR: Final = "tag:yaml.org,2002:str"
_BOOL: Final = "tag:yaml.org,2002:bool"
#: The largest mapping file read, and the longest ``where_sql``.
MAX_FILE_BYTES: Final = 256 * 1024
MAX_CONDITION_CHARS: Final = 4096
DEFAULT_SOURCE: Final = "controls.yaml (built in)"


@dataclass(frozen=True)
class Control:
    """One control of the mapping: its id, what it is, and which records are its population."""

    id: str
    title: str
    description: str
    where: tuple[tuple[str, tuple[str, ...]], ...] = ()
    where_sql: str | None = None
    alerts: bool = False
    #: ``file:line`` where it was defined.
    source: str = ""

    def as_yaml(self) -> dict[str, Any]:
        """The control as a mapping file writes it."""
        out: dict[str, Any] = {"id": self.id, "title": self.title}
        if self.description:
            out["description"] = self.description
        if self.where:
            out["where"] = {name: list(values) for name, values in self.where}
        if self.where_sql:
            out["where_sql"] = self.where_sql
        if self.alerts:
            out["alerts"] = True
        return out


@dataclass(frozen=True)
class Period:
    """The observation period, ``[from_ns, to_ns)`` by record time, inside the tree of
    ``tree_size`` records (the closing checkpoint's)."""

    from_ns: int
    to_ns: int
    tree_size: int

    def parameters(self) -> dict[str, Any]:
        """The period as the query's parameters, for ``query.json``."""
        return {
            "from": rfc3339_ns(self.from_ns),
            "to": rfc3339_ns(self.to_ns),
            "from_unix_nano": self.from_ns,
            "to_unix_nano": self.to_ns,
            "tree_size": self.tree_size,
        }


def _literal(value: str) -> str:
    """``value`` as an SQL string literal (the same on SQLite and PostgreSQL)."""
    if "\x00" in value:
        raise ConfigError("a value of a control's where may not contain a NUL character")
    return "'" + value.replace("'", "''") + "'"


def condition(control: Control) -> str:
    """The control's selection as one SQL condition over ``audit_records``."""
    parts = [
        f"{name} IN ({', '.join(_literal(v) for v in values)})" for name, values in control.where
    ]
    if control.where_sql:
        parts.append(f"({control.where_sql})")
    return "\n  AND ".join(parts)


def _period_condition(period: Period) -> str:
    return (
        f"(seq < {int(period.tree_size)}\n"
        f"  AND time_unix_nano >= {int(period.from_ns)}"
        f"  -- {rfc3339_ns(period.from_ns)}\n"
        f"  AND time_unix_nano < {int(period.to_ns)})"
        f"  -- {rfc3339_ns(period.to_ns)}"
    )


def population_sql(control: Control, period: Period) -> str:
    """The statement that selects the control's population in ``period``, in seq order."""
    return (
        f"SELECT *\nFROM audit_records\nWHERE {_period_condition(period)}\n"
        f"  AND ({condition(control)})\nORDER BY seq"
    )


def count_sql(control: Control, period: Period) -> str:
    """The statement that counts the same population."""
    return (
        f"SELECT count(*) AS population\nFROM audit_records\nWHERE {_period_condition(period)}\n"
        f"  AND ({condition(control)})"
    )


# -- reading mapping files ------------------------------------------------------------


def _at(source: str, node: yaml.Node) -> str:
    return f"{source}:{node.start_mark.line + 1}"


def _fields(node: yaml.Node, source: str, what: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError(f"{_at(source, node)}: {what}: expected a mapping")
    out: dict[str, yaml.Node] = {}
    for key, value in node.value:
        name = key.value if isinstance(key, yaml.ScalarNode) and key.tag == _STR else None
        if name is None or name not in allowed:
            shown = key.value if isinstance(key, yaml.ScalarNode) else key.tag
            raise ConfigError(f"{_at(source, key)}: {what}: unknown key {str(shown)[:40]!r} "
                              f"(allowed: {', '.join(allowed)})")  # fmt: skip
        if name in out:
            raise ConfigError(f"{_at(source, key)}: {what}: {name!r} is given twice")
        out[name] = value
    return out


def _text(node: yaml.Node, source: str, what: str, *, limit: int = 2000) -> str:
    if not isinstance(node, yaml.ScalarNode) or node.tag != _STR or not node.value.strip():
        raise ConfigError(f"{_at(source, node)}: {what}: expected a non-empty string")
    if len(node.value) > limit:
        raise ConfigError(f"{_at(source, node)}: {what}: longer than {limit} characters")
    return str(node.value).strip()


def _where(node: yaml.Node, source: str, what: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    columns = _fields(node, source, what, WHERE_COLUMNS)
    if not columns:
        raise ConfigError(f"{_at(source, node)}: {what}: name at least one column "
                          f"({', '.join(WHERE_COLUMNS)})")  # fmt: skip
    out = []
    for name, value in columns.items():
        items = value.value if isinstance(value, yaml.SequenceNode) else [value]
        if not items:
            raise ConfigError(f"{_at(source, value)}: {what}.{name}: expected at least one value")
        values = tuple(dict.fromkeys(_text(i, source, f"{what}.{name}", limit=256) for i in items))
        out.append((name, values))
    return tuple(out)


def condition_problem(text: str) -> str | None:
    """Why ``text`` cannot be a control's ``where_sql``, or None: it must be one condition,
    whose parentheses close only what they open (outside string literals), with no ``;``
    and no comment, so that it cannot reach past the parentheses it is put in."""
    try:
        check_read_only(f"SELECT * FROM audit_records WHERE {text}")
    except QueryError as exc:
        return str(exc)
    depth = 0
    parts = tokens(text)
    for i, (kind, token) in enumerate(parts):
        after = parts[i + 1][1] if i + 1 < len(parts) else ""
        comment = (kind == "ws" and token.startswith("--")) or (token == "/" and after == "*")
        if comment or (kind == "sym" and token == ";"):
            return "one condition, without ';' or comments"
        if kind in ("str", "quoted") and (len(token) < 2 or token[-1] != token[0]):
            return "a string or quoted name is not closed"
        if kind == "sym" and token == "(":
            depth += 1
        elif kind == "sym" and token == ")":
            depth -= 1
            if depth < 0:
                return "a ')' closes more than the condition opened"
    if depth:
        return "unbalanced parentheses"
    return None


def _condition(node: yaml.Node, source: str, what: str) -> str:
    text = _text(node, source, what, limit=MAX_CONDITION_CHARS)
    if problem := condition_problem(text):
        raise ConfigError(f"{_at(source, node)}: {what}: {problem}")
    return text


def _control(node: yaml.Node, source: str, index: int) -> Control:
    what = f"controls[{index}]"
    fields = _fields(node, source, what, _CONTROL_KEYS)
    for key in ("id", "title"):
        if key not in fields:
            raise ConfigError(f"{_at(source, node)}: {what}: a control needs {key!r}")
    control_id = _text(fields["id"], source, f"{what}.id", limit=32)
    if not _ID.fullmatch(control_id) or control_id.startswith("."):
        raise ConfigError(f"{_at(source, fields['id'])}: {what}.id: {control_id!r} is not an id "
                          "like CC6.1 (letters, digits, '.', '_', '-'; at most 32)")  # fmt: skip
    what = f"control {control_id}"
    where = _where(fields["where"], source, f"{what}.where") if "where" in fields else ()
    where_sql = (
        _condition(fields["where_sql"], source, f"{what}.where_sql")
        if "where_sql" in fields
        else None
    )
    if not where and where_sql is None:
        raise ConfigError(f"{_at(source, node)}: {what}: give where, where_sql or both")
    alerts = False
    if "alerts" in fields:
        flag = fields["alerts"]
        if not isinstance(flag, yaml.ScalarNode) or flag.tag != _BOOL:
            raise ConfigError(f"{_at(source, flag)}: {what}.alerts: expected true or false")
        alerts = str(flag.value).lower() in ("true", "yes", "on")
    return Control(
        id=control_id,
        title=_text(fields["title"], source, f"{what}.title", limit=200),
        description=(
            _text(fields["description"], source, f"{what}.description")
            if "description" in fields
            else ""
        ),
        where=where,
        where_sql=where_sql,
        alerts=alerts,
        source=_at(source, node),
    )


def parse_mapping(text: str, source: str) -> tuple[bool, list[Control]]:
    """``(defaults, controls)`` of a mapping file's text; ConfigError naming ``source:line``."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{source}{line}: {problem}") from None
    if root is None:
        raise ConfigError(f"{source}: the mapping is empty: give a 'controls' list")
    top = _fields(root, source, "mapping", _TOP_KEYS)
    defaults = True
    if "defaults" in top:
        flag = top["defaults"]
        if not isinstance(flag, yaml.ScalarNode) or flag.tag != _BOOL:
            raise ConfigError(f"{_at(source, flag)}: defaults: expected true or false")
        defaults = str(flag.value).lower() in ("true", "yes", "on")
    node = top.get("controls")
    if not isinstance(node, yaml.SequenceNode) or not node.value:
        where = _at(source, node) if node is not None else source
        raise ConfigError(f"{where}: controls: expected a list of at least one control")
    controls: list[Control] = []
    seen: dict[str, str] = {}
    for index, item in enumerate(node.value):
        control = _control(item, source, index)
        if control.id in seen:
            raise ConfigError(f"{control.source}: control {control.id} is given twice "
                              f"(first at {seen[control.id]})")  # fmt: skip
        seen[control.id] = control.source
        controls.append(control)
    return defaults, controls


def default_mapping() -> list[Control]:
    """The built-in mapping (``controls.yaml``)."""
    text = resources.files("otaudit.evidence").joinpath("controls.yaml").read_text("utf-8")
    return parse_mapping(text, DEFAULT_SOURCE)[1]


def load_mapping(path: Path | None) -> list[Control]:
    """The mapping in force: the defaults, overridden by the file at ``path`` if given."""
    controls = default_mapping()
    if path is None:
        return controls
    raw = read_small_file(path, "control mapping", MAX_FILE_BYTES)
    if raw is None:
        raise ConfigError(f"control mapping {path} does not exist")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"control mapping {path} is not UTF-8 (byte {exc.start})") from None
    defaults, own = parse_mapping(text, str(path))
    if not defaults:
        return own
    by_id = {c.id: c for c in controls}
    for control in own:
        by_id[control.id] = control
    return list(by_id.values())


def mapping_yaml(controls: list[Control]) -> str:
    """The mapping in force as a mapping file (``otaudit evidence --print-mapping``)."""
    document = {"defaults": False, "controls": [c.as_yaml() for c in controls]}
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=96)
