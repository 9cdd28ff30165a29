"""Small answers of the command line that used to mislead: a guessed --port, an empty
--from-seq/--to-seq range, a too short alert id prefix, the scopes in token --help."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from otaudit.detect.alerts import find_alert
from otaudit.errors import ConfigError, NotFound
from otaudit.store.sqlite import SQLiteStore
from support import otaudit


def test_a_guessed_port_option_names_the_listener_options() -> None:
    result = otaudit("serve", "--port", "4318")
    assert result.returncode == 2
    assert "No such option '--port': each listener takes HOST:PORT" in result.stderr
    assert "--http 127.0.0.1:4318" in result.stderr and "--store" not in result.stderr


def test_an_empty_verify_range_is_refused(tmp_path: Path) -> None:
    result = otaudit("verify", "--data", str(tmp_path), "--from-seq", "10", "--to-seq", "5")
    assert result.returncode == 2
    assert "--to-seq: 5 must be above --from-seq 10" in result.stderr
    assert "OK" not in result.stdout


def test_an_alert_id_prefix_needs_six_characters(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "ledger.db")
    try:
        with pytest.raises(ConfigError, match="a prefix needs at least 6 characters"):
            find_alert(store, "e91b3")
        with pytest.raises(NotFound, match="no alert 'e91b3c' in the ledger"):
            find_alert(store, "e91b3c")
    finally:
        store.close()


def test_token_help_says_which_scope_reads_metrics() -> None:
    result = otaudit("token", "--help")
    assert "read (the read API), admin (/metrics)" in " ".join(result.stdout.split())


def test_the_example_service_takes_its_addresses_as_options() -> None:
    run = [sys.executable, "-m", "otaudit.examples.accounts"]
    shown = subprocess.run([*run, "--help"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and "--listen HOST:PORT" in shown.stdout
    assert "--otaudit URL" in shown.stdout
    bad = subprocess.run([*run, "--listen", "8000"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--listen expects HOST:PORT, got '8000'" in bad.stderr


@pytest.mark.parametrize(
    "args",
    [("token", "list"), ("token", "create", "--scope", "read"), ("token", "revoke", "abc")],
)
def test_a_mistyped_data_directory_is_refused_and_left_alone(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    typo = tmp_path / "typo-dir"
    result = otaudit(*args, "--data", str(typo))
    assert result.returncode == 2
    assert f"no ledger in {typo}: start `otaudit serve --data {typo}` first" in result.stderr
    assert not typo.exists()
    typo.mkdir()  # an existing directory without a ledger: refused too, nothing created
    assert otaudit(*args, "--data", str(typo)).returncode == 2
    assert list(typo.iterdir()) == []


def test_migrate_makes_the_ledger_tokens_can_come_before_serving(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert otaudit("migrate", "--data", str(data)).returncode == 0
    created = otaudit("token", "create", "--data", str(data), "--scope", "ingest")
    assert created.returncode == 0, created.stderr


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--checkpoint-interval", "nan", "'nan' is not a finite number"),
        ("--checkpoint-interval", "inf", "inf is not in the range"),
        ("--max-body-bytes", str(2**31), "is not in the range 1024<=x<=2147483647"),
        ("--max-body-bytes", "9" * 30, "is not in the range"),
        ("--workers", "9" * 30, "is not in the range"),
    ],
)
def test_serve_refuses_numbers_it_cannot_use(
    option: str, value: str, says: str, tmp_path: Path
) -> None:
    result = otaudit("serve", "--data", str(tmp_path / "data"), option, value)
    assert result.returncode == 2
    assert says in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()
