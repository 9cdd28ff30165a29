"""``otaudit token create | list | revoke``: the API tokens every listener checks.

Creating and revoking a token are administrative actions: each appends a
record to the ledger (``otaudit.token_create`` / ``otaudit.token_revoke``,
who did it, which token, which scopes), so they are on the audit trail.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from otaudit import access, auth, datadir, ownrecords
from otaudit.cli import rows as rows_out
from otaudit.cli.options import store_options
from otaudit.errors import Conflict, NotFound
from otaudit.ownrecords import DirectAppender
from otaudit.store.base import Store
from otaudit.textsafety import log_text


def _open(data: Path, store_url: str | None) -> Store:
    if store_url is None:  # a mistyped --data must not leave a new ledger behind
        datadir.require_ledger(data)
    return datadir.open_store(data, store_url, readonly=False, migrate=True)


@click.group("token")
def token_group() -> None:
    """API tokens: scopes ingest (send OTLP), read (the read API), admin (/metrics)."""


@token_group.command("create")
@store_options
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    type=click.Choice(auth.SCOPES),
    help="A scope the token grants (repeatable).",
)
@click.option("--name", default="", help="What the token is for (shown in lists and records).")
def token_create(data: Path, store_url: str | None, scopes: tuple[str, ...], name: str) -> None:
    """Create a token; it is printed once, as the last line, and stored only as a hash."""
    text, row = auth.new_token(name, scopes)
    store = _open(data, store_url)
    try:
        first = not store.tokens()
        store.add_token(row)
        ownrecords.record_token_created(DirectAppender(store), access.os_reader(), row)
    finally:
        store.close()
    if first:
        click.echo(
            "authentication is now on: this is the ledger's first token, so every listener "
            "of every server on it refuses requests without a valid token for its scope "
            f"(a running server within {auth.REFRESH_S:g} s); give each exporter an ingest "
            "token, each reader a read token and each metrics scraper an admin token",
            err=True,
        )
    named = log_text(row.name)
    click.echo(f"token {row.token_id} ({named}), scopes {row.scopes}; keep it secret:", err=True)
    click.echo(text)


@token_group.command("list")
@store_options
@click.option("--format", "fmt", type=click.Choice(rows_out.FORMATS), default="table",
              show_default=True)  # fmt: skip
def token_list(data: Path, store_url: str | None, fmt: str) -> None:
    """List tokens: id, name, scopes, created, revoked (never the token itself)."""
    store = _open(data, store_url)
    try:
        rows = store.tokens()
    finally:
        store.close()
    if not rows and fmt in ("table", "vertical"):
        click.echo("no tokens: listeners accept requests without one (loopback only)")
        return
    listed = [(t.token_id, t.name, t.scopes, t.created_at, t.revoked_at) for t in rows]
    rows_out.write(("id", "name", "scopes", "created", "revoked"), listed, fmt, wide=True,
                   noun="token(s)")  # fmt: skip


@token_group.command("revoke")
@store_options
@click.argument("token_id", metavar="ID")
def token_revoke(data: Path, store_url: str | None, token_id: str) -> None:
    """Revoke a token by its id; every node refuses it within seconds."""
    store = _open(data, store_url)
    try:
        found = {t.token_id: t for t in store.tokens()}.get(token_id)
        if found is None:
            raise NotFound(f"no token with id {token_id!r} (see `otaudit token list`)")
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if not store.revoke_token(token_id, now):
            raise Conflict(f"token {token_id} was already revoked at {found.revoked_at}")
        ownrecords.record_token_revoked(DirectAppender(store), access.os_reader(), found)
    finally:
        store.close()
    click.echo(f"revoked token {token_id} ({log_text(found.name)})")


def register(group: click.Group) -> None:
    """Add this module's commands to the CLI."""
    group.add_command(token_group)
