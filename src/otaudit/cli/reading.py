"""Opening the ledger for a read command, and recording the read in the ledger.

A command that reads audit records (``sql``, ``search``, ``export``,
``prove``, ``sample``, ``gaps``, ``conformance``) runs inside
:func:`audited_read`: when the work is done, or has failed, one read record
(:func:`otaudit.ownrecords.record_read`) is appended, and only then does the
command print its result. The command appends but never signs: the server signs
what it appended (within a second while it runs, and at its start), so a read of a
copied data directory signs no fork of the log. A ledger this user cannot write (a
read-only copy handed to an auditor, a PostgreSQL login that may only read) is still
read; the command then says on stderr that the read is not recorded.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import click

from otaudit import access, datadir, ownrecords
from otaudit.cli.render import error_message
from otaudit.errors import OtauditError
from otaudit.store.base import Store


@contextmanager
def reading(data: Path, store_url: str | None) -> Iterator[Store]:
    """Open the ledger read-only for one command."""
    if store_url is None:
        datadir.check(data, create=False)
    store = datadir.open_store(data, store_url, readonly=True)
    try:
        yield store
    finally:
        store.close()


@dataclass
class ReadOutcome:
    """What a read produced, set by the command: the number of rows or records, and the
    read's text when it is only known once the read has started."""

    rows: int | None = None
    text: str | None = None


def record_read(
    data: Path,
    store_url: str | None,
    kind: str,
    text: str,
    *,
    ok: bool,
    rows: int | None = None,
    error: str | None = None,
) -> None:
    """Append the record of one read by this OS user; warn on stderr if the ledger refuses."""
    try:
        store = datadir.open_store(data, store_url, readonly=False, migrate=False)
    except OtauditError as exc:
        click.echo(access.not_recorded_warning(exc), err=True)
        return
    try:
        ownrecords.record_read(ownrecords.DirectAppender(store), access.os_reader(), kind, text,
                               ok=ok, rows=rows, error=error)  # fmt: skip
    except OtauditError as exc:
        click.echo(access.not_recorded_warning(exc), err=True)
    finally:
        store.close()


@contextmanager
def audited_read(
    data: Path, store_url: str | None, kind: str, text: str
) -> Iterator[tuple[Store, ReadOutcome]]:
    """Open the ledger read-only; on leaving, record the read (success or the error)."""
    outcome = ReadOutcome()
    with reading(data, store_url) as store:
        try:
            yield store, outcome
        except OtauditError as exc:
            record_read(data, store_url, kind, outcome.text or text, ok=False,
                        error=error_message(exc))  # fmt: skip
            raise
    record_read(data, store_url, kind, outcome.text or text, ok=True, rows=outcome.rows)
