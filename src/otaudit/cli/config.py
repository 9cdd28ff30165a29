"""A configuration file for every command: ``otaudit --config otaudit.toml serve``.

The file is TOML (read with the standard library). Keys are option names without their
dashes. Keys at the top apply to every command that has the option (``data``, ``store``,
``query-store``, ``rules``: so that ``detect`` or ``sql`` need no flag repeated); a table
per command sets that command's own (``[serve]``, ``[detect]``, ``[token.create]``):

    data = "/var/lib/otaudit"
    [serve]
    http = "0.0.0.0:4318"
    checkpoint-interval = 0.5

What is given on the command line wins, then the environment (``OTAUDIT_DATA`` ...),
then the file, then the built-in default. A key, table or value the commands do not take
is an error naming its line; values are checked by the option's own type when the file is
read (a word where a number goes, 1.5 workers, NaN seconds). A key at the top reaches the
commands whose option takes its value: ``format = "csv"`` sets every command that prints
rows, while ``status`` (text or json) keeps its own default. ``otaudit config show
[COMMAND]`` prints what is in force and where each value came from. ``--config FILE``
(or ``OTAUDIT_CONFIG``) may come before or after the command's name, once.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import click

from otaudit.cli import rows as rows_out
from otaudit.errors import ConfigError
from otaudit.smallfile import read_small_file

CONFIG_ENV: Final = "OTAUDIT_CONFIG"
#: The largest configuration file read.
MAX_BYTES: Final = 1 << 20


@dataclass(frozen=True)
class Setting:
    """One value the file sets: for which command, which option, on which line."""

    command: tuple[str, ...]
    key: str
    param: str
    value: Any
    line: int


@dataclass(frozen=True)
class Config:
    """A loaded file: click's default map, and every setting with its line."""

    path: Path
    default_map: dict[str, Any]
    settings: tuple[Setting, ...]


def option_keys(command: click.Command) -> dict[str, str]:
    """The file keys of ``command``'s options (long option without dashes) -> param name."""
    keys = {}
    for param in command.params:
        if isinstance(param, click.Option) and param.name and not param.hidden:
            for opt in param.opts + param.secondary_opts:
                if opt.startswith("--"):
                    keys[opt[2:]] = param.name
                    break
    return keys


def commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[
    tuple[tuple[str, ...], click.Command]
]:  # fmt: skip
    """Every command below ``group``, by its path of names."""
    for name, command in sorted(group.commands.items()):
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))


def load(path: Path, root: click.Group) -> Config:
    """Read ``path`` and check every key against the commands of ``root`` (ConfigError)."""
    raw = read_small_file(path, "configuration file", MAX_BYTES)
    if raw is None:
        raise ConfigError(f"no configuration file {path}")
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    return load_text(text, path, root)


