"""An evidence pack of a simulated quarter (``otaudit.demo_quarter``): realistic traffic
with attacks, alerts and their triage, on SQLite, and two weeks of it on PostgreSQL."""

from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path

import pypdf
import pytest

from otaudit import access, datadir, ownrecords
from otaudit.checkpointer import Checkpointer
from otaudit.demo_quarter import GAP_SIZE, QuarterFacts, fill_quarter
from otaudit.record import rfc3339_ns
from pgcluster import PgServer
from support import otaudit

#: 2026-07-01T00:00:00Z.
Q3_NS = 1_782_864_000 * 1_000_000_000
DAY = 86_400 * 10**9
CONTROLS = ("CC6.1", "CC6.2", "CC6.3", "CC6.6", "CC7.2", "CC7.3", "CC8.1")


def fill(data: Path, store_url: str | None, days: int) -> QuarterFacts:
    """``days`` of the quarter, then one read sealed and signed now, as a server that kept
    running would have: its checkpoint closes the period."""
    datadir.check(data, create=True)
    store = datadir.open_store(data, store_url, readonly=False)
    try:
        key = datadir.signing_key(data, store, None, None)
        facts = fill_quarter(store, key, key.name, Q3_NS, days)
        ownrecords.record_read(ownrecords.DirectAppender(store), access.os_reader(), "sql",
                               "SELECT 1", ok=True, rows=1)  # fmt: skip
        Checkpointer(store, key, key.name).checkpoint()
        return facts
    finally:
        store.close()


def build(data: Path, out: Path, days: int, *store: str) -> None:
    run = otaudit("evidence", "--data", str(data), *store, "--from", rfc3339_ns(Q3_NS),
                  "--to", rfc3339_ns(Q3_NS + days * DAY), "--out", str(out),
                  "--format", "html,pdf,xlsx")  # fmt: skip
    assert run.returncode == 0, run.stderr


def sql_count(data: Path, statement: str, *store: str) -> int:
    run = otaudit("sql", "--data", str(data), *store, "--format", "json", statement)
    assert run.returncode == 0, run.stderr
    return int(next(iter(json.loads(run.stdout)[0].values())))


@pytest.fixture(scope="module")
def quarter(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, QuarterFacts]:
    """A quarter at scale 1 in a SQLite ledger, and its evidence pack."""
    root = tmp_path_factory.mktemp("quarter")
    facts = fill(root / "data", None, 92)
    build(root / "data", root / "pack", 92)
    return root / "data", root / "pack", facts


def _rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as f:
        return list(csv.reader(f))[1:]


def test_every_population_is_what_otaudit_sql_counts(
    quarter: tuple[Path, Path, QuarterFacts],
) -> None:
    data, pack, facts = quarter
    counts = {}
    for control in CONTROLS:
        query = json.loads((pack / "controls" / control / "query.json").read_text())
        assert query["rows"] == sql_count(data, query["count_sql"]), control
        assert len(_rows(pack / "controls" / control / "population.csv")) == query["rows"]
        counts[control] = query["rows"]
    assert all(counts[c] > 0 for c in CONTROLS), counts
    actions = facts.actions
    assert counts["CC6.1"] == sum(actions.get(a, 0) for a in ("login", "logout", "mfa_challenge",
                                                              "mfa_verify"))  # fmt: skip
    assert counts["CC7.2"] == facts.alerts_raised
    assert counts["CC7.3"] == facts.alerts_triaged
    summary = json.loads((pack / "pack.json").read_text())
    assert summary["completeness"]["records"] == facts.records
    assert summary["completeness"]["late"] == 0


def test_alerts_come_with_their_triage(quarter: tuple[Path, Path, QuarterFacts]) -> None:
    _, pack, facts = quarter
    for control in ("CC7.2", "CC7.3"):
        lines = (pack / "controls" / control / "alerts.jsonl").read_text().splitlines()
        alerts = [json.loads(line) for line in lines]
        assert len(alerts) == facts.alerts_raised
        decided = [a for a in alerts if a["decided_by"]]
        assert decided and all(a["time_to_triage_s"] > 0 for a in decided)
        triage = json.loads((pack / "controls" / control / "triage.json").read_text())
        assert triage["alerts"] == len(alerts)
        assert triage["triaged"] == len(decided)
        assert 300 <= triage["median_s"] <= triage["p90_s"] <= 6 * 3600


def test_completeness_shows_the_lost_numbers(quarter: tuple[Path, Path, QuarterFacts]) -> None:
    _, pack, facts = quarter
    producers = _rows(pack / "completeness" / "producers.csv")
    assert [int(r[4]) for r in producers if int(r[4])] == [GAP_SIZE]
    per_day = _rows(pack / "completeness" / "counts_per_day.csv")
    assert len(per_day) == 92 and sum(int(r[1]) for r in per_day) == facts.records
    assert (pack / "completeness" / "opening.checkpoint").exists() is False  # a new log
    consistency = json.loads((pack / "completeness" / "consistency.json").read_text())
    assert consistency["size2"] == facts.tree_size + 1


def test_the_pack_verifies_and_its_report_renders(
    quarter: tuple[Path, Path, QuarterFacts],
) -> None:
    _, pack, _ = quarter
    key = (pack / "configuration" / "verifier.key").read_text().strip()
    run = otaudit("verify-evidence", str(pack), "--key", key)
    assert run.returncode == 0, run.stderr
    pdf = pypdf.PdfReader(pack / "report.pdf")
    assert len(pdf.pages) >= 3
    text = "".join(page.extract_text() for page in pdf.pages)
    assert all(control in text for control in CONTROLS)
    assert "verify-evidence" in text and "brute_force_user" in text
    html = (pack / "report.html").read_text()
    assert "<script" not in html and "brute_force_user" in html
    with zipfile.ZipFile(pack / "populations.xlsx") as book:
        sheets = [n for n in book.namelist() if n.startswith("xl/worksheets/sheet")]
    assert len(sheets) == len(CONTROLS)


def test_the_ledger_records_the_build(quarter: tuple[Path, Path, QuarterFacts]) -> None:
    data, _, _ = quarter
    statement = (
        "SELECT count(*) FROM audit_records WHERE action = 'audit_log.query'"
        " AND attributes['audit.query.kind'] = 'evidence'"
    )
    reads = sql_count(data, statement)
    assert reads == 1


def test_two_weeks_on_postgresql(tmp_path: Path, pg: PgServer) -> None:
    url = pg.database()
    facts = fill(tmp_path / "data", url, 14)
    build(tmp_path / "data", tmp_path / "pack", 14, "--store", url)
    query = ["--store", url, "--query-store", pg.query_url(url)]
    for control in CONTROLS:
        stated = json.loads((tmp_path / "pack/controls" / control / "query.json").read_text())
        assert stated["rows"] == sql_count(tmp_path / "data", stated["count_sql"], *query)
    stated = json.loads((tmp_path / "pack/controls/CC7.2/query.json").read_text())
    assert stated["rows"] == facts.alerts_raised > 0
    key = (tmp_path / "pack/configuration/verifier.key").read_text().strip()
    assert otaudit("verify-evidence", str(tmp_path / "pack"), "--key", key).returncode == 0
