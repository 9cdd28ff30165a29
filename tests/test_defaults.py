"""The defaults of ``otaudit serve``: the table, ``--help``, the docs and the library agree.

:mod:`otaudit.defaults` holds every default of ``serve``; the command's options take theirs
from it, ``docs/operations.md`` states each, and the library's settings classes start from
the same values, so none of them can drift from the others.
"""

from __future__ import annotations

import contextlib
import io
import re
from functools import cache
from pathlib import Path

import click
import pytest

from otaudit import defaults
from otaudit.cli import main
from otaudit.cli.main import cli
from otaudit.defaults import SERVE, Setting
from otaudit.detect.notify import NotifySettings
from otaudit.ingest import IngestSettings
from otaudit.otlp.convert import Limits
from otaudit.receiver.connections import ConnectionLimits
from otaudit.server import ServeSettings, parse_address
from otaudit.timespec import parse_duration

OPERATIONS = Path(__file__).resolve().parent.parent / "docs" / "operations.md"


@cache
def _serve_help() -> str:
    """What ``otaudit serve --help`` prints (which also registers the commands)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exited:
        main(["serve", "--help"])
    assert exited.value.code == 0, out.getvalue()
    return out.getvalue()


def _serve() -> click.Command:
    """The ``serve`` command, as ``otaudit`` runs it."""
    _serve_help()
    with click.Context(cli) as ctx:
        command = cli.get_command(ctx, "serve")
    assert command is not None
    return command


def _options() -> dict[str, click.Option]:
    return {
        name: param
        for param in _serve().params
        if isinstance(param, click.Option)
        for name in param.opts
    }


def _given(monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """Option -> the value ``serve`` is called with when the option is not given."""
    command = _serve()
    for param in command.params:
        for env in [param.envvar] if isinstance(param.envvar, str) else param.envvar or []:
            monkeypatch.delenv(env, raising=False)
    with command.make_context("serve", []) as ctx:
        values = ctx.params
    return {name: values[option.name] for name, option in _options().items() if option.name}


def _squeezed(text: str) -> str:
    """``text`` without whitespace: help output is wrapped, at spaces and at hyphens."""
    return re.sub(r"\s+", "", text)


def _documented() -> dict[str, str]:
    """Option -> its default as the ``otaudit serve`` table of docs/operations.md states it."""
    text = OPERATIONS.read_text()
    section = text.split("## `otaudit serve`", 1)[1].split("\n## ", 1)[0]
    found: dict[str, str] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if len(cells) == 3 and cells[0].startswith("`--"):
            for option in re.findall(r"`(--[a-z-]+)", cells[0]):
                found[option] = cells[1]
    return found


def _documented_value(cell: str, default: object) -> object:
    """The value a docs cell states (``16 MiB``, ``200 000``, ``1.0``, `` `otlp` ``), read as
    the default's type; the text itself when it is not such a value."""
    text = cell.replace("`", "").split(" (", 1)[0].strip()
    if isinstance(default, Path):
        return Path(text)
    if isinstance(default, str):
        return text
    if m := re.fullmatch(r"(\d+) (KiB|MiB)", text):
        return int(m[1]) * {"KiB": 1024, "MiB": 1024 * 1024}[m[2]]
    if re.fullmatch(r"\d{1,3}( \d{3})*|\d+", text):
        return int(text.replace(" ", ""))
    if re.fullmatch(r"\d+\.\d+", text):
        return float(text)
    return cell.replace("`", "")


# --------------------------------------------------------------------------------------------
# The table and the command


def test_every_default_of_serve_is_in_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    in_table = {s.option for s in SERVE}
    options = _options()
    with_default = {
        name
        for name, value in _given(monkeypatch).items()
        if value is not None and not options[name].is_flag and not options[name].multiple
    }
    assert with_default - in_table == set(), "defaults of serve missing from otaudit.defaults"
    assert len(in_table) == len(SERVE), "an option is twice in the table"


