"""A configuration file for every command: ``otaudit --config FILE`` (or after the
command's name, or OTAUDIT_CONFIG); the command line wins; a key the commands do not
take is an error naming its line; ``config show`` says where each value came from
(issue: day-to-day use, "a configuration file")."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from minilog import run_cli, sealed_ledger
from otaudit.cli import config
from otaudit.cli.main import cli
from otaudit.demo import free_port, wait_ready
from support import audit_request


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    sealed_ledger(data, audit_request(3))
    return data


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "otaudit.toml"
    path.write_text(text)
    return path


def test_shared_keys_reach_every_command_and_flags_win(ledger: Path, tmp_path: Path) -> None:
    config = _file(tmp_path, f'data = "{ledger}"\n')
    before = run_cli("--config", config, "search", "--action", "config_change", "--format", "csv")
    assert before.exit_code == 0, before.stderr
    assert len(before.stdout.splitlines()) == 1 + 3
    after = run_cli("search", "--format", "csv", "--config", config)  # after the name too
    assert after.exit_code == 0, after.stderr
    elsewhere = run_cli("--config", config, "search", "--data", tmp_path / "none")
    assert elsewhere.exit_code == 2 and str(tmp_path / "none") in elsewhere.stderr


def test_a_commands_own_table_sets_its_options(ledger: Path, tmp_path: Path) -> None:
    config = _file(tmp_path, f'data = "{ledger}"\n[search]\nformat = "jsonl"\nlimit = 2\n')
    shown = run_cli("--config", config, "search")
    assert shown.exit_code == 0, shown.stderr
    assert len(shown.stdout.splitlines()) == 2 and shown.stdout.startswith("{")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('data = "x"\n\n[serve]\nhttpp = "127.0.0.1:1"\n',
         ":4: `otaudit serve` has no option --httpp (it takes: "),
        ('colour = "blue"\n', ":1: no command has an option --colour"),
        ('[servee]\nhttp = "x"\n', ":1: no command `otaudit servee`"),
        ("[serve\n", "Expected ']' at the end of a table declaration"),
        ('[serve]\ncheckpoint-interval = "soon"\n', ":2: checkpoint-interval: 'soon' is not"),
        ("[serve]\nworkers = 1.5\n", ":2: workers: 1.5 is not a whole number"),
        ("[serve]\nworkers = -1\n", ":2: workers: -1 is not in the range 0<=x<=64"),
        ("[serve]\ncheckpoint-interval = nan\n", ":2: checkpoint-interval: nan is not a finite"),
        ('[serve]\nhttp = ["a", "b"]\n', ":2: http: expected one value, not a list"),
        ('format = "xml"\n', ":1: format: 'xml' is not one of"),
    ],
)  # fmt: skip
def test_what_the_commands_do_not_take_is_named_with_its_line(
    tmp_path: Path, text: str, message: str
) -> None:
    config = _file(tmp_path, text)
    result = run_cli("--config", config, "status")
    assert result.exit_code == 2
    assert f"otaudit: error: {config}" in result.stderr and message in result.stderr


def test_a_missing_file_is_an_error(tmp_path: Path) -> None:
    result = run_cli("--config", tmp_path / "nope.toml", "status")
    assert result.exit_code == 2 and "no configuration file" in result.stderr


def test_config_show_says_where_each_value_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _file(tmp_path, '[serve]\nhttp = "127.0.0.1:14999"\n')
    monkeypatch.setenv("OTAUDIT_CONFIG", str(config))
    monkeypatch.setenv("OTAUDIT_STORE", "sqlite:////tmp/x.db")
    shown = run_cli("config", "show")
    assert shown.exit_code == 0, shown.stderr
    lines = {line.split("│")[1].strip(): line for line in shown.stdout.splitlines()
             if line.count("│") == 4}  # fmt: skip
    assert "127.0.0.1:14999" in lines["http"] and f"{config}:2" in lines["http"]
    assert "environment OTAUDIT_STORE" in lines["store"]
    assert "127.0.0.1:4317" in lines["grpc"] and "default" in lines["grpc"]


def test_serve_takes_its_listeners_from_the_file(tmp_path: Path) -> None:
    http, grpc = free_port(), free_port()
    config = _file(
        tmp_path,
        f'data = "{tmp_path / "data"}"\n[serve]\nhttp = "127.0.0.1:{http}"\n'
        f'grpc = "127.0.0.1:{grpc}"\nno-detect = true\n',
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "otaudit", "serve", "--config", str(config)],
        stderr=subprocess.PIPE,
    )
    try:
        wait_ready(f"http://127.0.0.1:{http}/healthz", proc)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert (tmp_path / "data" / "ledger.db").exists()


def test_the_documented_example_is_taken() -> None:
    docs = Path(__file__).resolve().parents[1] / "docs" / "operations.md"
    (example,) = re.findall(r"```toml\n(.*?)```", docs.read_text(), re.S)
    loaded = config.load_text(example, Path("otaudit.toml"), cli)
    assert loaded.default_map["serve"]["http_addr"] == "0.0.0.0:4318"
    assert loaded.default_map["token"]["create"]["scopes"] == ["ingest"]
    assert loaded.default_map["verify"]["data"] == "/var/lib/otaudit"


def test_a_deeply_nested_or_single_quoted_file_gets_a_message(tmp_path: Path) -> None:
    deep = _file(tmp_path, "a = " + "[" * 100_000 + "]" * 100_000 + "\n")
    result = run_cli("--config", deep, "status")
    assert result.exit_code == 2 and "nested too deeply" in result.stderr
    quoted = _file(tmp_path, f"'data' = \"{tmp_path}\"\n")
    loaded = config.load(quoted, cli)
    assert loaded.default_map["status"]["data"] == str(tmp_path)


def test_a_shared_format_reaches_the_commands_that_take_it(ledger: Path, tmp_path: Path) -> None:
    config = _file(tmp_path, f'data = "{ledger}"\nformat = "csv"\n')
    rows = run_cli("--config", config, "search")
    assert rows.exit_code == 0, rows.stderr
    assert rows.stdout.splitlines()[0].startswith("seq,")
    # status has no csv format: it keeps its own default rather than refusing the file.
    status = run_cli("--config", config, "status")
    assert status.exit_code == 0, status.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--config", ""), "--config needs a FILE"),
        (("--config=",), "--config needs a FILE"),
        (("--config", "a.toml", "--config", "b.toml"), "--config is given twice (a.toml, b.toml)"),
    ],
)
def test_a_config_option_that_names_no_single_file_is_refused(
    args: tuple[str, ...], message: str
) -> None:
    result = run_cli(*args, "status")
    assert result.exit_code == 2
    assert message in result.stderr
