"""The attribute names and values ``otaudit.instrument`` emits.

Why these names (``docs/instrumenting.md`` has the full table):

- ``enduser.id`` names the actor: it is a current OpenTelemetry semantic
  convention and the attribute the widely copied auditor queries read.
- ``user.roles`` (a string array) carries the actor's roles; ``enduser.role``
  is deprecated upstream in its favour.
- ``client.address`` is the current convention for the caller's address.
- ``audit.*`` is the namespace otaudit selects and normalises
  (``docs/conventions.md``); ``audit.producer.id``/``audit.producer.seq``
  number the records so an auditor can prove none is missing.
- ``error.type`` is the semantic-convention attribute for a failure's class.
"""

from __future__ import annotations

from typing import Final

#: The action performed; its presence makes a span or log record an audit record.
AUDIT_ACTION: Final = "audit.action"
#: Who performed the action (the actor's user id).
ENDUSER_ID: Final = "enduser.id"
#: The actor's roles, a string array.
USER_ROLES: Final = "user.roles"
#: The address the request came from.
CLIENT_ADDRESS: Final = "client.address"
#: Whom or what the action was applied to.
AUDIT_TARGET: Final = "audit.target"
#: The user an action was applied to, when the target is a user (the name the widely
#: copied auditor query reads; the helpers also write it as ``audit.target``).
AUDIT_TARGET_USER: Final = "audit.target_user"
#: The kind of resource the target is, e.g. ``user_permission``.
AUDIT_RESOURCE_TYPE: Final = "audit.resource_type"
#: The value before the change.
AUDIT_OLD_VALUE: Final = "audit.old_value"
#: The value after the change.
AUDIT_NEW_VALUE: Final = "audit.new_value"
#: The outcome: ``success``, ``failure`` or a value the application chose (e.g. ``denied``).
AUDIT_RESULT: Final = "audit.result"
#: On failure: the exception's qualified class name.
ERROR_TYPE: Final = "error.type"
#: The producer (one process of an instrumented application): a random UUID4 string.
AUDIT_PRODUCER_ID: Final = "audit.producer.id"
#: The producer's record number: 1, 2, 3 ... shared by spans and logs, never repeated.
AUDIT_PRODUCER_SEQ: Final = "audit.producer.seq"

#: ``audit.result`` of an action that completed.
RESULT_SUCCESS: Final = "success"
#: ``audit.result`` of an action that raised.
RESULT_FAILURE: Final = "failure"

#: The baggage entry that carries the actor to downstream services.
BAGGAGE_ACTOR: Final = ENDUSER_ID

#: Instrumentation scope name of the spans and log records the helpers emit.
SCOPE_NAME: Final = "otaudit.instrument"

#: Attributes only the helpers set; passing them in ``attributes=`` is an error.
RESERVED: Final = frozenset({AUDIT_PRODUCER_ID, AUDIT_PRODUCER_SEQ})
