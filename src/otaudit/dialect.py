"""The user-facing SQL dialect, translated for the SQLite store.

Auditors write PostgreSQL-flavoured SQL, as in the query otaudit's docs (and
the article it grew from) show::

    SELECT timestamp, attributes['enduser.id'] AS actor ...
    WHERE attributes['audit.action'] = 'role_update'
      AND timestamp >= NOW() - INTERVAL '90 days'

:func:`to_sqlite` rewrites the constructs SQLite lacks, outside string
literals and quoted identifiers only:

- ``attributes['key']`` and ``resource['key']`` (optionally qualified, e.g.
  ``r.attributes['key']``) read the attribute's text value:
  ``json_extract(attributes, '$."key"')``; in a query with one ``SELECT`` (no subquery
  or CTE that could name its own ``attributes``), ``attributes['audit.action']`` reads
  the ``action`` column instead, which holds that same text for every record (both
  are derived from the sealed bytes and checked by ``verify``) and indexed with the
  timestamp;
- ``NOW()`` and ``CURRENT_TIMESTAMP`` are the current UTC time in the
  ``timestamp`` column's RFC 3339 form;
- ``NOW() - INTERVAL 'N unit'`` (and ``+``) shifts it by seconds, minutes,
  hours, days, weeks, months or years;
- ``EXTRACT(field FROM expr)`` for ``YEAR``, ``MONTH``, ``DAY``, ``HOUR``,
  ``MINUTE``, ``DOW`` (0 = Sunday), ``DOY`` and ``EPOCH`` (whole seconds)
  becomes an integer from ``strftime``;
- ``ILIKE`` becomes ``LIKE`` (which SQLite already matches case-insensitively
  for ASCII).

Everything else passes through unchanged, so SQLite's own SQL works too.
"""

from __future__ import annotations

import re
from typing import Final

from otaudit.errors import QueryError

#: The auditor query of the docs (and of the article otaudit grew from), as users write it.
AUDITOR_QUERY: Final = """SELECT
    timestamp,
    attributes['enduser.id'] AS actor,
    attributes['audit.target_user'] AS target,
    attributes['audit.old_value'] AS previous_role,
    attributes['audit.new_value'] AS new_role,
    attributes['audit.result'] AS outcome
FROM audit_spans
WHERE attributes['audit.action'] = 'role_update'
    AND timestamp >= NOW() - INTERVAL '90 days'
ORDER BY timestamp DESC;"""

_MAP_COLUMNS: Final = frozenset({"attributes", "resource"})
#: Attributes a typed column of every ledger view and table holds as the same text.
_TYPED_ATTRIBUTES: Final = {("attributes", "audit.action"): "action"}
_INTERVAL_RE: Final = re.compile(
    r"\s*([0-9]+(?:\.[0-9]+)?)\s*(second|minute|hour|day|week|month|year)s?\s*", re.IGNORECASE
)
_NOW_FORMAT: Final = "'%Y-%m-%dT%H:%M:%fZ'"
_EXTRACT: Final = {
    "year": "%Y", "month": "%m", "day": "%d", "hour": "%H", "minute": "%M",
    "dow": "%w", "doy": "%j", "epoch": "%s",
}  # fmt: skip


def _tokens(sql: str) -> list[tuple[str, str]]:
    """Split SQL into (kind, text) tokens: str, quoted, word, ws (and comments), sym."""
    out: list[tuple[str, str]] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in "'\"`":
            j = i + 1
            while j < n:
                if sql[j] == ch:
                    if j + 1 < n and sql[j + 1] == ch:  # doubled quote inside
                        j += 2
                        continue
                    break
                j += 1
            out.append(("str" if ch == "'" else "quoted", sql[i : j + 1]))
            i = j + 1
        elif ch.isalnum() or ch == "_":
            j = i
            while j < n and (sql[j].isalnum() or sql[j] in "_$"):
                j += 1
            out.append(("word", sql[i:j]))
            i = j
        elif ch.isspace():
            j = i
            while j < n and sql[j].isspace():
                j += 1
            out.append(("ws", sql[i:j]))
            i = j
        elif sql.startswith("--", i):
            j = sql.find("\n", i)
            j = n if j < 0 else j
            out.append(("ws", sql[i:j]))
            i = j
        else:
            out.append(("sym", ch))
            i += 1
    return out


def tokens(sql: str) -> list[tuple[str, str]]:
    """``sql`` as (kind, text) tokens: ``str`` (a string literal), ``quoted`` (a quoted
    name), ``word``, ``ws`` (whitespace and ``--`` comments) and ``sym`` (one character)."""
    return _tokens(sql)


def _literal(token: str) -> str:
    return token[1:-1].replace("''", "'")


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _next(tokens: list[tuple[str, str]], i: int) -> int:
    """Index of the next token that is not whitespace."""
    while i < len(tokens) and tokens[i][0] == "ws":
        i += 1
    return i


def _now(shift: str | None = None) -> str:
    modifier = f", {_sql_string(shift)}" if shift else ""
    return f"strftime({_NOW_FORMAT}, 'now'{modifier})"


_READ_STATEMENTS: Final = frozenset({"select", "with", "values", "table"})
_SETTING_CALL: Final = re.compile(r"\bset_config\s*\(", re.IGNORECASE)


