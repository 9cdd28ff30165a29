"""``otaudit alerts``: the alerts in the ledger, their evidence and their triage.

``alerts`` lists the alerts with their triage state, ``alerts show`` one alert and the
records that make it, ``alerts ack`` records a triage decision in the ledger.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Final

import click
import orjson

from otaudit.cli import rows as rows_out
from otaudit.cli.options import group_location, store_options, time_bound
from otaudit.cli.reading import audited_read
from otaudit.cli.render import terminal
from otaudit.ownrecords import DirectAppender
from otaudit.textsafety import terminal_text


@click.group("alerts", invoke_without_command=True)
@store_options
@click.option(
    "--state",
    type=click.Choice(("open", "closed", "all")),
    default="all",
    show_default=True,
    help="open: no decision yet, or investigating/escalated.",
)
@click.option(
    "--since",
    metavar="TIME",
    help="Alerts raised from this time on (whatever time their evidence claims).",
)
@click.option(
    "--format", "fmt", type=click.Choice(rows_out.FORMATS), default="table", show_default=True
)
@click.option("--wide", is_flag=True, help="Cut no value in a table.")
@click.pass_context
def alerts_group(
    ctx: click.Context,
    data: Path,
    store_url: str | None,
    state: str,
    since: str | None,
    fmt: str,
    wide: bool,
) -> None:
    """List the alerts in the ledger and their triage state (`alerts ack` to triage)."""
    if ctx.invoked_subcommand is not None:
        return
    from otaudit.detect.alerts import read_alerts

    since_ns = time_bound(since, "--since", time.time_ns())
    text = f"--state {state}" + (f" --since {since}" if since else "")
    with audited_read(data, store_url, "alerts", text) as (store, outcome):
        alerts = read_alerts(store, since_ns=since_ns)
        if state != "all":
            alerts = [a for a in alerts if a.is_open == (state == "open")]
        outcome.rows = len(alerts)
    if fmt in ("json", "jsonl"):  # every field of an alert, as alerts show gives it
        documents = [a.as_json() for a in alerts]
        if fmt == "json":
            click.echo(orjson.dumps(documents, option=orjson.OPT_INDENT_2).decode())
        for document in documents if fmt == "jsonl" else ():
            click.echo(orjson.dumps(document).decode())
        return
    listed = []
    for a in alerts:
        last = a.triage[-1] if a.triage else None
        listed.append((a.alert_id, a.time, a.rule, a.severity, a.summary, a.findings, a.state,
                       last and last.actor, last and last.time))  # fmt: skip
    opened = sum(a.is_open for a in alerts)
    shown = rows_out.write(_LIST_COLUMNS, listed, fmt, wide=wide,
                           noun=f"alert(s), {opened} open", caps={"summary": 80})  # fmt: skip
    note = rows_out.cut_note(shown)
    if note:
        click.echo(note, err=True)


_LIST_COLUMNS: Final = (
    "id", "time", "rule", "severity", "summary", "findings", "state", "by", "decided at",
)  # fmt: skip


@alerts_group.command("show")
@store_options
@click.argument("alert_id", metavar="ID")
@click.option("--format", "fmt", type=click.Choice(("table", "json")), default="table",
              show_default=True)  # fmt: skip
def show_command(data: Path, store_url: str | None, alert_id: str, fmt: str) -> None:
    """Show one alert, its triage, and the records that make it (the evidence)."""
    from otaudit.detect.alerts import find_alert
    from otaudit.store.search import SEARCH_COLUMNS, SearchFilter

    data, store_url = group_location(data, store_url)
    with audited_read(data, store_url, "alerts", f"show {alert_id}") as (store, outcome):
        alert = find_alert(store, alert_id)
        rows = list(store.search(SearchFilter(seqs=alert.evidence)))
        outcome.rows = len(rows)
    if fmt == "json":
        shown = alert.as_json() | {"evidence": [dict(zip(SEARCH_COLUMNS, r, strict=True))
                                                for r in rows]}  # fmt: skip
        click.echo(orjson.dumps(shown, option=orjson.OPT_INDENT_2).decode())
        return
    console = terminal()
    console.print(terminal_text(f"alert {alert.alert_id} [{alert.severity}] {alert.rule}: "
                                f"{alert.summary}"),
                  highlight=False, markup=False)  # fmt: skip
    console.print(f"sealed at seq {alert.seq}, raised at {alert.time}; state: {alert.state}",
                  highlight=False, markup=False)  # fmt: skip
    if alert.grouped:
        grouped = alert.as_json()
        console.print(f"{alert.findings} findings grouped into it, raised from "
                      f"{grouped['first_time']} to {grouped['last_time']}; records that "
                      f"triggered some of them: seqs {grouped['grouped_seqs']}",
                      highlight=False, markup=False)  # fmt: skip
    for t in alert.triage:
        console.print(terminal_text(f"  {t.time} {t.actor}: {t.decision}: {t.note}"),
                      highlight=False, markup=False)  # fmt: skip
    rows_out.write(SEARCH_COLUMNS, rows, "table", noun="record(s)")


#: The longest triage note (a longer one is refused, not cut).
MAX_NOTE: Final = 4096


@alerts_group.command("ack")
@store_options
@click.argument("alert_id", metavar="ID")
@click.option(
    "--decision",
    required=True,
    type=click.Choice(
        ("investigating", "escalated", "resolved", "false_positive", "accepted_risk")
    ),
    help="investigating and escalated keep the alert open; the others close it.",
)
@click.option("--note", required=True, help="What was looked at and why this decision.")
def ack_command(data: Path, store_url: str | None, alert_id: str, decision: str, note: str) -> None:
    """Record a triage decision on an alert (who: this OS user; when: now) in the ledger."""
    from otaudit import access, datadir
    from otaudit.detect.alerts import find_alert, record_triage

    if not note.strip():
        raise click.BadParameter("say what was looked at and why", param_hint="--note")
    if len(note) > MAX_NOTE:
        raise click.BadParameter(f"at most {MAX_NOTE} characters (this one has {len(note)})",
                                 param_hint="--note")  # fmt: skip
    data, store_url = group_location(data, store_url)
    if store_url is None:
        datadir.require_ledger(data)
    store = datadir.open_store(data, store_url, readonly=False, migrate=False)
    try:
        alert = find_alert(store, alert_id)
        reader = access.os_reader()
        seq = record_triage(DirectAppender(store), reader, alert.alert_id, decision, note)
    finally:
        store.close()
    click.echo(f"alert {alert.alert_id} ({alert.rule}): {decision} by {reader.actor}, "
               f"recorded at ledger seq {seq}")  # fmt: skip


def register(group: click.Group) -> None:
    """Add this module's commands to the CLI."""
    group.add_command(alerts_group)
