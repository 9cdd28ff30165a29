"""Audit spans: :func:`audit_span` (a context manager) and :func:`audited` (a decorator)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar, cast

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from otaudit.instrument.attributes import (
    AUDIT_RESULT,
    ERROR_TYPE,
    RESULT_FAILURE,
    RESULT_SUCCESS,
    SCOPE_NAME,
)
from otaudit.instrument.meta import VERSION as __version__
from otaudit.instrument.record import audit_attributes

__all__ = ["audit_span", "audited", "error_type"]

P = ParamSpec("P")
R = TypeVar("R")


def error_type(exc: BaseException) -> str:
    """The qualified class name of ``exc``: ``ValueError``, ``myapp.errors.NotFound``."""
    cls = type(exc)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def _result_set_by_body(span: Span) -> object:
    attributes = getattr(span, "attributes", None)  # an SDK span exposes what was set
    return attributes.get(AUDIT_RESULT) if isinstance(attributes, Mapping) else None


@contextmanager
def audit_span(
    action: str,
    *,
    target: object = None,
    target_user: object = None,
    resource_type: str | None = None,
    old: object = None,
    new: object = None,
    attributes: Mapping[str, object] | None = None,
    name: str | None = None,
    tracer: Tracer | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
) -> Iterator[Span]:
    """Run the block in a new current span that is an audit record; yields the span.

    The span (named ``name``, default ``action``) starts with ``audit.action``,
    the other arguments (see :func:`audit_attributes`), the ambient actor and
    the next producer number, so a sampler sees them. ``tracer`` defaults to the
    global tracer provider's ``otaudit.instrument`` tracer.

    On normal exit ``audit.result`` becomes ``success`` unless the block set it
    (``span.set_attribute("audit.result", "denied")``). On an exception
    ``audit.result`` becomes ``failure`` (a value other than ``success`` the block
    set is kept), ``error.type`` the exception's qualified class name, the
    exception is recorded as a span event, the status is ERROR, and the
    exception propagates.
    """
    record = audit_attributes(
        action,
        target=target,
        target_user=target_user,
        resource_type=resource_type,
        old=old,
        new=new,
        attributes=attributes,
    )
    if tracer is None:
        tracer = trace.get_tracer(SCOPE_NAME, __version__)
    with tracer.start_as_current_span(
        name or action,
        kind=kind,
        attributes=record,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except BaseException as exc:
            previous = _result_set_by_body(span)
            if previous is None or previous == RESULT_SUCCESS:
                span.set_attribute(AUDIT_RESULT, RESULT_FAILURE)
            kind_of_error = error_type(exc)
            span.set_attribute(ERROR_TYPE, kind_of_error)
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{kind_of_error}: {exc}"))
            raise
        if _result_set_by_body(span) is None:
            span.set_attribute(AUDIT_RESULT, RESULT_SUCCESS)


def _resolve(value: object, arguments: dict[str, Any]) -> Any:
    return value(**arguments) if callable(value) else value


def audited(
    action: str,
    *,
    target: object = None,
    target_user: object = None,
    resource_type: str | None = None,
    old: object = None,
    new: object = None,
    attributes: Mapping[str, object] | Callable[..., Mapping[str, object]] | None = None,
    name: str | None = None,
    tracer: Tracer | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a function (sync or ``async``) so each call runs in :func:`audit_span`.

    ``target``, ``target_user``, ``old``, ``new`` and ``attributes`` may be callables: each is
    called with the decorated function's arguments as keywords (bound to its
    signature, defaults applied, ``**kwargs`` merged), e.g.
    ``target=lambda user_id, **_: user_id``. ``name`` defaults to ``action``.
    Generator functions are refused (the span would end before the body ran).
    """

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
            raise TypeError("audited cannot wrap a generator function; use audit_span inside it")
        signature = inspect.signature(fn)

        def options(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            arguments = dict(bound.arguments)
            for parameter in signature.parameters.values():
                if parameter.kind is inspect.Parameter.VAR_KEYWORD:
                    arguments.update(arguments.pop(parameter.name, {}))
            return {
                "target": _resolve(target, arguments),
                "target_user": _resolve(target_user, arguments),
                "resource_type": resource_type,
                "old": _resolve(old, arguments),
                "new": _resolve(new, arguments),
                "attributes": _resolve(attributes, arguments),
                "name": name,
                "tracer": tracer,
                "kind": kind,
            }

        if inspect.iscoroutinefunction(fn):
            coroutine_fn = cast(Callable[..., Coroutine[Any, Any, Any]], fn)

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with audit_span(action, **options(args, kwargs)):
                    return await coroutine_fn(*args, **kwargs)

            return cast(Callable[P, R], async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with audit_span(action, **options(args, kwargs)):
                return fn(*args, **kwargs)

        return wrapper

    return decorate
