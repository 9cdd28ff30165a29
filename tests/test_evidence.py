"""Evidence packs on a small ledger: the populations, their queries, the sample, the
manifest, and ``verify-evidence`` against every kind of alteration."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import new_store_url, query_args
from otaudit import auditsample, datadir
from otaudit.checkpointer import Checkpointer
from otaudit.evidence.check import verify_pack
from otaudit.evidence.manifest import PackAltered
from otaudit.evidence.mapping import load_mapping
from otaudit.keys import SigningKey, VerifierKey
from retention_records import log_record
from support import otaudit

DAY = 86_400 * 10**9
CONTROLS = ("CC6.1", "CC6.2", "CC6.3", "CC6.6", "CC7.2", "CC7.3", "CC8.1")


def _day(n: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime((time.time_ns() - n * DAY) // 10**9))


def _ledger(data: Path, store_url: str | None) -> None:
    """Three weeks of logins, role changes and config changes, sealed as received then,
    and one checkpoint signed now (which closes any period that ends before today)."""
    data.mkdir(mode=0o700, exist_ok=True)
    store = datadir.open_store(data, store_url, readonly=False)
    try:
        key = datadir.signing_key(data, store, None, None)
        now = time.time_ns()
        entries = []
        for d in range(21, 0, -1):
            at = now - d * DAY
            entries += [log_record("login", at + i * 10**9, actor=f"u{i}") for i in range(8)]
            entries.append(log_record("role_update", at + 3600 * 10**9, actor="admin"))
            if d % 7 == 0:
                entries.append(log_record("config_change", at + 7200 * 10**9, actor="ops"))
        entries.append(log_record("otaudit.alert", now - 5 * DAY, pipeline="otaudit"))
        store.append(entries)
        Checkpointer(store, key, key.name).checkpoint()
    finally:
        store.close()


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    _ledger(data, None)
    return data


def _build(data: Path, out: Path, *args: str) -> str:
    run = otaudit("evidence", "--data", str(data), "--from", _day(14), "--to", _day(0),
                  "--out", str(out), "--format", "html", *args)  # fmt: skip
    assert run.returncode == 0, run.stderr
    return run.stdout


def _sql_count(data: Path, statement: str, *store: str) -> int:
    run = otaudit("sql", "--data", str(data), *store, "--format", "json",
                  f"SELECT count(*) AS n FROM ({statement.strip().rstrip(';')}) AS p")  # fmt: skip
    assert run.returncode == 0, run.stderr
    return int(json.loads(run.stdout)[0]["n"])


def test_a_pack_holds_each_population_as_otaudit_sql_selects_it(
    ledger: Path, tmp_path: Path
) -> None:
    out = tmp_path / "pack"
    printed = _build(ledger, out)
    assert "verify-evidence" in printed
    rows = {}
    for control in CONTROLS:
        folder = out / "controls" / control
        sql = (folder / "query.sql").read_text()
        query = json.loads((folder / "query.json").read_text())
        with (folder / "population.csv").open() as f:
            body = list(csv.reader(f))
        assert body[0][0] == "seq"
        rows[control] = len(body) - 1
        assert query["rows"] == rows[control] == _sql_count(ledger, sql)
        jsonl = (folder / "population.jsonl").read_text().splitlines()
        assert [json.loads(line)["seq"] for line in jsonl] == [int(r[0]) for r in body[1:]]
    assert rows["CC6.1"] == 14 * 8  # fourteen days of eight logins
    assert rows["CC6.3"] == 14
    assert rows["CC8.1"] == 2
    assert rows["CC7.2"] == 1


def test_a_pack_on_postgresql(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    store_url = new_store_url("postgresql", tmp_path, request)
    data = tmp_path / "data"
    _ledger(data, store_url)
    out = tmp_path / "pack"
    run = otaudit("evidence", "--data", str(data), "--store", store_url, "--from", _day(14),
                  "--to", _day(0), "--out", str(out), "--format", "html,pdf,xlsx")  # fmt: skip
    assert run.returncode == 0, run.stderr
    store = ["--store", store_url, *query_args(store_url, request)]
    for control in CONTROLS:
        query = json.loads((out / "controls" / control / "query.json").read_text())
        assert query["rows"] == _sql_count(data, query["sql"], *store), control
    assert json.loads((out / "controls/CC6.1/query.json").read_text())["rows"] == 14 * 8
    ok = otaudit("verify-evidence", str(out), "--key",
                 (out / "configuration" / "verifier.key").read_text().strip())  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    # The query login of `otaudit sql` may build the pack too.
    again = otaudit("evidence", "--data", str(data), *store, "--from", _day(14), "--to",
                    _day(0), "--out", str(tmp_path / "again"), "--format", "html")  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "again/controls/CC6.1/population.csv").read_bytes() == (
        out / "controls/CC6.1/population.csv"
    ).read_bytes()


def test_the_population_csv_is_what_otaudit_sql_prints(ledger: Path, tmp_path: Path) -> None:
    out = tmp_path / "pack"
    _build(ledger, out)
    folder = out / "controls" / "CC8.1"
    run = otaudit("sql", "--data", str(ledger), "--format", "csv",
                  (folder / "query.sql").read_text())  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout == (folder / "population.csv").read_text()


def test_the_sample_redraws_from_the_closing_checkpoint(ledger: Path, tmp_path: Path) -> None:
    out = tmp_path / "pack"
    _build(ledger, out)
    closing = (out / "completeness" / "closing.checkpoint").read_text().splitlines()
    root = __import__("base64").b64decode(closing[2])
    folder = out / "controls" / "CC6.1"
    sample = json.loads((folder / "sample.json").read_text())
    with (folder / "population.csv").open() as f:
        seqs = [int(r[0]) for r in list(csv.reader(f))[1:]]
    assert sample["n"] == 25 and sample["size_basis"].startswith("several times a day")
    assert sample["seqs"] == auditsample.draw(seqs, root, sample["n"])
    with (folder / "sample.csv").open() as f:
        assert [int(r[0]) for r in list(csv.reader(f))[1:]] == sample["seqs"]


def test_sample_size_option_and_an_empty_period(ledger: Path, tmp_path: Path) -> None:
    out = tmp_path / "pack"
    _build(ledger, out, "--sample-size", "3")
    assert json.loads((out / "controls/CC6.1/sample.json").read_text())["n"] == 3
    empty = tmp_path / "empty"
    run = otaudit("evidence", "--data", str(ledger), "--from", "2001-01-01", "--to",
                  "2001-02-01", "--out", str(empty), "--format", "html")  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "no records in this period" in run.stdout
    assert all(json.loads((empty / f"controls/{c}/query.json").read_text())["rows"] == 0
               for c in CONTROLS)  # fmt: skip
    assert not (empty / "completeness" / "opening.checkpoint").exists()
    assert otaudit("verify-evidence", str(empty)).returncode == 0


def test_a_period_past_the_newest_checkpoint_is_refused(ledger: Path, tmp_path: Path) -> None:
    run = otaudit("evidence", "--data", str(ledger), "--from", _day(3), "--to", "2099-01-01",
                  "--out", str(tmp_path / "pack"))  # fmt: skip
    assert run.returncode == 2
    assert "after the newest signed checkpoint" in run.stderr
    assert not (tmp_path / "pack").exists()


def test_verify_evidence_names_any_altered_added_or_removed_file(
    ledger: Path, tmp_path: Path
) -> None:
    out = tmp_path / "pack"
    _build(ledger, out)
    key = (out / "configuration" / "verifier.key").read_text().strip()
    ok = otaudit("verify-evidence", str(out), "--key", key)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("OK: evidence pack")
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != "MANIFEST")
    assert len(files) > 40
    for n, path in enumerate(files):
        copy = tmp_path / f"copy{n}"
        shutil.copytree(out, copy)
        target = copy / path.relative_to(out)
        raw = bytearray(target.read_bytes())
        if not raw:
            raw = bytearray(b"x")
        else:
            raw[len(raw) // 2] ^= 0x01
        target.write_bytes(bytes(raw))
        with pytest.raises(PackAltered) as failed:
            verify_pack(copy, VerifierKey.parse(key))
        assert failed.value.path == str(path.relative_to(out)), failed.value
        shutil.rmtree(copy)
    removed = tmp_path / "removed"
    shutil.copytree(out, removed)
    (removed / "controls/CC6.3/sample.csv").unlink()
    run = otaudit("verify-evidence", str(removed), "--key", key)
    assert run.returncode == 1 and "controls/CC6.3/sample.csv" in run.stderr
    added = tmp_path / "added"
    shutil.copytree(out, added)
    (added / "controls/CC6.3/extra.csv").write_text("seq\n1\n")
    run = otaudit("verify-evidence", str(added), "--key", key)
    assert run.returncode == 1 and "controls/CC6.3/extra.csv" in run.stderr


def test_a_manifest_signed_by_another_key_fails(ledger: Path, tmp_path: Path) -> None:
    out = tmp_path / "pack"
    _build(ledger, out)
    key = (out / "configuration" / "verifier.key").read_text().strip()
    other = SigningKey.generate(key.split("+")[0])
    text = (out / "MANIFEST").read_text().split("\n\n")[0] + "\n"
    from otaudit.note import sign_note

    (out / "MANIFEST").write_text(sign_note(text, other))
    run = otaudit("verify-evidence", str(out), "--key", key)
    assert run.returncode == 1 and "MANIFEST" in run.stderr
    assert otaudit("verify-evidence", str(tmp_path / "nothing")).returncode == 2


def test_the_mapping_in_force_and_a_bad_mapping_file(ledger: Path, tmp_path: Path) -> None:
    shown = otaudit("evidence", "--print-mapping")
    assert shown.returncode == 0 and "CC6.1" in shown.stdout
    assert [c.id for c in load_mapping(None)] == list(CONTROLS)
    own = tmp_path / "controls.yaml"
    own.write_text("controls:\n  - id: CC6.3\n    title: Roles\n    where:\n"
                   "      action: [role_update]\n      actor: [admin]\n"
                   "  - id: A1.2\n    title: Config\n"
                   "    where_sql: \"action = 'config_change'\"\n")  # fmt: skip
    shown = otaudit("evidence", "--print-mapping", "--controls", str(own))
    assert "A1.2" in shown.stdout and "actor:" in shown.stdout
    out = tmp_path / "pack"
    _build(ledger, out, "--controls", str(own))
    assert json.loads((out / "controls/A1.2/query.json").read_text())["rows"] == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("controls:\n  - id: CC6.3\n    title: Roles\n    wher: {action: [x]}\n")
    run = otaudit("evidence", "--print-mapping", "--controls", str(bad))
    assert run.returncode == 2 and f"{bad}:4" in run.stderr, run.stderr
    bad.write_text('controls:\n  - id: X\n    title: t\n    where_sql: "1=1; DROP TABLE x"\n')
    run = otaudit("evidence", "--print-mapping", "--controls", str(bad))
    assert run.returncode == 2 and f"{bad}:4" in run.stderr, run.stderr


def test_the_manifest_check_of_the_docs_runs_without_otaudit(ledger: Path, tmp_path: Path) -> None:
    out = tmp_path / "pack"
    _build(ledger, out)
    docs = Path(__file__).parent.parent / "docs" / "evidence.md"
    code = docs.read_text().split("```python\n", 1)[1].split("```", 1)[0]
    key = (out / "configuration" / "verifier.key").read_text().strip()
    code = code.replace('"otaudit/prod+4cd57ce5+Ad7n..."', repr(key))
    code = code.replace('"q3-evidence"', repr(str(out)))
    exec(compile(code, str(docs), "exec"), {})  # raises if the pack does not check out
    (out / "controls/CC6.1/population.csv").write_text("seq\n")
    with pytest.raises(AssertionError, match=r"controls/CC6\.1/population\.csv"):
        exec(compile(code, str(docs), "exec"), {})


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--from", "2026-02-01", "--to", "2026-01-01"), "the period is empty"),
        (("--from", "2026-01-01"), "--to is required"),
        (("--from", "yesterday", "--to", "2026-01-01"), "--from"),
        (("--from", "2026-01-01", "--to", "2026-02-01", "--format", "docx"), "'docx'"),
        (("--from", "2026-01-01", "--to", "2026-02-01", "--controls", "/nonexistent.yaml"),
         "does not exist"),
        (("--from", "2026-01-01", "--to", "2026-02-01", "--key-file", "/nonexistent.key"),
         "/nonexistent.key"),
    ],
)  # fmt: skip
def test_bad_input_gets_a_clear_error_and_no_pack(
    ledger: Path, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    out = tmp_path / "pack"
    run = otaudit("evidence", "--data", str(ledger), "--out", str(out), *args)
    assert run.returncode == 2, run.stderr
    assert message in run.stderr, run.stderr
    assert not out.exists()


def test_an_output_directory_that_is_not_empty_is_refused(ledger: Path, tmp_path: Path) -> None:
    out = tmp_path / "pack"
    out.mkdir(mode=0o700)
    (out / "notes.txt").write_text("mine")
    run = otaudit("evidence", "--data", str(ledger), "--from", _day(14), "--to", _day(0),
                  "--out", str(out))  # fmt: skip
    assert run.returncode == 2 and "not empty" in run.stderr, run.stderr
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    for target in (tmp_path, out / "notes.txt", tmp_path / "missing"):
        checked = otaudit("verify-evidence", str(target))
        assert checked.returncode == 2, checked.stderr


def test_a_pack_after_a_key_rotation_carries_the_key_history(tmp_path: Path) -> None:
    from otaudit.record import rfc3339_ns
    from rotated import grow, rotated

    data = tmp_path / "data"
    old, new, _ = rotated(data)
    end = time.time_ns()
    grow(data, 1)  # a checkpoint by the new key, after the period
    out = tmp_path / "pack"
    run = otaudit("evidence", "--data", str(data), "--from", "2000-01-01", "--to",
                  rfc3339_ns(end), "--out", str(out), "--format", "html")  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert (out / "configuration" / "keys.jsonl").exists()
    checked = otaudit("verify-evidence", str(out), "--key", str(old))
    assert checked.returncode == 0, checked.stderr
    assert f"signed by {new.name}+{new.key_id.hex()}" in checked.stdout
    for trusted in (["--key", str(new)], []):  # the key in force now, or the pack's own
        checked = otaudit("verify-evidence", str(out), *trusted)
        assert checked.returncode == 0, checked.stderr
    (out / "configuration" / "keys.jsonl").unlink()
    checked = otaudit("verify-evidence", str(out), "--key", str(old))
    assert checked.returncode == 1, checked.stderr


def test_the_configuration_in_force_at_the_closing_checkpoint(ledger: Path, tmp_path: Path) -> None:
    from otaudit.record import rfc3339_ns

    policy = tmp_path / "retention.yaml"
    policy.write_text("minimum: 365d\ndefault: 400d\n")
    steps = (
        ("hold", "create", "--name", "case-17", "--reason", "litigation", "--action", "login"),
        ("token", "create", "--scope", "read", "--name", "auditor <b>2026</b>"),
        ("prune", "--retention", str(policy)),
    )
    for step in steps:
        done = otaudit(*step, "--data", str(ledger))
        assert done.returncode == 0, done.stderr
    end = time.time_ns()
    _ledger_checkpoint(ledger)
    out = tmp_path / "pack"
    run = otaudit("evidence", "--data", str(ledger), "--from", _day(14), "--to",
                  rfc3339_ns(end), "--out", str(out), "--format", "html")  # fmt: skip
    assert run.returncode == 0, run.stderr
    config = out / "configuration"
    retention = json.loads((config / "retention.json").read_text())
    assert retention["policy"] == policy.read_text()
    assert len(retention["policy_sha256"]) == 64
    holds = [json.loads(line) for line in (config / "holds.jsonl").read_text().splitlines()]
    assert [(h["name"], h["released_seq"]) for h in holds] == [("case-17", None)]
    tokens = (config / "tokens.csv").read_text()
    assert "auditor <b>2026</b>" in tokens and ",read," in tokens
    assert "token_hash" not in tokens
    assert "name: brute_force_user" in (config / "rules.yaml").read_text()
    html = (out / "report.html").read_text()
    assert "auditor &lt;b&gt;2026&lt;/b&gt;" in html and "<b>2026</b>" not in html


def _ledger_checkpoint(data: Path) -> None:
    store = datadir.open_store(data, None, readonly=False)
    try:
        key = datadir.signing_key(data, store, None, None)
        Checkpointer(store, key, key.name).checkpoint()
    finally:
        store.close()


def _resign(pack: Path, data: Path, period: tuple[str, str] | None = None) -> None:
    """Sign the pack's files again with the log's own key, as an operator could after
    changing them (the manifest then lists the changed bytes)."""
    from otaudit.evidence.manifest import Manifest, file_sha256, sign_manifest

    text = (pack / "MANIFEST").read_text().split("\n\n")[0].splitlines()
    listed = [line.split(" ")[2] for line in text[5:]]
    files = {p: (file_sha256(pack / p, (pack / p).stat().st_size),
                 (pack / p).stat().st_size) for p in listed if (pack / p).exists()}  # fmt: skip
    size, root = text[3].split(" ")[1:]
    start, end = text[2].split(" ")[1:]
    m = Manifest(text[1].removeprefix("origin "), period or (start, end), int(size), root, files)
    (pack / "MANIFEST").write_text(sign_manifest(m, SigningKey.load(data / "signing.key")))


def _edit_row(path: Path, seq: int, old: str, new: str) -> None:
    lines = path.read_text().split("\n")
    for i, line in enumerate(lines):
        if line.startswith((f"{seq},", f'{{"seq":{seq},')):
            assert old in line
            lines[i] = line.replace(old, new)
    path.write_text("\n".join(lines))


def test_even_the_operator_cannot_change_what_a_pack_shows(ledger: Path, tmp_path: Path) -> None:
    """Re-signed with the log's own key, a pack whose rows, sample or period were changed
    still fails: the sampled rows are held to their proven bytes, the sample to its rule,
    the period to the queries'."""
    out = tmp_path / "pack"
    _build(ledger, out)
    key = VerifierKey.parse((out / "configuration" / "verifier.key").read_text().strip())
    _resign(out, ledger)
    assert verify_pack(out, key).controls["CC6.3"] == 14

    def broken(change: Callable[[Path], None]) -> str:
        copy = tmp_path / f"copy{len(list(tmp_path.iterdir()))}"
        shutil.copytree(out, copy)
        change(copy)
        _resign(copy, ledger)
        with pytest.raises(PackAltered) as failed:
            verify_pack(copy, key)
        return failed.value.path

    folder = "controls/CC6.3"
    seq = json.loads((out / folder / "sample.json").read_text())["seqs"][0]

    def forge_row(copy: Path) -> None:
        for name in ("population.csv", "population.jsonl", "sample.csv", "sample.jsonl"):
            _edit_row(copy / folder / name, seq, "admin", "nobody")

    def empty_sample(copy: Path) -> None:
        doc = json.loads((copy / folder / "sample.json").read_text())
        (copy / folder / "sample.json").write_text(json.dumps(doc | {"n": 0, "seqs": []}))
        for name in ("sample.csv", "sample.jsonl", "sample_proofs.jsonl"):
            (copy / folder / name).write_text("")

    def negative_sample(copy: Path) -> None:
        doc = json.loads((copy / folder / "sample.json").read_text())
        (copy / folder / "sample.json").write_text(json.dumps(doc | {"n": -1}))

    def drop_row(copy: Path) -> None:
        for name in ("population.csv", "population.jsonl"):
            path = copy / folder / name
            lines = path.read_text().splitlines(keepends=True)
            path.write_text("".join(lines[:-1]))

    assert broken(forge_row) == f"{folder}/sample_proofs.jsonl"
    assert broken(empty_sample) == f"{folder}/sample.json"
    assert broken(negative_sample) == f"{folder}/sample.json"
    assert broken(drop_row) == f"{folder}/population.csv"
    assert broken(lambda copy: (copy / "extra").mkdir()) == "extra"
    moved = tmp_path / "moved"
    shutil.copytree(out, moved)
    _resign(moved, ledger, ("2026-01-01T00:00:00.000000000Z", "2026-04-01T00:00:00.000000000Z"))
    with pytest.raises(PackAltered, match="another period"):
        verify_pack(moved, key)


