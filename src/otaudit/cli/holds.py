"""``otaudit hold create | list | release``: legal holds that stop pruning and erasure.

A hold is a record on the ledger (:mod:`otaudit.retention.holds`); so is its release.
When the ledger has tokens in use, creating and releasing a hold needs an admin token
(``--token`` or ``$OTAUDIT_TOKEN``), and releasing needs another admin token than the one
that created the hold.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from otaudit import access, auth, datadir
from otaudit.cli import rows as rows_out
from otaudit.cli.options import store_options, time_bound
from otaudit.cli.reading import audited_read
from otaudit.errors import Unauthenticated
from otaudit.ownrecords import DirectAppender
from otaudit.record import rfc3339_ns
from otaudit.retention import holds as holds_lib
from otaudit.store.base import Store
from otaudit.store.search import SearchFilter
from otaudit.textsafety import log_text

TOKEN_ENV = "OTAUDIT_TOKEN"
LIST_COLUMNS = ("id", "name", "filters", "reason", "created_seq", "created_by", "token",
                "released_seq", "released_by", "release_reason")  # fmt: skip


def _open(data: Path, store_url: str | None) -> Store:
    if store_url is None:  # a mistyped --data must not leave a new ledger behind
        datadir.require_ledger(data)
    return datadir.open_store(data, store_url, readonly=False, migrate=True)


def _reader(store: Store, token: str | None) -> access.Reader:
    """This OS user, with the id of ``token`` once it is checked as an admin token."""
    reader = access.os_reader()
    if token is None:
        return reader  # the library refuses when tokens are in use
    caller = auth.Authenticator(store).check(token, "admin")
    if caller.token_id is None:
        raise Unauthenticated("unknown token: this ledger has no tokens")
    return access.Reader(reader.actor, token_id=caller.token_id)


def _token_option(func: click.decorators.FC) -> click.decorators.FC:
    return click.option(
        "--token",
        metavar="TOKEN",
        envvar=TOKEN_ENV,
        help=f"An admin token (or ${TOKEN_ENV}); required when the ledger has tokens in use.",
    )(func)


@click.group("hold")
def hold_group() -> None:
    """Legal holds: records a hold covers are never pruned nor erased while it stands."""


@hold_group.command("create")
@store_options
@_token_option
@click.option("--name", required=True, help="A short name for the hold (a case, a matter).")
@click.option("--reason", required=True, help="Why the records are held.")
@click.option("--action", "actions", multiple=True, metavar="A", help="audit.action (repeatable).")
@click.option("--actor", "actors", multiple=True, metavar="WHO", help="Actor (repeatable).")
@click.option("--target", "targets", multiple=True, metavar="T", help="Target (repeatable).")
@click.option("--resource-type", "resource_types", multiple=True, metavar="R",
              help="audit.resource_type (repeatable).")  # fmt: skip
@click.option("--service", "services", multiple=True, metavar="S", help="service.name.")
@click.option("--since", metavar="T",
              help="Record time at or after T: RFC 3339, a date, or a duration ago.")  # fmt: skip
@click.option("--until", metavar="T", help="Record time before T (same forms as --since).")
def hold_create(
    data: Path,
    store_url: str | None,
    token: str | None,
    name: str,
    reason: str,
    actions: tuple[str, ...],
    actors: tuple[str, ...],
    targets: tuple[str, ...],
    resource_types: tuple[str, ...],
    services: tuple[str, ...],
    since: str | None,
    until: str | None,
) -> None:
    """Place a hold on every record its filters match, now and arriving later; prints the
    hold's id on the last line."""
    now = time.time_ns()
    given = {"action": actions, "actor": actors, "target": targets,
             "resource_type": resource_types, "service": services}  # fmt: skip
    filters = SearchFilter(
        {k: v for k, v in given.items() if v},
        time_bound(since, "--since", now),
        time_bound(until, "--until", now),
    )
    store = _open(data, store_url)
    try:
        reader = _reader(store, token)
        hold = holds_lib.create_hold(DirectAppender(store), reader, store, name, reason, filters)
    finally:
        store.close()
    covers = _describe(filters)
    click.echo(f"hold {hold.id} ({log_text(hold.name)}) placed at seq {hold.created_seq}; "
               f"it covers: {covers}", err=True)  # fmt: skip
    click.echo(hold.id)


@hold_group.command("list")
@store_options
@click.option("--all", "show_all", is_flag=True, help="Released holds too.")
@click.option("--format", "fmt", type=click.Choice(rows_out.FORMATS), default="table",
              show_default=True)  # fmt: skip
def hold_list(data: Path, store_url: str | None, show_all: bool, fmt: str) -> None:
    """List the holds that stand (with --all, released ones too); a recorded read (a hold's
    filters may name people)."""
    text = "hold list" + (" --all" if show_all else "")
    with audited_read(data, store_url, "report", text) as (store, outcome):
        found = holds_lib.holds(store)
        outcome.rows = sum(1 for h in found if show_all or h.active)
    listed = [
        (h.id, h.name, _describe(h.filters), h.reason, h.created_seq, h.created_by, h.token_id,
         h.released_seq, h.released_by, h.released_reason)
        for h in found
        if show_all or h.active
    ]  # fmt: skip
    if not listed and fmt in ("table", "vertical"):
        click.echo("no holds stand" if not show_all else "no holds")
        return
    rows_out.write(LIST_COLUMNS, listed, fmt, wide=True, noun="hold(s)")


def _describe(filters: SearchFilter) -> str:
    """Filters as options, with times in RFC 3339."""
    parts = SearchFilter(filters.values).describe().split(" ") if filters.values else []
    if filters.since_ns is not None:
        parts += ["--since", rfc3339_ns(filters.since_ns)]
    if filters.until_ns is not None:
        parts += ["--until", rfc3339_ns(filters.until_ns)]
    return " ".join(parts) or "every record"


@hold_group.command("release")
@store_options
@_token_option
@click.argument("hold_id", metavar="ID")
@click.option("--reason", required=True, help="Why the hold is lifted.")
def hold_release(
    data: Path, store_url: str | None, token: str | None, hold_id: str, reason: str
) -> None:
    """Release a hold; its records follow the retention policy again."""
    store = _open(data, store_url)
    try:
        reader = _reader(store, token)
        hold = holds_lib.release_hold(DirectAppender(store), reader, store, hold_id, reason)
    finally:
        store.close()
    click.echo(f"released hold {hold.id} ({log_text(hold.name)}) at seq {hold.released_seq}")


def register(group: click.Group) -> None:
    """Add this module's commands to the CLI."""
    group.add_command(hold_group)
