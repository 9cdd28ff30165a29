"""The click options several commands share, and the checks of their values.

``--data``/``--store`` (every command that opens the ledger), ``--since``/``--until``
as times, ``--query-store``, and the detection options that ``serve`` and ``detect``
both take (rule files, where alerts are sent).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

import click
from click.core import ParameterSource

from otaudit import defaults
from otaudit.datadir import DEFAULT_DATA
from otaudit.errors import ConfigError
from otaudit.timespec import parse_duration, parse_time

if TYPE_CHECKING:
    from otaudit.detect.notify import NotifySettings
    from otaudit.detect.rules import Rule
    from otaudit.retention.schedule import RetentionSettings

F = TypeVar("F", bound=Callable[..., Any])

#: The largest count or size an option takes: every limit fits a signed 64-bit integer
#: (what SQLite, PostgreSQL and the C libraries below take) with room to add to it.
MAX_COUNT: Final = 2**62


class Count(click.IntRange):
    """A whole number from ``minimum`` to ``maximum`` (at most :data:`MAX_COUNT`)."""

    def __init__(self, minimum: int, maximum: int = MAX_COUNT) -> None:
        super().__init__(minimum, min(maximum, MAX_COUNT))


class Seconds(click.FloatRange):
    """A finite number from ``minimum`` to ``maximum``: NaN and the infinities, which pass
    a range check (every comparison with NaN is false), are refused by name."""

    def __init__(self, minimum: float, maximum: float = 1e9) -> None:
        super().__init__(minimum, maximum)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """The number, refused when it is not finite."""
        number = super(click.FloatRange, self).convert(value, param, ctx)
        if isinstance(number, float) and not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return super().convert(number, param, ctx)


def http_option(dest: str, help_text: str) -> Callable[[F], F]:
    """``--http HOST:PORT``, the OTLP/HTTP listener (``serve`` binds it, ``status`` asks it)."""
    return click.option(
        "--http",
        dest,
        metavar="HOST:PORT",
        default=defaults.HTTP_ADDRESS,
        show_default=True,
        help=help_text,
    )


def store_options(func: F) -> F:
    """Add ``--data`` and ``--store`` to a command."""
    func = click.option(
        "--store",
        "store_url",
        metavar="URL",
        envvar="OTAUDIT_STORE",
        help="Ledger store URL (default: the SQLite ledger inside --data).",
    )(func)
    func = click.option(
        "--data",
        type=click.Path(path_type=Path, file_okay=False),
        default=DEFAULT_DATA,
        show_default=True,
        envvar="OTAUDIT_DATA",
        help="Data directory (SQLite ledger and signing key).",
    )(func)
    return func


def time_bound(text: str | None, option: str, now_ns: int) -> int | None:
    """A ``--since``/``--until`` value as UTC nanoseconds (None if not given); a usage
    error naming the option if it is neither RFC 3339, a date, nor a duration ago."""
    if text is None:
        return None
    try:
        return parse_time(text, now_ns)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


def query_store_option(func: click.decorators.FC) -> click.decorators.FC:
    """``--query-store``: the PostgreSQL login user SQL runs as."""
    return click.option(
        "--query-store",
        "query_url",
        metavar="URL",
        envvar="OTAUDIT_QUERY_STORE",
        help="PostgreSQL URL of a login that can only read the audit views; user SQL runs "
        "as it (default: --store, refused if that login can do more).",
    )(func)


def group_location(data: Path, store_url: str | None) -> tuple[Path, str | None]:
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


def _every(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if seconds < 10:
        raise click.BadParameter("prune at most once every 10 s (e.g. 1h, 15m)")
    return seconds


def retention_options(func: F) -> F:
    """``serve``'s ``--retention FILE``, ``--allow-short``, ``--prune-every D``,
    ``--archive URL`` and ``--s3-endpoint URL``."""
    for option in reversed(
        (
            click.option("--retention", "policy_file", metavar="FILE",
                         type=click.Path(path_type=Path, dir_okay=False),
                         help="Prune by this retention policy (YAML; docs/retention.md)."),
            click.option("--allow-short", is_flag=True,
                         help="Accept retention rules shorter than the policy's minimum."),
            click.option("--prune-every", metavar="D", callback=_every,
                         help="How often to prune with --retention [default: 1h]."),
            click.option("--prune-rate", type=click.FloatRange(0), metavar="N",
                         help="Records a second the scheduled prune deletes at most, so that "
                              "ingest keeps its latency (0: no limit) [default: 3000]."),
            click.option("--archive", "archive_url", metavar="URL",
                         help="Archive what is pruned first: file:///DIR or s3://BUCKET/PREFIX."),
            click.option("--s3-endpoint", metavar="URL",
                         help="An S3-compatible endpoint for an s3:// --archive."),
        )
    ):  # fmt: skip
        func = option(func)
    return func


def retention_settings(
    policy_file: Path | None,
    allow_short: bool,
    prune_every: int | None,
    prune_rate: float | None,
    archive_url: str | None,
    s3_endpoint: str | None,
) -> RetentionSettings | None:
    """The settings of :func:`retention_options` (None without ``--retention``); the
    policy is loaded now, so that a bad file stops ``serve`` at start, naming the line."""
    if policy_file is None:
        if any(v is not None for v in (prune_every, prune_rate, archive_url)) or allow_short:
            raise click.UsageError(
                "--prune-every, --prune-rate, --archive and --allow-short need --retention"
            )
        return None
    from otaudit.retention.policy import load_policy
    from otaudit.retention.schedule import DEFAULT_EVERY_S, DEFAULT_RATE, RetentionSettings

    policy = load_policy(policy_file, allow_short=allow_short)
    every = DEFAULT_EVERY_S if prune_every is None else prune_every
    rate = DEFAULT_RATE if prune_rate is None else prune_rate
    return RetentionSettings(
        policy, policy_file.absolute(), every, allow_short, archive_url, s3_endpoint, rate
    )
