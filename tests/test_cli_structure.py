"""The command line's shape: errors mapped once for every command, and modules without a cycle.

Every :class:`~otaudit.errors.OtauditError` a command raises becomes one line on stderr and
exit status 2, whether or not the command thought of it; a failed check of a
:class:`~otaudit.cli.render.CheckCommand` exits 1 after its prefix. The command modules
import the shared options and rendering, never ``main`` nor one another.
"""

from __future__ import annotations

import ast
from pathlib import Path

import click
from click.testing import CliRunner

import otaudit.cli
from otaudit.cli.main import OtauditGroup
from otaudit.cli.render import CheckCommand
from otaudit.errors import IndexNotInTree, NotFound, SizesOutOfOrder, VerificationError

CLI_DIR = Path(otaudit.cli.__file__).parent
SHARED = {
    "otaudit.cli.options",
    "otaudit.cli.progress",
    "otaudit.cli.render",
    "otaudit.cli.reading",
    "otaudit.cli.rows",
}


def _group() -> click.Group:
    group = OtauditGroup("otaudit")

    @group.command("missing")
    def missing() -> None:
        raise NotFound("no token with id 'x'")

    @group.command("seq")
    def seq() -> None:
        raise IndexNotInTree(13, 13)

    @group.command("sizes")
    def sizes() -> None:
        raise SizesOutOfOrder(7, 3)

    @group.command("proof")
    def proof() -> None:
        raise VerificationError("root differs", expected=b"\x01", computed=b"\x02")

    @group.command("check", cls=CheckCommand)
    def check() -> None:
        raise VerificationError("seq 4 is missing", 4)

    @group.command("key", cls=CheckCommand, failed="otaudit: error: ")
    def key() -> None:
        raise VerificationError("the key is not confirmed")

    @group.command("interrupted", cls=CheckCommand)
    def interrupted() -> None:
        raise KeyboardInterrupt

    return group


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(_group(), list(args))
    return result.exit_code, result.stderr


def test_an_error_no_command_catches_is_one_line_and_exit_2() -> None:
    assert _run("missing") == (2, "otaudit: error: no token with id 'x'\n")


def test_a_proof_request_names_the_option_it_came_from() -> None:
    assert _run("seq") == (2, "otaudit: error: --seq 13 is not in the tree of size 13\n")
    assert _run("sizes") == (2, "otaudit: error: --from 7 is larger than --to 3\n")
    assert str(IndexNotInTree(13, 13)) == "index 13 is not in the tree of size 13"


def test_a_failed_check_exits_1_only_where_the_check_is_the_answer() -> None:
    assert _run("check") == (1, "FAILED: seq 4 is missing\n")
    assert _run("key") == (1, "otaudit: error: the key is not confirmed\n")
    assert _run("proof") == (2, "otaudit: error: root differs\n")


def test_ctrl_c_exits_130_not_the_status_of_a_failed_check() -> None:
    assert _run("interrupted") == (130, "otaudit: interrupted\n")


def test_a_verification_error_carries_both_values() -> None:
    exc = VerificationError("root differs", 5, expected=b"\x01", computed=b"\x02")
    assert (exc.seq, exc.expected, exc.computed) == (5, b"\x01", b"\x02")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            if node.module == "otaudit.cli":  # from otaudit.cli import search
                names.update(f"otaudit.cli.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return {n for n in names if n.startswith("otaudit.cli.")}


def test_command_modules_import_only_the_shared_modules() -> None:
    modules = {p.stem for p in CLI_DIR.glob("*.py")} - {"__init__", "main"}
    commands = {f"otaudit.cli.{m}" for m in modules} - SHARED
    for module in modules:
        imported = _imports(CLI_DIR / f"{module}.py")
        assert "otaudit.cli.main" not in imported, module
        assert not imported & commands, (module, imported & commands)
    for shared in SHARED:
        assert not _imports(CLI_DIR / f"{shared.rsplit('.', 1)[1]}.py") - SHARED, shared
