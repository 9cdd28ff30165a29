"""Building the attributes of one audit record (shared by spans and logs)."""

from __future__ import annotations

import json
from collections.abc import Mapping

from opentelemetry.util.types import AttributeValue

from otaudit.instrument.attributes import (
    AUDIT_ACTION,
    AUDIT_NEW_VALUE,
    AUDIT_OLD_VALUE,
    AUDIT_PRODUCER_ID,
    AUDIT_PRODUCER_SEQ,
    AUDIT_RESOURCE_TYPE,
    AUDIT_RESULT,
    AUDIT_TARGET,
    AUDIT_TARGET_USER,
    RESERVED,
)
from otaudit.instrument.context import current_actor
from otaudit.instrument.producer import next_number

__all__ = ["audit_attributes", "to_attribute_value"]

_SCALARS = (str, bool, int, float)


def to_attribute_value(value: object) -> AttributeValue:
    """``value`` as an OpenTelemetry attribute value.

    Strings, booleans, integers and floats pass through; a list or tuple of one
    of those types becomes a tuple; anything else (a dict, None inside a list,
    a mixed list, an object) becomes compact JSON text with sorted keys, other
    objects written with ``str``.
    """
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, list | tuple):
        kinds = {type(item) for item in value}
        if not value or (len(kinds) == 1 and kinds <= set(_SCALARS)):
            return tuple(value)
    return json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))


def audit_attributes(
    action: str,
    *,
    target: object = None,
    target_user: object = None,
    resource_type: str | None = None,
    old: object = None,
    new: object = None,
    result: str | None = None,
    attributes: Mapping[str, object] | None = None,
) -> dict[str, AttributeValue]:
    """The attributes of one audit record, and its claimed completeness number.

    Layered, later wins: the ambient actor (:func:`current_actor`), then
    ``attributes``, then the named arguments, then ``audit.producer.id`` and
    ``audit.producer.seq`` (which ``attributes`` may not contain). ``target`` is
    written as text; ``target_user``, for an action on a user, is written as text to
    both ``audit.target`` and ``audit.target_user`` (give one of the two); ``old``/``new``
    and ``attributes`` values through :func:`to_attribute_value`; None leaves an
    attribute out.

    Each call claims the next producer number, so call it once per record you emit
    (:func:`audit_span` and :func:`audit_log` do), and only for a record that will be
    emitted: use it directly for records sent another way, e.g.
    ``logger.info(msg, extra=audit_attributes(...))`` through an OpenTelemetry
    ``LoggingHandler``, with the logger's level at INFO or below (a call below the
    level emits nothing and leaves a hole in the numbering).
    """
    if not isinstance(action, str) or not action:
        raise ValueError("action must be a non-empty string")
    out: dict[str, AttributeValue] = {}
    who = current_actor()
    if who is not None:
        out.update(who.attributes())
    if attributes:
        reserved = RESERVED.intersection(attributes)
        if reserved:
            raise ValueError(
                f"attributes may not set {sorted(reserved)}: the helpers number records"
            )
        out.update(
            {
                key: to_attribute_value(value)
                for key, value in attributes.items()
                if value is not None
            }
        )
    out[AUDIT_ACTION] = action
    if target is not None and target_user is not None:
        raise ValueError("give target or target_user, not both")
    if target is not None:
        out[AUDIT_TARGET] = target if isinstance(target, str) else str(target)
    if target_user is not None:
        user = target_user if isinstance(target_user, str) else str(target_user)
        out[AUDIT_TARGET] = out[AUDIT_TARGET_USER] = user
    if resource_type is not None:
        out[AUDIT_RESOURCE_TYPE] = resource_type
    if old is not None:
        out[AUDIT_OLD_VALUE] = to_attribute_value(old)
    if new is not None:
        out[AUDIT_NEW_VALUE] = to_attribute_value(new)
    if result is not None:
        out[AUDIT_RESULT] = result
    out[AUDIT_PRODUCER_ID], out[AUDIT_PRODUCER_SEQ] = next_number()
    return out
