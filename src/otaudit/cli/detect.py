"""``otaudit detect``, ``otaudit alerts`` and ``otaudit rules``: monitoring and its evidence.

``detect`` runs the rules over history; ``serve`` runs the same rules as
records are sealed (``detection_options`` are shared). ``alerts`` lists the
alerts in the ledger with their triage state, ``alerts ack`` records a
triage decision, ``rules`` checks and shows rule files.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

import click
import orjson
from click.core import ParameterSource

from otaudit.cli.main import store_options, time_bound
from otaudit.cli.reading import audited_read, sign_if_possible
from otaudit.cli.search import terminal
from otaudit.errors import ConfigError
from otaudit.query import cell
from otaudit.textsafety import terminal_text

if TYPE_CHECKING:
    from otaudit.detect.notify import NotifySettings
    from otaudit.detect.rules import Rule

F = TypeVar("F", bound=Callable[..., Any])
FORMATS: Final = ("table", "json", "jsonl")


def rule_options(func: F) -> F:
    """``--rules FILE`` (repeatable) and ``--no-builtin-rules``."""
    func = click.option("--no-builtin-rules", is_flag=True,
                        help="Run only the rules of --rules files.")(func)  # fmt: skip
    func = click.option(
        "--rules", "rule_files", multiple=True, metavar="FILE",
        type=click.Path(path_type=Path, dir_okay=False),
        help="A YAML rule file (repeatable); its rules add to, or change, the built-in ones.",
    )(func)  # fmt: skip
    return func


#: Environment variables for notification settings that may hold secrets; each is used when
#: its option is not given. The process list shows every command line to every local user;
#: a process's environment only to its own user.
WEBHOOK_ENV: Final = "OTAUDIT_ALERT_WEBHOOK"
WEBHOOK_HEADERS_ENV: Final = "OTAUDIT_ALERT_WEBHOOK_HEADERS"
OTLP_HEADERS_ENV: Final = "OTAUDIT_ALERT_OTLP_HEADERS"


def notify_options(func: F) -> F:
    """Where new alerts are sent besides the ledger and the log."""
    for name, metavar, text in reversed((
        ("--alert-webhook", "URL",
         f"POST each new alert as JSON here (retried). A URL whose path or query is a "
         f"secret goes in ${WEBHOOK_ENV} instead; credentials in the URL are refused."),
        ("--alert-webhook-header-file", "FILE",
         f"'Name: value' lines, headers for the webhook such as Authorization (mode 0600; "
         f"or the lines in ${WEBHOOK_HEADERS_ENV})."),
        ("--alert-webhook-secret-file", "FILE",
         "Sign each webhook body with this secret (mode 0600): "
         "X-Otaudit-Signature: sha256=<HMAC-SHA256>."),
        ("--alert-otlp-endpoint", "URL",
         "Export each new alert as an OTLP log record to this OTLP/HTTP logs URL "
         "(e.g. http://collector:4318/v1/logs; retried)."),
        ("--alert-otlp-header-file", "FILE",
         f"'Name: value' lines, headers for the OTLP export (mode 0600; or the lines in "
         f"${OTLP_HEADERS_ENV})."),
        ("--alert-group-window", "DURATION",
         "Findings of one rule and group within one such window (of receive time) make one "
         "alert, raised at the first, and one summary when the window closes (default 10m; "
         "from 1s to 1d; see docs/alerts.md)."),
    )):  # fmt: skip
        func = click.option(name, metavar=metavar, help=text)(func)
    # Header values on the command line are refused (see notify_settings); the options stay,
    # hidden, so that an old command line is told what to do instead.
    for name in ("--alert-otlp-header", "--alert-webhook-header"):
        func = click.option(name, multiple=True, hidden=True)(func)
    return func


def load_rule_set(rule_files: tuple[Path, ...], no_builtin_rules: bool) -> list[Rule]:
    """The enabled rules (ConfigError, so exit 2, on any invalid or empty rule file)."""
    from otaudit.detect.rules import load_rules

    return load_rules(rule_files, builtin=not no_builtin_rules)


def notify_settings(
    alert_webhook: str | None,
    alert_webhook_header: tuple[str, ...],
    alert_webhook_header_file: str | None,
    alert_webhook_secret_file: str | None,
    alert_otlp_endpoint: str | None,
    alert_otlp_header: tuple[str, ...],
    alert_otlp_header_file: str | None,
    alert_group_window: str | None = None,
) -> NotifySettings:
    """The notification options, checked; secrets only from files (mode 0600 or stricter) or
    the environment, never from the command line."""
    from otaudit.detect.notify import NotifySettings, check_url
    from otaudit.secretfile import read_secret

    for option, given, env in (
        ("--alert-webhook-header", alert_webhook_header, WEBHOOK_HEADERS_ENV),
        ("--alert-otlp-header", alert_otlp_header, OTLP_HEADERS_ENV),
    ):
        if given:
            raise click.UsageError(
                f"{option} is refused: header values on the command line are visible to every "
                f"user in the process list; put 'Name: value' lines in {option}-file FILE "
                f"(mode 0600) or in ${env}"
            )
    webhook = alert_webhook if alert_webhook is not None else os.environ.get(WEBHOOK_ENV) or None
    for option, needed, file in (
        ("--alert-webhook-secret-file", "--alert-webhook", alert_webhook_secret_file),
        ("--alert-webhook-header-file", "--alert-webhook", alert_webhook_header_file),
        ("--alert-otlp-header-file", "--alert-otlp-endpoint", alert_otlp_header_file),
    ):
        target = webhook if needed == "--alert-webhook" else alert_otlp_endpoint
        if file is not None and target is None:
            raise click.UsageError(f"{option} needs {needed}")

    where = "--alert-webhook" if alert_webhook is not None else f"${WEBHOOK_ENV}"
    return NotifySettings(
        webhook=None if webhook is None else check_url(webhook, where),
        webhook_headers=()
        if webhook is None
        else _headers(alert_webhook_header_file, "--alert-webhook-header-file",
                      WEBHOOK_HEADERS_ENV),
        webhook_secret=None
        if alert_webhook_secret_file is None
        else read_secret(Path(alert_webhook_secret_file), "--alert-webhook-secret-file"),
        otlp_endpoint=None
        if alert_otlp_endpoint is None
        else check_url(alert_otlp_endpoint, "--alert-otlp-endpoint"),
        otlp_headers=()
        if alert_otlp_endpoint is None
        else _headers(alert_otlp_header_file, "--alert-otlp-header-file", OTLP_HEADERS_ENV),
        group_window_s=group_window_seconds(alert_group_window),
    )  # fmt: skip


#: The bounds of ``--alert-group-window``, in seconds.
GROUP_WINDOW_BOUNDS_S: Final = (1, 86_400)


def group_window_seconds(text: str | None) -> int:
    """``--alert-group-window`` in seconds (default 10 minutes); a usage error when it is not a
    duration from 1s to 1d."""
    from otaudit.detect.grouping import DEFAULT_WINDOW_S
    from otaudit.timespec import parse_duration

    if text is None:
        return DEFAULT_WINDOW_S
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--alert-group-window") from None
    low, high = GROUP_WINDOW_BOUNDS_S
    if not low <= seconds <= high:
        raise click.BadParameter(f"from 1s to 1d, got {text} ({seconds} s)",
                                 param_hint="--alert-group-window")  # fmt: skip
    return seconds


def _headers(path: str | None, option: str, env: str) -> tuple[tuple[str, str], ...]:
    """The headers of a header file (checked like every secret file) and of ``env``."""
    from otaudit.detect.notify import parse_header_lines
    from otaudit.secretfile import read_private_file

    headers: tuple[tuple[str, str], ...] = ()
    if path is not None:
        raw = read_private_file(Path(path), option)
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            raise ConfigError(f"{option} {path} is not UTF-8 text") from None
        headers = parse_header_lines(text, f"{option} {path}")
    return headers + parse_header_lines(os.environ.get(env, ""), f"${env}")


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
        run = detect_history(store, rules, since_ns=since_ns, until_ns=until_ns, now_ns=now,
                             group_window_ns=window_ns)  # fmt: skip
        outcome.rows = len(run.alerts)
    new = 0
    if record and run.notes:
        notifier = Notifier(settings) if settings.enabled else None
        writable = datadir.open_store(data, store_url, readonly=False, migrate=False)
        try:
            publisher = AlertPublisher(lambda entries: writable.append(entries).seqs, notifier)
            publisher.publish(run.notes)
            new = publisher.published
            sign_if_possible(data, writable)
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
    "--format", "fmt", type=click.Choice(("table", "json")), default="table", show_default=True
)
@click.pass_context
def alerts_group(
    ctx: click.Context, data: Path, store_url: str | None, state: str, since: str | None, fmt: str
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
    if fmt == "json":
        click.echo(orjson.dumps([a.as_json() for a in alerts], option=orjson.OPT_INDENT_2).decode())
        return
    from rich.table import Table

    table = Table()
    for name in ("id", "time", "rule", "severity", "summary", "findings", "state", "by",
                 "decided at"):  # fmt: skip
        table.add_column(name, overflow="fold")
    for a in alerts:
        last = a.triage[-1] if a.triage else None
        shown = (a.alert_id, a.time, a.rule, a.severity, a.summary, a.findings, a.state,
                 last and last.actor, last and last.time)  # fmt: skip
        table.add_row(*(cell(v) for v in shown))
    console = terminal()
    console.print(table)
    console.print(f"{len(alerts)} alert(s), {sum(a.is_open for a in alerts)} open")


def _location(data: Path, store_url: str | None) -> tuple[Path, str | None]:
    """A subcommand's ``--data``/``--store``, or the group's where the subcommand has none
    of its own (``otaudit alerts --data D ack ...`` and ``... ack ... --data D`` agree)."""
    ctx = click.get_current_context()
    parent = ctx.parent
    if parent is None:
        return data, store_url
    if ctx.get_parameter_source("data") == ParameterSource.DEFAULT:
        data = parent.params["data"]
    if ctx.get_parameter_source("store_url") == ParameterSource.DEFAULT:
        store_url = parent.params["store_url"]
    return data, store_url


@alerts_group.command("show")
@store_options
@click.argument("alert_id", metavar="ID")
@click.option("--format", "fmt", type=click.Choice(("table", "json")), default="table",
              show_default=True)  # fmt: skip
def show_command(data: Path, store_url: str | None, alert_id: str, fmt: str) -> None:
    """Show one alert, its triage, and the records that make it (the evidence)."""
    from otaudit.cli.search import print_table
    from otaudit.detect.alerts import find_alert
    from otaudit.store.search import SEARCH_COLUMNS, SearchFilter

    data, store_url = _location(data, store_url)
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
    print_table(rows, console)


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
    from otaudit.detect.alerts import find_alert, triage_entry

    if not note.strip():
        raise click.BadParameter("say what was looked at and why", param_hint="--note")
    if len(note) > MAX_NOTE:
        raise click.BadParameter(f"at most {MAX_NOTE} characters (this one has {len(note)})",
                                 param_hint="--note")  # fmt: skip
    data, store_url = _location(data, store_url)
    if store_url is None:
        datadir.prepare(data, create=False)
    store = datadir.open_store(data, store_url, readonly=False, migrate=False)
    try:
        alert = find_alert(store, alert_id)
        reader = access.os_reader()
        seq = access.append_read(store, triage_entry(reader, alert.alert_id, decision, note))
        sign_if_possible(data, store)
    finally:
        store.close()
    click.echo(f"alert {alert.alert_id} ({alert.rule}): {decision} by {reader.actor}, "
               f"recorded at ledger seq {seq}")  # fmt: skip


@click.group("rules")
def rules_group() -> None:
    """Check and show detection rules."""


@rules_group.command("check")
@click.argument("files", nargs=-1, required=True,
                type=click.Path(path_type=Path, dir_okay=False))  # fmt: skip
@click.option("--no-builtin-rules", is_flag=True, help="Check the files without the built-ins.")
def rules_check_command(files: tuple[Path, ...], no_builtin_rules: bool) -> None:
    """Validate rule files (exit 2 with the first error); print the rules they enable."""
    rules = load_rule_set(files, no_builtin_rules)
    click.echo(f"OK: {len(rules)} rules enabled: {', '.join(r.name for r in rules)}")


@rules_group.command("list")
@rule_options
@click.option("--format", "fmt", type=click.Choice(("table", "yaml")), default="table",
              show_default=True, help="yaml: every key of every rule, as a rule file.")  # fmt: skip
def rules_list_command(rule_files: tuple[Path, ...], no_builtin_rules: bool, fmt: str) -> None:
    """Show the rules in effect (built-in ones changed by --rules files)."""
    rules = load_rule_set(rule_files, no_builtin_rules)
    if fmt == "yaml":
        import yaml

        specs = [{k: v for k, v in rule.spec.items() if k != "enabled"} for rule in rules]
        click.echo(yaml.safe_dump({"rules": specs}, sort_keys=False, allow_unicode=True), nl=False)
        return
    from rich.table import Table

    table = Table()
    for name in ("name", "kind", "severity", "parameters", "description"):
        table.add_column(name, overflow="fold")
    for rule in rules:
        params = {k: v for k, v in rule.spec.items() if k in (
            "group_by", "threshold", "window", "distinct", "field", "baseline", "learning",
            "after", "compare_with", "min_records", "working_hours")}  # fmt: skip
        shown = (rule.name, rule.kind, rule.severity, json.dumps(params, default=str),
                 rule.description)  # fmt: skip
        table.add_row(*(cell(v) for v in shown))
    terminal().print(table)


def register(group: click.Group) -> None:
    """Add this module's commands to the CLI."""
    group.add_command(detect_command)
    group.add_command(alerts_group)
    group.add_command(rules_group)