def check_read_only(sql: str) -> None:
    """QueryError unless ``sql`` is one reading statement (SELECT, WITH, VALUES, TABLE).

    The stores enforce read-only access themselves (SQLite's authorizer;
    PostgreSQL's READ ONLY transaction and query role); this refuses, with a
    clear message, what cannot be a read at all: SET, PRAGMA, ATTACH, LOAD,
    COPY, DDL and DML, and ``set_config`` (which could change the session's role).
    """
    tokens = [(k, t) for k, t in _tokens(sql) if k != "ws" and t not in ("(", ";")]
    if not tokens:
        raise QueryError("SQL error: the statement is empty")
    kind, first = tokens[0]
    if kind != "word" or first.lower() not in _READ_STATEMENTS:
        raise QueryError(
            f"SQL error: only reading statements (SELECT, WITH, VALUES) are allowed, not {first!r}"
        )
    if any(kind == "word" and text.lower() == "set_config" for kind, text in tokens):
        raise QueryError("SQL error: set_config is not allowed in audit queries")


def error_position(message: str, sql: str) -> str:
    """`` (at character N)`` for a SQLite message naming the token it failed near, else ""."""
    match = re.search(r'near "([^"]+)"', message)
    if match is None or sql.count(match[1]) != 1:  # absent, or ambiguous: the name says enough
        return ""
    return f" (at character {sql.find(match[1]) + 1})"


def _closing(tokens: list[tuple[str, str]], open_at: int) -> int:
    """Index of the ``)`` matching the ``(`` at ``open_at``; QueryError if there is none."""
    depth = 0
    for k in range(open_at, len(tokens)):
        if tokens[k] == ("sym", "("):
            depth += 1
        elif tokens[k] == ("sym", ")"):
            depth -= 1
            if depth == 0:
                return k
    raise QueryError("SQL error: unbalanced parentheses")


def _extract(tokens: list[tuple[str, str]], open_at: int) -> tuple[str, int] | None:
    """``EXTRACT(field FROM expr)`` starting at the ``(`` at ``open_at`` as SQLite, and the
    index after its ``)``; None if it is not of that form."""
    close = _closing(tokens, open_at)
    field_at = _next(tokens, open_at + 1)
    from_at = _next(tokens, field_at + 1)
    if not (
        from_at < close
        and tokens[field_at][0] in ("word", "quoted", "str")
        and tokens[from_at][0] == "word"
        and tokens[from_at][1].lower() == "from"
    ):
        return None
    name = tokens[field_at][1].strip("'\"").lower()
    if name not in _EXTRACT:
        raise QueryError(
            f"EXTRACT({tokens[field_at][1]} ...): supported fields are "
            + ", ".join(f.upper() for f in _EXTRACT)
        )
    inner = to_sqlite("".join(t for _, t in tokens[from_at + 1 : close]))
    return f"CAST(strftime('{_EXTRACT[name]}', {inner.strip()}) AS INTEGER)", close + 1


def to_sqlite(sql: str) -> str:
    """Translate the user dialect to SQLite (see the module docstring)."""
    tokens = _tokens(sql)
    typed = sum(1 for kind, text in tokens if kind == "word" and text.lower() == "select") == 1
    out: list[str] = []
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        lower = text.lower()
        if kind == "word" and lower == "ilike":
            out.append("LIKE")
            i += 1
            continue
        if kind == "word" and lower == "extract":
            j = _next(tokens, i + 1)
            if j < len(tokens) and tokens[j] == ("sym", "("):
                extracted = _extract(tokens, j)
                if extracted is not None:
                    out.append(extracted[0])
                    i = extracted[1]
                    continue
        if kind == "word" and lower in _MAP_COLUMNS:
            j = _next(tokens, i + 1)
            if j + 2 < len(tokens) and tokens[j] == ("sym", "[") and tokens[j + 1][0] == "str":
                k = _next(tokens, j + 2)
                if k < len(tokens) and tokens[k] == ("sym", "]"):
                    key = _literal(tokens[j + 1][1])
                    if '"' in key:
                        raise QueryError(
                            f"{text}[{tokens[j + 1][1]}]: keys with '\"' are not supported"
                        )
                    column = text
                    if len(out) >= 2 and out[-1] == "." and tokens[i - 2][0] in ("word", "quoted"):
                        column = out[-2] + "." + text  # a qualified column: r.attributes[...]
                        del out[-2:]
                    path = _sql_string('$."' + key + '"')
                    field = _TYPED_ATTRIBUTES.get((lower, key)) if typed else None
                    if field is None:
                        out.append(f"json_extract({column}, {path})")
                    else:
                        out.append(column[: -len(text)] + field)
                    i = k + 1
                    continue
        if kind == "word" and lower in ("now", "current_timestamp"):
            end = i + 1
            if lower == "now":
                j = _next(tokens, i + 1)
                k = _next(tokens, j + 1)
                if k < len(tokens) and tokens[j] == ("sym", "(") and tokens[k] == ("sym", ")"):
                    end = k + 1
                else:
                    out.append(text)
                    i += 1
                    continue
            sign_at = _next(tokens, end)
            word_at = _next(tokens, sign_at + 1)
            lit_at = _next(tokens, word_at + 1)
            if (
                lit_at < len(tokens)
                and tokens[sign_at] in (("sym", "-"), ("sym", "+"))
                and tokens[word_at][0] == "word"
                and tokens[word_at][1].lower() == "interval"
                and tokens[lit_at][0] == "str"
            ):
                match = _INTERVAL_RE.fullmatch(_literal(tokens[lit_at][1]))
                if match is None:
                    raise QueryError(
                        f"INTERVAL {tokens[lit_at][1]}: expected 'N unit' with unit one of "
                        "seconds, minutes, hours, days, weeks, months, years"
                    )
                amount, unit = match.group(1), match.group(2).lower()
                if unit == "week":
                    amount, unit = str(float(amount) * 7), "day"
                sign = tokens[sign_at][1]
                out.append(_now(f"{sign}{amount} {unit}s"))
                i = lit_at + 1
                continue
            out.append(_now())
            i = end
            continue
        out.append(text)
        i += 1
    return "".join(out)
