"""Rows as a reader sees them: tables with sensible widths (cut values said on stderr),
one field per line when a table does not fit the terminal, the same formats on every
command that prints rows, and a table that stops short of the matches says so (issue:
day-to-day use, readable output)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from minilog import run_cli, sealed_ledger
from otaudit.cli import rows, search
from support import audit_request

LONG = "x" * 100


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_table_cuts_long_values_and_counts_them() -> None:
    out = io.StringIO()
    shown = rows.write(("id", "note"), [(1, LONG), (2, "short")], "table", out=out)
    text = out.getvalue()
    assert shown == rows.Shown(2, 1)
    assert "x" * (rows.CELL_CHARS - 1) + "…" in text and LONG not in text
    assert text.rstrip().endswith("2 row(s)")
    note = rows.cut_note(shown)
    assert note is not None and "--wide" in note and "--format vertical" in note
    out = io.StringIO()
    assert rows.write(("id", "note"), [(1, LONG)], "table", wide=True, out=out).cut_cells == 0
    assert LONG in out.getvalue()


def test_piped_tables_keep_their_width(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    out = io.StringIO()
    columns = tuple(f"column_{i}" for i in range(12))
    rows.write(columns, [tuple(f"value-{i}" for i in range(12))], "table", out=out)
    lines = out.getvalue().splitlines()
    assert len(lines[1]) > 80  # one line per row, not wrapped at 80 columns
    assert "value-11" in lines[3]


def test_a_table_wider_than_the_terminal_is_shown_a_field_per_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "60")
    out = _Terminal()
    columns = ("seq", "timestamp", "trace_id", "note")
    shown = rows.write(columns, [(7, "2026-12-01T09:00:00Z", "ab" * 16, LONG)], "table", out=out)
    text = out.getvalue()
    assert shown.rows == 1 and shown.cut_cells == 0
    assert "-[ RECORD 1 ]" in text and f"note      | {LONG}" in text  # whole, not cut
    assert "shown one field per line; --wide for the table anyway" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["csv", "json", "jsonl", "vertical"])
def test_every_format_holds_every_value(fmt: str) -> None:
    out = io.StringIO()
    rows.write(("id", "note"), [(1, LONG), (2, None)], fmt, out=out)
    text = out.getvalue()
    assert LONG in text
    if fmt == "json":
        assert json.loads(text) == [{"id": 1, "note": LONG}, {"id": 2, "note": None}]
    if fmt == "jsonl":
        assert [json.loads(line)["id"] for line in text.splitlines()] == [1, 2]


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("rows") / "data"
    sealed_ledger(data, audit_request(12))
    return data


def test_search_says_when_its_table_stops_short(
    ledger: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(search, "TABLE_ROWS", 5)
    # Filtered by action: the searches' own read records do not count.
    cut = run_cli("search", "--data", ledger, "--action", "config_change")
    assert cut.exit_code == 0, cut.stderr
    assert "5 record(s)" in cut.stdout
    assert "showing 5 of 12 matching records" in cut.stderr
    assert "--limit N shows more, --format csv or jsonl writes them all" in cut.stderr
    whole = run_cli("search", "--data", ledger, "--action", "config_change", "--limit", "50")
    assert "12 record(s)" in whole.stdout and "showing" not in whole.stderr
    everything = run_cli(
        "search", "--data", ledger, "--action", "config_change", "--format", "jsonl"
    )
    assert len(everything.stdout.splitlines()) == 12 and "showing" not in everything.stderr


def test_search_shows_the_columns_asked_for(ledger: Path) -> None:
    picked = run_cli("search", "--data", ledger, "--columns", "seq,action", "--format", "csv")
    assert picked.exit_code == 0, picked.stderr
    assert picked.stdout.splitlines()[0] == "seq,action"
    bad = run_cli("search", "--data", ledger, "--columns", "seq,colour")
    assert bad.exit_code == 2 and "colour: choose among seq, timestamp" in bad.stderr


def test_sql_offers_the_same_formats(ledger: Path) -> None:
    statement = "SELECT seq, action FROM audit_records ORDER BY seq LIMIT 2"
    vertical = run_cli("sql", statement, "--data", ledger, "--format", "vertical")
    assert vertical.exit_code == 0, vertical.stderr
    assert vertical.stdout.startswith("-[ RECORD 1 ]") and "2 row(s)" in vertical.stdout
    jsonl = run_cli("sql", statement, "--data", ledger, "--format", "jsonl")
    assert [json.loads(line)["seq"] for line in jsonl.stdout.splitlines()] == [0, 1]


def test_a_column_may_be_given_more_room() -> None:
    out = io.StringIO()
    shown = rows.write(("id", "summary"), [(1, LONG[:70])], "table", caps={"summary": 80}, out=out)
    assert shown.cut_cells == 0 and LONG[:70] in out.getvalue()


def test_the_completeness_reports_offer_the_same_formats(ledger: Path) -> None:
    for command in ("gaps", "conformance"):
        lines = run_cli(command, "--data", ledger, "--format", "jsonl")
        assert lines.exit_code in (0, 1), lines.stderr
        assert all(json.loads(line) for line in lines.stdout.splitlines())
        vertical = run_cli(command, "--data", ledger, "--format", "vertical")
        assert "-[ RECORD 1 ]" in vertical.stdout or "no numbered" in vertical.stdout


def test_record_data_cannot_fake_a_field_or_a_record() -> None:
    forged = "delete_db\nresult | success\n-[ RECORD 99 ]-----"
    for fmt in ("vertical", "table"):
        out = io.StringIO()
        rows.write(("action", "result"), [(forged, "failure")], fmt, wide=True, out=out)
        text = out.getvalue()
        assert not any(line.startswith("-[ RECORD 99") for line in text.splitlines())
        assert "delete_db\\nresult | success" in text
