"""The ambient actor: who is acting, for the records emitted in this context.

:func:`actor` sets it for a block (a ``contextvars`` variable, so it follows
threads started with a copied context, asyncio tasks and ``await``);
:func:`current_actor` reads it.

The OpenTelemetry baggage entry ``enduser.id`` is *not* read here: baggage
holds whatever the caller sent, so only code that knows the sender is trusted
may turn it into an actor (the middleware does, for ``trust_baggage_from``).
:func:`without_enduser_baggage` removes such entries before they travel on.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from opentelemetry import baggage
from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.util.types import AttributeValue

from otaudit.instrument.attributes import BAGGAGE_ACTOR, CLIENT_ADDRESS, ENDUSER_ID, USER_ROLES

__all__ = ["Actor", "actor", "current_actor", "without_enduser_baggage"]


@dataclass(frozen=True, slots=True)
class Actor:
    """Who performs an action.

    ``user_id`` is None for an anonymous caller whose address is known (a failed
    login, say); ``roles`` is a tuple of role names; ``client_address`` is where
    the request came from.
    """

    user_id: str | None
    roles: tuple[str, ...] = ()
    client_address: str | None = None

    def attributes(self) -> dict[str, AttributeValue]:
        """The attributes this actor contributes to an audit record."""
        out: dict[str, AttributeValue] = {}
        if self.user_id is not None:
            out[ENDUSER_ID] = self.user_id
        if self.roles:
            out[USER_ROLES] = self.roles
        if self.client_address is not None:
            out[CLIENT_ADDRESS] = self.client_address
        return out


_ENDUSER_PREFIX = "enduser."


def without_enduser_baggage(parent: Context | None = None) -> Context:
    """``parent`` (default: the current context) with every ``enduser.*`` baggage entry removed.

    A service attaches it where it does not trust the baggage it received, so
    that an actor named by the caller is neither recorded nor sent downstream.
    Other entries are kept.
    """
    out = otel_context.get_current() if parent is None else parent
    for key in baggage.get_all(out):
        if key.startswith(_ENDUSER_PREFIX):
            out = baggage.remove_baggage(key, out)
    return out


_ACTOR: ContextVar[Actor | None] = ContextVar("otaudit_instrument_actor", default=None)


def _roles(roles: Iterable[str] | str | None) -> tuple[str, ...]:
    if roles is None:
        return ()
    if isinstance(roles, str):
        return (roles,)
    out = tuple(roles)
    if not all(isinstance(role, str) for role in out):
        raise TypeError("roles must be strings")
    return out


@contextmanager
def actor(
    user_id: str | None,
    *,
    roles: Iterable[str] | str | None = None,
    client_address: str | None = None,
    propagate: bool = False,
) -> Iterator[Actor]:
    """Set the ambient actor for the block; yields the :class:`Actor`.

    ``roles`` is an iterable of role names (a single string is one role).
    ``client_address`` defaults to the enclosing actor's, so a login handler
    can name the user it just authenticated without losing the request's
    address. ``user_id=None`` records an anonymous actor.

    With ``propagate=True`` the block's baggage names this actor and no other:
    every ``enduser.*`` entry it held is removed and the user id (if any) is
    put in as ``enduser.id``, so a propagator injects it into outgoing requests
    and downstream services that trust this one see the same actor. Baggage
    goes to every outgoing request, third parties included; propagate only
    where that is fine.
    """
    if user_id is not None and (not isinstance(user_id, str) or not user_id):
        raise ValueError("user_id must be a non-empty string or None")
    enclosing = _ACTOR.get()
    if client_address is None and enclosing is not None:
        client_address = enclosing.client_address
    current = Actor(user_id, _roles(roles), client_address)
    token = _ACTOR.set(current)
    otel_token = None
    if propagate:
        scrubbed = without_enduser_baggage()
        if user_id is not None:
            scrubbed = baggage.set_baggage(BAGGAGE_ACTOR, user_id, scrubbed)
        otel_token = otel_context.attach(scrubbed)
    try:
        yield current
    finally:
        if otel_token is not None:
            otel_context.detach(otel_token)
        _ACTOR.reset(token)


def current_actor() -> Actor | None:
    """The ambient actor: the innermost :func:`actor` block's, else None.

    Baggage never names the actor here (anyone can send it); a service that
    trusts its sender sets the actor from it explicitly.
    """
    return _ACTOR.get()
