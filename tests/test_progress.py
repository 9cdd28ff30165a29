"""Progress of long work: each library function that reads or checks many records reports
increasing counts ending at its total, and a command whose stderr is not a terminal draws
no bar."""

from __future__ import annotations

from pathlib import Path

import pytest

from minilog import run_cli, sealed_ledger
from otaudit import auditsample, backup, bundle, datadir, progress
from otaudit.cli.progress import progress_bar
from otaudit.detect.rules import load_rules
from otaudit.detect.run import detect_history
from otaudit.keys import VerifierKey
from otaudit.store.sqlite import SQLiteStore
from support import audit_request

RECORDS = 25
EVERY = 4  # so that a small ledger reports several times


@pytest.fixture(autouse=True)
def _often(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "EVERY", EVERY)


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, VerifierKey]:
    data = tmp_path_factory.mktemp("data")
    key = sealed_ledger(data, audit_request(RECORDS, payload_bytes=20))
    return data, VerifierKey.parse(key)


def _reported(calls: list[int], total: int) -> None:
    assert calls == sorted(set(calls)), calls  # strictly increasing
    assert calls[-1] == total, calls
    assert len(calls) > 1, calls


def test_counted_reports_every_few_items_and_at_the_end() -> None:
    calls: list[int] = []
    assert list(progress.counted(range(10), calls.append)) == list(range(10))
    assert calls == [4, 8, 10]
    assert list(progress.counted(range(3), None)) == [0, 1, 2]


def test_export_and_verify_bundle_report_progress(
    ledger: tuple[Path, VerifierKey], tmp_path: Path
) -> None:
    data, key = ledger
    written: list[int] = []
    store = datadir.open_store(data, None, readonly=True)
    try:
        report = bundle.export_bundle(store, key, tmp_path / "b", bundle.Selection(),
                                      progress=written.append)  # fmt: skip
    finally:
        store.close()
    assert report.records == RECORDS
    _reported(written, RECORDS)
    checked: list[int] = []
    assert bundle.stated_records(tmp_path / "b") == RECORDS
    bundle.verify_bundle(tmp_path / "b", key, progress=checked.append)
    _reported(checked, 2 * RECORDS)  # each record: its proof, then its readable copies
    assert bundle.stated_records(tmp_path / "missing") is None


def test_detect_history_reports_the_position_reached(ledger: tuple[Path, VerifierKey]) -> None:
    data, _ = ledger
    calls: list[int] = []
    store = datadir.open_store(data, None, readonly=True)
    try:
        run = detect_history(store, load_rules(), since_ns=None, progress=calls.append)
    finally:
        store.close()
    assert run.records == RECORDS
    _reported(calls, RECORDS)


def test_backup_reports_the_verification_of_the_copy(
    ledger: tuple[Path, VerifierKey], tmp_path: Path
) -> None:
    data, key = ledger
    calls: list[int] = []
    report = backup.backup_ledger(data / datadir.LEDGER_FILE, key, tmp_path / "none",
                                  tmp_path / "copy", progress=calls.append)  # fmt: skip
    assert report.records == RECORDS
    assert calls[-1] == RECORDS and calls == sorted(calls), calls


def test_migrate_reports_each_migration(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "ledger.db", migrate=False)
    try:
        calls: list[int] = []
        applied = store.migrate(online_only=False, progress=calls.append)
    finally:
        store.close()
    assert calls == list(range(1, len(applied) + 1)) and applied


def test_population_reports_the_records_read() -> None:
    calls: list[int] = []
    assert auditsample.population(iter(range(9)), calls.append) == list(range(9))
    _reported(calls, 9)


def test_no_bar_when_stderr_is_not_a_terminal(
    ledger: tuple[Path, VerifierKey], tmp_path: Path
) -> None:
    with progress_bar("work", 10**9) as bar:
        assert bar is None
    data, _ = ledger
    result = run_cli("export", "--data", data, "--out", tmp_path / "b")
    assert result.exit_code == 0, result.output
    assert "exporting records" not in result.stderr
    result = run_cli("verify-bundle", tmp_path / "b")
    assert result.exit_code == 0, result.output
    assert "checking records" not in result.stderr
