"""``otaudit export`` and ``otaudit verify-bundle``: offline evidence bundles.

``export`` exits 0 (bundle written), 1 (the ledger failed a check while
exporting) or 2 (usage, I/O, no checkpoint). ``verify-bundle`` exits 0
(every record proven), 1 (``FAILED:`` naming the seq or the file) or 2
(usage or I/O: no such directory, unreadable file, bad ``--key``).
"""

from __future__ import annotations

import calendar
import re
import sys
import time
from pathlib import Path
from typing import Final

import click

from otaudit import bundle, datadir
from otaudit.checkpoint import VerifierKey
from otaudit.cli.main import fail, store_options
from otaudit.cli.reading import audited_read
from otaudit.errors import OtauditError, VerificationError

_DURATION: Final = re.compile(r"([0-9]+)([smhdw])")
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_TIME: Final = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})(?:[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]{1,9}))?([Zz]|[+-][0-9]{2}:[0-9]{2}))?"
)
_TIME_HELP: Final = (
    "RFC 3339 (2026-01-01T00:00:00Z, or a date: 2026-01-01) or a duration ago (90d, 12h, 30m)"
)


def parse_time(text: str, now_ns: int) -> int:
    """UTC nanoseconds since the epoch of ``text``.

    ``text`` is RFC 3339 with an offset (``2026-01-01T00:00:00Z``,
    ``2026-01-01T02:00:00.5+02:00``), a date alone (midnight UTC), or a
    duration back from ``now_ns``: a number and one of ``s m h d w``
    (``90d``, ``12h``, ``30m``). Raises ``ValueError`` for anything else.
    """
    if m := _DURATION.fullmatch(text):
        return now_ns - int(m[1]) * _UNITS[m[2]] * 1_000_000_000
    m = _TIME.fullmatch(text)
    if not m:
        raise ValueError(f"{text!r} is neither RFC 3339 nor a duration like 90d, 12h, 30m")
    y, mo, d, h, mi, s = (int(g or 0) for g in m.groups()[:6])
    offset = 0
    if (zone := m[8]) and zone not in "Zz":
        offset = (-1 if zone[0] == "-" else 1) * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    if not (1 <= mo <= 12 and 1 <= d <= calendar.monthrange(y, mo)[1]) or h > 23 or mi > 59:
        raise ValueError(f"{text!r} is not a valid date and time")
    if s > 59 or abs(offset) >= 86400:
        raise ValueError(f"{text!r} is not a valid date and time")
    seconds = calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0)) - offset
    return seconds * 1_000_000_000 + int((m[7] or "").ljust(9, "0"))


def _bound(text: str | None, now_ns: int, option: str) -> int | None:
    if text is None:
        return None
    try:
        return parse_time(text, now_ns)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


@click.command("export")
@store_options
@click.option("--out", type=click.Path(path_type=Path), required=True, metavar="DIR",
              help="New (or empty) directory to write the bundle to.")  # fmt: skip
@click.option("--since", metavar="T", help=f"Records at or after T: {_TIME_HELP}.")
@click.option("--until", metavar="T", help="Records before T (same forms as --since).")
@click.option("--action", "actions", multiple=True, metavar="A",
              help="Only records with this audit.action (repeat for several).")  # fmt: skip
def export_command(
    data: Path,
    store_url: str | None,
    out: Path,
    since: str | None,
    until: str | None,
    actions: tuple[str, ...],
) -> None:
    """Write an offline evidence bundle, every record proven against the latest checkpoint."""
    now = time.time_ns()
    selection = bundle.Selection(
        _bound(since, now, "--since"),
        _bound(until, now, "--until"),
        tuple(dict.fromkeys(actions)),
        {"since": since, "until": until},
    )
    text = " ".join(
        ["export", "--out", str(out)]
        + [f"--since {since}"] * (since is not None)
        + [f"--until {until}"] * (until is not None)
        + [f"--action {a}" for a in selection.actions]
    )
    try:
        with audited_read(data, store_url, "export", text) as (store, outcome):
            key = datadir.verifier_key(data, store, None)
            report = bundle.export_bundle(store, key, out, selection)
            outcome.rows = report.records
    except VerificationError as exc:
        click.echo(f"FAILED: the ledger does not verify: {exc}", err=True)
        sys.exit(1)
    except OtauditError as exc:
        fail(str(exc))
        return
    click.echo(
        f"exported {report.records} records ({report.record_bytes / 1e6:.1f} MB) to {out} in "
        f"{report.seconds:.2f} s ({report.rate:,.0f} records/s), proven against the signed "
        f"checkpoint at tree size {report.tree_size}"
    )
    if report.left_out:
        click.echo(
            f"note: {report.left_out} matching records after that checkpoint were left out "
            "(sealed but not yet signed); export again after the next checkpoint"
        )


@click.command("verify-bundle")
@click.argument("directory", type=click.Path(path_type=Path), metavar="DIR")
@click.option("--key", "key_text", metavar="VKEY",
              help="The log's verifier key (name+id+base64), obtained from the log operator "
                   "(default: the bundle's own verifier.key, with a warning).")  # fmt: skip
def verify_bundle_command(directory: Path, key_text: str | None) -> None:
    """Check an evidence bundle offline: files, signature, inclusion proofs, readable copies."""
    try:
        key = VerifierKey.parse(key_text) if key_text is not None else None
        if key is None:
            click.echo(
                "warning: no --key given: the checkpoint is checked with the bundle's own "
                "verifier.key, which whoever made the bundle chose; compare the key printed "
                "below with the one obtained from the log operator out of band",
                err=True,
            )
        report = bundle.verify_bundle(directory, key)
    except VerificationError as exc:
        click.echo(f"FAILED: {exc}", err=True)
        sys.exit(1)
    except OtauditError as exc:
        fail(str(exc))
        return
    assert report.key is not None
    click.echo(
        f"OK: {report.records} records ({report.record_bytes / 1e6:.1f} MB) checked in "
        f"{report.seconds:.2f} s, proven against checkpoint of tree size {report.tree_size} "
        f"signed by {report.key.name}+{report.key.key_id.hex()}"
    )
    if key is None:
        click.echo(f"key used (from the bundle, compare it): {report.key}")


def register(group: click.Group) -> None:
    """Add this module's commands to the CLI."""
    group.add_command(export_command)
    group.add_command(verify_bundle_command)