def load_text(text: str, path: Path, root: click.Group) -> Config:
    """:func:`load` of ``text``, named ``path`` in messages."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply") from None
    lines = _key_lines(text)
    known = dict(commands(root))
    settings: list[Setting] = []

    def where(section: tuple[str, ...], key: str) -> str:
        return f"{path}:{lines.get((section, key), 1)}"

    def table(section: tuple[str, ...], values: dict[str, Any]) -> None:
        command = known.get(section)
        if command is None:
            raise ConfigError(
                f"{where(section[:-1], section[-1])}: no command `otaudit {' '.join(section)}`"
            )
        keys = option_keys(command)
        for key, value in values.items():
            if isinstance(value, dict):
                table((*section, key), value)
                continue
            if key not in keys:
                raise ConfigError(
                    f"{where(section, key)}: `otaudit {' '.join(section)}` has no option "
                    f"--{key} (it takes: {', '.join(sorted(keys)) or 'none'})"
                )
            problem = value_problem(_param(command, keys[key]), value)
            if problem is not None:
                raise ConfigError(f"{where(section, key)}: {key}: {problem}")
            settings.append(Setting(section, key, keys[key], value, lines.get((section, key), 1)))

    shared: dict[str, Any] = {}
    for key, value in document.items():
        if isinstance(value, dict):
            table((key,), value)
        else:
            shared[key] = value
    for key, value in shared.items():
        takers = [p for p, c in known.items() if key in option_keys(c)]
        if not takers:
            raise ConfigError(f"{where((), key)}: no command has an option --{key}")
        # A key for every command reaches those that take its value (``format = "json"``:
        # every command with a json format); a value none of them takes is an error.
        problems = {
            p: value_problem(_param(known[p], option_keys(known[p])[key]), value) for p in takers
        }
        takers = [p for p in takers if problems[p] is None]
        if not takers:
            first = next(iter(problems.values()))
            raise ConfigError(f"{where((), key)}: {key}: {first}")
        for command_path in takers:
            own = any(s.command == command_path and s.key == key for s in settings)
            if not own:  # a command's own table wins over the shared key
                param = option_keys(known[command_path])[key]
                line = lines.get(((), key), 1)
                settings.append(Setting(command_path, key, param, value, line))
    default_map: dict[str, Any] = {}
    for s in settings:
        level = default_map
        for name in s.command:
            level = level.setdefault(name, {})
        level[s.param] = s.value
    return Config(path, default_map, tuple(settings))


def _param(command: click.Command, name: str) -> click.Parameter:
    return next(p for p in command.params if p.name == name)


def value_problem(param: click.Parameter, value: Any) -> str | None:
    """What is wrong with ``value`` for ``param`` (None: nothing), as click would say it:
    checked when the file is read, so a bad value names its line before anything runs.
    Files are not opened here (the command opens them when it runs)."""
    many = param.multiple or param.nargs != 1
    if isinstance(value, dict):
        return "expected a value, not a table"
    if many != isinstance(value, list):
        return "expected a list of values" if many else "expected one value, not a list"
    if isinstance(param.type, click.File):
        return None
    ctx = click.Context(click.Command("config"))
    try:
        for item in value if many else [value]:
            if isinstance(item, (list, dict)):
                return "expected a value, not a list or table"
            if isinstance(param.type, click.types.IntParamType) and isinstance(item, (float, bool)):
                return f"{item!r} is not a whole number"
            param.type.convert(item, param, ctx)
    except click.BadParameter as exc:
        return exc.message
    return None


_TABLE_RE: Final = re.compile(r"^\s*\[\s*([A-Za-z0-9_.\-\" ]+?)\s*\]\s*(#.*)?$")
_KEY_RE: Final = re.compile(r"^\s*\"?([A-Za-z0-9_\-]+)\"?\s*=")


def _key_lines(text: str) -> dict[tuple[tuple[str, ...], str], int]:
    """Where each key of each table is, by line number (for the error messages)."""
    found: dict[tuple[tuple[str, ...], str], int] = {}
    section: tuple[str, ...] = ()
    for number, line in enumerate(text.splitlines(), 1):
        table = _TABLE_RE.match(line)
        if table:
            section = tuple(part.strip().strip('"') for part in table.group(1).split("."))
            for depth in range(1, len(section) + 1):
                found.setdefault((section[: depth - 1], section[depth - 1]), number)
            continue
        key = _KEY_RE.match(line)
        if key:
            found.setdefault((section, key.group(1)), number)
    return found


def take_config_option(args: list[str]) -> tuple[str | None, list[str]]:
    """``--config FILE`` (or ``--config=FILE``) wherever it is in ``args``, and the rest."""
    rest: list[str] = []
    found: str | None = None
    it = iter(args)
    for arg in it:
        if arg == "--":
            rest.append(arg)
            rest.extend(it)
            break
        if arg == "--config" or arg.startswith("--config="):
            given = next(it, None) if arg == "--config" else arg.split("=", 1)[1]
            if not given:
                raise click.UsageError("--config needs a FILE")
            if found is not None:
                raise click.UsageError(f"--config is given twice ({found}, {given}): give one")
            found = given
        else:
            rest.append(arg)
    return found, rest


def config_path(given: str | None) -> Path | None:
    """The file to read: ``--config``, else ``OTAUDIT_CONFIG``, else none."""
    chosen = given if given is not None else os.environ.get(CONFIG_ENV)
    return Path(chosen) if chosen else None


@click.group("config")
def config_group() -> None:
    """The configuration file (otaudit --config FILE, or OTAUDIT_CONFIG)."""


@config_group.command("show")
@click.argument("command", nargs=-1)
@click.pass_context
def config_show(ctx: click.Context, command: tuple[str, ...]) -> None:
    """The settings of COMMAND (default: serve) in force, and where each came from."""
    root = ctx.find_root()
    assert isinstance(root.command, click.Group)
    path = command or ("serve",)
    target = dict(commands(root.command)).get(path)
    if target is None:
        raise click.BadParameter(f"no command `otaudit {' '.join(path)}`", param_hint="COMMAND")
    loaded: Config | None = root.meta.get(META_KEY)
    from_file = {s.param: s for s in loaded.settings if s.command == path} if loaded else {}
    rows: list[tuple[str, Any, str]] = []
    for key, name in sorted(option_keys(target).items()):
        param = next(p for p in target.params if p.name == name)
        envvar = param.envvar if isinstance(param, click.Option) else None
        env = envvar if isinstance(envvar, str) and envvar in os.environ else None
        if env is not None:
            rows.append((key, os.environ[env], f"environment {env}"))
        elif name in from_file:
            setting = from_file[name]
            assert loaded is not None
            rows.append((key, setting.value, f"{loaded.path}:{setting.line}"))
        else:
            default = param.get_default(click.Context(target))
            shown = "" if default is None or type(default).__name__ == "Sentinel" else default
            rows.append((key, shown, "default"))
    click.echo(f"otaudit {' '.join(path)}: the value of each option when the command line "
               "does not give it", err=True)  # fmt: skip
    rows_out.write(("option", "value", "from"), rows, "table", wide=True, noun="option(s)")


#: Where the group keeps the loaded file for ``config show``.
META_KEY: Final = "otaudit.config"


def register(group: click.Group) -> None:
    """Add this module's commands to the CLI."""
    group.add_command(config_group)
