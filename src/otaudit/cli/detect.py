"""``otaudit detect``: run the detection rules over the ledger's history.

``serve`` runs the same rules as records are sealed (the rule and notification options
are shared, :mod:`otaudit.cli.options`); ``--record`` seals the findings not yet in the
ledger as alerts.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Final

import click
import orjson

from otaudit.cli.options import (
    load_rule_set,
    notify_options,
    notify_settings,
    rule_options,
    store_options,
    time_bound,
)
from otaudit.cli.progress import progress_bar
from otaudit.cli.reading import audited_read
from otaudit.cli.render import terminal
from otaudit.ownrecords import DirectAppender
from otaudit.query import cell

FORMATS: Final = ("table", "json", "jsonl")


@click.command("detect")
@store_options
@click.option(
    "--since",
    default="90d",
    show_default=True,
    metavar="TIME",
    help="Report what was raised from this time on, by the receive time of the record that "
    "triggered it, not the time it claims (RFC 3339, a date, or 90d, 12h ...).",
)
@click.option("--until", metavar="TIME", help="Report what was raised before this time.")
@rule_options
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option(
    "--record",
    is_flag=True,
    help="Seal the findings not yet in the ledger as alerts (and send them).",
)
@notify_options
def detect_command(
    data: Path,
    store_url: str | None,
    since: str,
    until: str | None,
    rule_files: tuple[Path, ...],
    no_builtin_rules: bool,
    fmt: str,
    record: bool,
    **notify: Any,
) -> None:
    """Run the detection rules over the ledger's history and print the alerts they make
    (findings of one rule and group within --alert-group-window grouped into one)."""
    from otaudit import datadir
    from otaudit.detect.alerts import finding_json
    from otaudit.detect.notify import Notifier
    from otaudit.detect.run import AlertPublisher, detect_history

    now = time.time_ns()
    since_ns = time_bound(since, "--since", now)
    until_ns = time_bound(until, "--until", now)
    if since_ns is not None and until_ns is not None and until_ns <= since_ns:
        raise click.BadParameter("must be later than --since", param_hint="--until")
    rules = load_rule_set(rule_files, no_builtin_rules)
    settings = notify_settings(**notify)
    text = (
        f"--since {since}"
        + (f" --until {until}" if until else "")
        + "".join(f" --rules {p}" for p in rule_files)
    )
    window_ns = settings.group_window_s * 1_000_000_000
    with audited_read(data, store_url, "detect", text) as (store, outcome):
        with progress_bar("running the rules", store.tree_size()) as progress:
            run = detect_history(store, rules, since_ns=since_ns, until_ns=until_ns, now_ns=now,
                                 group_window_ns=window_ns, progress=progress)  # fmt: skip
        outcome.rows = len(run.alerts)
    new = 0
    if record and run.notes:
        notifier = Notifier(settings) if settings.enabled else None
        writable = datadir.open_store(data, store_url, readonly=False, migrate=False)
        try:
            publisher = AlertPublisher(DirectAppender(writable), notifier)
            publisher.publish(run.notes)
            new = publisher.published
        finally:
            writable.close()
            if notifier is not None:
                notifier.close()
    findings = [finding_json(a.finding, a.raised_ns) | {"findings": run.grouped.get(a.alert_id, 1)}
                for a in run.alerts]  # fmt: skip
    if fmt == "table":
        _findings_table(findings)
    elif fmt == "json":
        click.echo(orjson.dumps(findings, option=orjson.OPT_INDENT_2).decode())
    else:
        for f in findings:
            click.echo(orjson.dumps(f).decode())
    judged = f" (seq {run.first_seq} to {run.end - 1})" if run.records else ""
    grouped = len(run.raised) - len(findings)
    click.echo(
        f"judged {run.records} records{judged} with {len(rules)} "
        f"rules in {run.seconds:.2f} s: {len(findings)} finding(s)"
        + (f" (and {grouped} more grouped into them)" if grouped else "")
        + (f", {new} new alert(s) sealed" if record else ""),
        err=True,
    )


def _findings_table(findings: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table()
    columns = ("id", "time", "rule", "severity", "summary", "trigger_seq", "findings")
    for name in columns:
        table.add_column(name, overflow="fold")
    for f in findings:
        table.add_row(*(cell(f[k]) for k in columns))
    terminal().print(table)


def register(group: click.Group) -> None:
    """Add this module's commands to the CLI."""
    group.add_command(detect_command)