def test_a_hostile_folder_gets_an_answer_not_a_traceback(ledger: Path, tmp_path: Path) -> None:
    out = tmp_path / "pack"
    _build(ledger, out)
    deep = out / "controls" / "CC6.1"
    for _ in range(200):  # the walk is no recursion: any depth gets the same answer
        deep = deep / "d"
        deep.mkdir()
    run = otaudit("verify-evidence", str(out))
    assert run.returncode == 1 and "FAILED:" in run.stderr and "Traceback" not in run.stderr


@pytest.mark.parametrize(
    "condition",
    ["1=1) OR (1=1", "action = 'login') OR (action = 'login' AND seq < 40", "a = 'x",
     "a = 1 -- the rest", "a = 1 /* c */", "a = 1; SELECT 1"],
)  # fmt: skip
def test_a_condition_cannot_reach_past_its_parentheses(tmp_path: Path, condition: str) -> None:
    own = tmp_path / "controls.yaml"
    own.write_text(f"controls:\n  - id: X1\n    title: t\n    where_sql: {json.dumps(condition)}\n")
    run = otaudit("evidence", "--print-mapping", "--controls", str(own))
    assert run.returncode == 2 and f"{own}:4" in run.stderr, run.stderr


def test_a_terminated_build_leaves_no_pack_and_another_log_key_is_named(
    ledger: Path, tmp_path: Path
) -> None:
    out = tmp_path / "pack"
    proc = subprocess.Popen([sys.executable, "-m", "otaudit", "evidence", "--data", str(ledger),
                             "--from", _day(14), "--to", _day(0), "--out", str(out)],
                            stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 60
    while not (out / "controls").exists() and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.terminate()
    proc.communicate(timeout=60)
    assert proc.returncode != 0 or (out / "MANIFEST").exists()
    left = sorted(str(p.relative_to(out)) for p in out.rglob("*")) if out.exists() else []
    assert not out.exists() or (out / "MANIFEST").exists(), (left, proc.returncode)
    other = tmp_path / "other.key"
    other.write_text(SigningKey.generate("someone/else").to_private_text())
    other.chmod(0o600)
    run = otaudit("evidence", "--data", str(ledger), "--from", _day(14), "--to", _day(0),
                  "--out", str(tmp_path / "again"), "--key-file", str(other))  # fmt: skip
    assert run.returncode == 2 and "is not a key of this log" in run.stderr, run.stderr


def test_a_producer_with_hostile_numbering_is_summed_up_not_listed(tmp_path: Path) -> None:
    from otaudit.demo_quarter import Act, entries

    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    store = datadir.open_store(data, None, readonly=False)
    try:
        key = datadir.signing_key(data, store, None, None)
        start = time.time_ns() - 2 * DAY
        acts = [Act(start + i * 10**6, "svc", "op", {"audit.action": "login",
                    "audit.producer.id": "p1", "audit.producer.seq": 1 + 2 * i})
                for i in range(2500)]  # fmt: skip
        store.append(list(entries(acts)))
        Checkpointer(store, key, key.name).checkpoint()
    finally:
        store.close()
    out = tmp_path / "pack"
    run = otaudit("evidence", "--data", str(data), "--from", _day(3), "--to", _day(0),
                  "--out", str(out), "--format", "html")  # fmt: skip
    assert run.returncode == 0, run.stderr
    with (out / "completeness" / "producers.csv").open() as f:
        (row,) = list(csv.DictReader(f))
    assert (row["records"], row["missing_count"]) == ("2500", "2499")
    assert row["missing"].startswith("2, 4, 6,")
    assert row["missing"].endswith("(and 1499 more ranges)")