@pytest.mark.parametrize("setting", SERVE, ids=lambda s: s.option)
def test_the_option_takes_its_default_from_the_table(
    setting: Setting, monkeypatch: pytest.MonkeyPatch
) -> None:
    option = _options()[setting.option]
    given = _given(monkeypatch)[setting.option]
    if given is not None:
        assert given == setting.default
    else:
        # Computed when the command runs (from another option, or by parsing a duration):
        # the help text states it.
        assert setting.shown is not None
        assert option.help is not None
        assert re.search(rf"default:? {re.escape(setting.shown)}[];]", option.help), option.help


def test_serve_help_shows_the_tables_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    shown = _squeezed(_serve_help())
    command = _serve()
    given = _given(monkeypatch)
    with click.Context(command, info_name="serve") as ctx:
        for setting in SERVE:
            option = _options()[setting.option]
            record = option.get_help_record(ctx)
            assert record is not None
            value = given[setting.option]
            expected = setting.shown if value is None else value
            assert str(expected) in record[1], (setting.option, record[1])
            assert _squeezed(record[1]) in shown, setting.option


def test_computed_defaults_say_what_they_compute() -> None:
    shown = {s.option: s.shown for s in SERVE}
    assert shown["--max-records-per-request"] == (
        f"{defaults.MAX_RECORDS_PER_REQUEST}, or --max-queue-records if smaller"
    )
    assert defaults.MAX_RECORDS_PER_REQUEST <= defaults.MAX_QUEUE_RECORDS
    assert parse_duration(str(shown["--alert-group-window"])) == defaults.ALERT_GROUP_WINDOW_S
    assert 1 <= defaults.WORKERS <= 4


# --------------------------------------------------------------------------------------------
# The table and the documentation


@pytest.mark.parametrize("setting", SERVE, ids=lambda s: s.option)
def test_operations_md_states_the_tables_default(setting: Setting) -> None:
    cell = _documented().get(setting.option)
    assert cell is not None, f"{setting.option} is not in docs/operations.md"
    value = _documented_value(cell, setting.default)
    if value != setting.default:
        assert setting.shown is not None, (setting.option, cell, setting.default)
        assert cell.replace("`", "") == setting.shown, (setting.option, cell, setting.shown)


# --------------------------------------------------------------------------------------------
# The table and the library


def test_the_library_starts_from_the_table() -> None:
    ingest = IngestSettings()
    assert (ingest.audit_attribute, ingest.default_pipeline) == (
        defaults.AUDIT_ATTRIBUTE,
        defaults.PIPELINE,
    )
    assert (ingest.max_body_bytes, ingest.workers) == (defaults.MAX_BODY_BYTES, defaults.WORKERS)
    limits = Limits()
    assert (limits.max_attributes, limits.max_value_bytes, limits.max_resource_bytes) == (
        defaults.MAX_ATTRIBUTES,
        defaults.MAX_ATTRIBUTE_BYTES,
        defaults.MAX_RESOURCE_BYTES,
    )
    assert limits.max_records == defaults.MAX_RECORDS_PER_REQUEST
    connections = ConnectionLimits()
    assert connections == ConnectionLimits(
        defaults.HEADER_TIMEOUT_S,
        defaults.BODY_TIMEOUT_S,
        defaults.MAX_CONNECTIONS,
        defaults.MAX_CALLS_PER_PEER,
    )
    serve = ServeSettings()
    assert serve.data == defaults.DATA_DIR
    assert serve.http == parse_address(defaults.HTTP_ADDRESS, "--http")
    assert serve.grpc == parse_address(defaults.GRPC_ADDRESS, "--grpc")
    assert serve.checkpoint_interval_s == defaults.CHECKPOINT_INTERVAL_S
    assert serve.max_queue_records == defaults.MAX_QUEUE_RECORDS
    assert serve.shutdown_timeout_s == defaults.SHUTDOWN_TIMEOUT_S
    assert NotifySettings().group_window_s == defaults.ALERT_GROUP_WINDOW_S
