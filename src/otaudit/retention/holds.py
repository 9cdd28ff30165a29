"""Legal holds: records that no prune and no erasure may remove while the hold stands.

A hold lives only on the ledger, as two of otaudit's own records (pipeline ``otaudit``):

- ``otaudit.hold_create``: the hold's id (``hold_`` and 12 hex digits), name and reason,
  its filters (``otaudit.hold.filters``, as the command-line options in a stable order,
  and ``otaudit.hold.filters_json``), who created it and with which token (if any);
- ``otaudit.hold_release``: the id, the reason, who released it and with which token.

A hold's filters are those of ``search`` (each given column equal to one of its values, and
a window of record time ``[since, until)``); it covers every record they match, including
records that arrive after it was created. A hold without filters covers every record.

When tokens are in use (the store has an unrevoked token), creating a hold needs an admin
token, and releasing one needs an admin token other than the one that created it: no one
person both places and lifts a hold. The caller authenticates the token and passes its id
as ``Reader.token_id``.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

from otaudit.access import Reader, log_request, seal_request
from otaudit.errors import ConfigError, Forbidden
from otaudit.ownrecords import Appender, append_one
from otaudit.retention.policy import row_attributes
from otaudit.store.base import Store
from otaudit.store.search import SearchFilter

HOLD_CREATE_ACTION: Final = "otaudit.hold_create"
HOLD_RELEASE_ACTION: Final = "otaudit.hold_release"
#: The columns a hold's filters may name (each equal to one of the values given).
HOLD_FILTERS: Final = ("action", "actor", "target", "resource_type", "service")
ID_ATTRIBUTE: Final = "otaudit.hold.id"
NAME_ATTRIBUTE: Final = "otaudit.hold.name"
REASON_ATTRIBUTE: Final = "otaudit.hold.reason"
FILTERS_ATTRIBUTE: Final = "otaudit.hold.filters"
FILTERS_JSON_ATTRIBUTE: Final = "otaudit.hold.filters_json"
MAX_NAME_CHARS: Final = 200
MAX_REASON_CHARS: Final = 2000
#: The most values a hold's filters may hold altogether.
MAX_FILTER_VALUES: Final = 1000
MAX_VALUE_CHARS: Final = 1000
#: How many sequence numbers :func:`held_seqs` asks about in one query.
_SEQ_BATCH: Final = 5000


@dataclass(frozen=True)
class Hold:
    """A hold as the ledger says: its creation and, once released, its release."""

    id: str
    name: str
    reason: str
    filters: SearchFilter
    created_seq: int
    created_by: str
    token_id: str | None
    released_seq: int | None = None
    released_by: str | None = None
    released_reason: str | None = None
    released_token_id: str | None = None

    @property
    def active(self) -> bool:
        """Whether the hold still stands."""
        return self.released_seq is None


def filters_json(filters: SearchFilter) -> str:
    """``filters`` as JSON with sorted keys: each filter's values, ``since_ns``, ``until_ns``."""
    body: dict[str, Any] = {name: list(filters.values[name]) for name in HOLD_FILTERS
                            if filters.values.get(name)}  # fmt: skip
    body["since_ns"] = filters.since_ns
    body["until_ns"] = filters.until_ns
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS).decode()


def parse_filters(text: str) -> SearchFilter:
    """The filters of :func:`filters_json` (ConfigError if ``text`` is not such JSON)."""
    try:
        body = orjson.loads(text)
        values = {name: tuple(str(v) for v in body[name]) for name in HOLD_FILTERS if name in body}
        since, until = body.get("since_ns"), body.get("until_ns")
        return SearchFilter(values, None if since is None else int(since),
                            None if until is None else int(until))  # fmt: skip
    except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(f"a hold's filters are not valid: {exc}") from None


