"""``otaudit rules check | list``: check rule files and show the rules in effect."""

from __future__ import annotations

import json
from pathlib import Path

import click

from otaudit.cli.options import load_rule_set, rule_options
from otaudit.cli.render import terminal
from otaudit.query import cell


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
    group.add_command(rules_group)