def check_filters(filters: SearchFilter) -> None:
    """ConfigError unless ``filters`` name only :data:`HOLD_FILTERS`, with bounded non-empty
    values, no sequence numbers, and a window that is not empty."""
    unknown = sorted({name for name, values in filters.values.items() if values}
                     - set(HOLD_FILTERS))  # fmt: skip
    if unknown or filters.seqs is not None:
        named = unknown[0] if unknown else "seqs"
        raise ConfigError(f"a hold filters by {', '.join(HOLD_FILTERS)} and time, not {named}")
    count = sum(len(v) for v in filters.values.values())
    if count > MAX_FILTER_VALUES:
        raise ConfigError(f"a hold has at most {MAX_FILTER_VALUES} filter values, got {count}")
    for name, values in filters.values.items():
        for value in values:
            if not value or len(value) > MAX_VALUE_CHARS:
                raise ConfigError(
                    f"--{name.replace('_', '-')}: expected 1 to {MAX_VALUE_CHARS} characters"
                )
    since, until = filters.since_ns, filters.until_ns
    if since is not None and until is not None and since >= until:
        raise ConfigError(f"--since ({since} ns) must be before --until ({until} ns)")


def _text(value: str, what: str, limit: int) -> str:
    text = value.strip()
    if not text or len(text) > limit:
        raise ConfigError(f"a hold's {what} is required: 1 to {limit} characters, got "
                          f"{len(text)}")  # fmt: skip
    return text


def _check_admin(store: Store, reader: Reader, doing: str, not_token: str | None = None) -> None:
    """When tokens are in use, Forbidden unless ``reader`` holds an unrevoked admin token other
    than ``not_token``."""
    live = {t.token_id: t for t in store.tokens() if t.revoked_at is None}
    if not live:
        return
    if reader.token_id is None:
        raise Forbidden(f"tokens are in use on this ledger: {doing} needs an admin token "
                        "(--token or $OTAUDIT_TOKEN)")  # fmt: skip
    token = live.get(reader.token_id)
    if token is None or "admin" not in token.scopes.split(","):
        raise Forbidden(f"{doing} needs an admin token; {reader.token_id} is not an unrevoked "
                        "admin token")  # fmt: skip
    if not_token is not None and reader.token_id == not_token:
        raise Forbidden(f"{doing} needs an admin token other than {not_token}, the token that "
                        "created the hold")  # fmt: skip


def holds(store: Store) -> list[Hold]:
    """Every hold on the ledger, in the order they were created, each with its release."""
    found: dict[str, Hold] = {}
    for seq, _time, actor, _target, raw in store.action_rows(
        (HOLD_CREATE_ACTION, HOLD_RELEASE_ACTION)
    ):
        attrs = row_attributes(raw)
        hold_id = str(attrs.get(ID_ATTRIBUTE, ""))
        token = attrs.get("audit.token.id")
        action = attrs.get("audit.action")
        if action == HOLD_CREATE_ACTION and hold_id not in found:
            found[hold_id] = Hold(
                id=hold_id,
                name=str(attrs.get(NAME_ATTRIBUTE, "")),
                reason=str(attrs.get(REASON_ATTRIBUTE, "")),
                filters=parse_filters(str(attrs.get(FILTERS_JSON_ATTRIBUTE, "{}"))),
                created_seq=int(seq),
                created_by=str(actor or ""),
                token_id=None if token is None else str(token),
            )
        elif action == HOLD_RELEASE_ACTION and (hold := found.get(hold_id)) and hold.active:
            found[hold_id] = Hold(
                **{k: getattr(hold, k) for k in _CREATED},
                released_seq=int(seq),
                released_by=str(actor or ""),
                released_reason=str(attrs.get(REASON_ATTRIBUTE, "")),
                released_token_id=None if token is None else str(token),
            )
    return list(found.values())


_CREATED: Final = ("id", "name", "reason", "filters", "created_seq", "created_by", "token_id")


def active_holds(store: Store) -> list[Hold]:
    """The holds that still stand."""
    return [hold for hold in holds(store) if hold.active]


def create_hold(
    appender: Appender, reader: Reader, store: Store, name: str, reason: str, filters: SearchFilter
) -> Hold:
    """Place a hold: append its creation record (ConfigError for an invalid name, reason or
    filters; Forbidden when tokens are in use and ``reader`` has no admin token)."""
    name = _text(name, "name", MAX_NAME_CHARS)
    reason = _text(reason, "reason", MAX_REASON_CHARS)
    check_filters(filters)
    _check_admin(store, reader, "creating a hold")
    hold_id = f"hold_{secrets.token_hex(6)}"
    described = filters.describe()
    attributes: dict[str, str | int] = {
        "audit.target": hold_id,
        ID_ATTRIBUTE: hold_id,
        NAME_ATTRIBUTE: name,
        REASON_ATTRIBUTE: reason,
        FILTERS_ATTRIBUTE: described,
        FILTERS_JSON_ATTRIBUTE: filters_json(filters),
        "audit.result": "success",
    }
    body = f"{reader.actor}: {HOLD_CREATE_ACTION} {hold_id} {described}".rstrip()
    entry = seal_request(log_request(reader, HOLD_CREATE_ACTION, "legal_hold", body, attributes))
    seq = append_one(appender, entry)
    return Hold(hold_id, name, reason, filters, seq, reader.actor, reader.token_id)


def release_hold(
    appender: Appender, reader: Reader, store: Store, hold_id: str, reason: str
) -> Hold:
    """Release a hold: append its release record; the hold as released. ConfigError for an
    unknown or already released id or an empty reason; Forbidden when tokens are in use and
    ``reader`` has no admin token, or the one that created the hold."""
    reason = _text(reason, "release reason", MAX_REASON_CHARS)
    hold = {h.id: h for h in holds(store)}.get(hold_id)
    if hold is None:
        raise ConfigError(f"no hold with id {hold_id[:40]!r} (see `otaudit hold list`)")
    if not hold.active:
        raise ConfigError(f"hold {hold_id} was already released (seq {hold.released_seq})")
    _check_admin(store, reader, f"releasing hold {hold_id}", hold.token_id)
    attributes: dict[str, str | int] = {
        "audit.target": hold_id,
        ID_ATTRIBUTE: hold_id,
        REASON_ATTRIBUTE: reason,
        "audit.result": "success",
    }
    body = f"{reader.actor}: {HOLD_RELEASE_ACTION} {hold_id}"
    entry = seal_request(log_request(reader, HOLD_RELEASE_ACTION, "legal_hold", body, attributes))
    seq = append_one(appender, entry)
    return Hold(
        **{k: getattr(hold, k) for k in _CREATED},
        released_seq=seq,
        released_by=reader.actor,
        released_reason=reason,
        released_token_id=reader.token_id,
    )


def hold_condition(held: Sequence[Hold], placeholder: str) -> tuple[str, list[Any]]:
    """A WHERE fragment over the ``records`` table, true for a record that any of ``held``
    covers (false when there is none), and its parameters in order."""
    parts: list[str] = []
    params: list[Any] = []
    for hold in held:
        conditions = []
        for name in HOLD_FILTERS:
            values = hold.filters.values.get(name, ())
            if values:
                conditions.append(f"{name} IN ({', '.join([placeholder] * len(values))})")
                params.extend(values)
        if hold.filters.since_ns is not None:
            conditions.append(f"time_unix_nano >= {placeholder}")
            params.append(hold.filters.since_ns)
        if hold.filters.until_ns is not None:
            conditions.append(f"time_unix_nano < {placeholder}")
            params.append(hold.filters.until_ns)
        parts.append(f"({' AND '.join(conditions) or '1 = 1'})")
    return (f"({' OR '.join(parts)})" if parts else "(1 = 0)"), params


def held_seqs(store: Store, held: Sequence[Hold], seqs: Iterable[int]) -> set[int]:
    """Those of ``seqs`` whose records any of ``held`` covers (through ``search``)."""
    wanted = sorted(set(seqs))
    found: set[int] = set()
    for begin in range(0, len(wanted), _SEQ_BATCH):
        batch = tuple(wanted[begin : begin + _SEQ_BATCH])
        for hold in held:
            where = SearchFilter(dict(hold.filters.values), hold.filters.since_ns,
                                 hold.filters.until_ns, seqs=batch)  # fmt: skip
            found.update(int(row[0]) for row in store.search(where))
    return found
