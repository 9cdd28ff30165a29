"""Legal holds: placed, listed and released through the command line and the library, as
records on the ledger; two admin tokens to place and lift one when tokens are in use; and
the SQL that finds the records a hold covers, including those that arrive after it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from otaudit import auth, datadir
from otaudit.access import Reader
from otaudit.cli.main import cli
from otaudit.errors import ConfigError, Forbidden
from otaudit.ownrecords import DirectAppender
from otaudit.retention.holds import (
    FILTERS_ATTRIBUTE,
    HOLD_CREATE_ACTION,
    HOLD_RELEASE_ACTION,
    Hold,
    active_holds,
    create_hold,
    held_seqs,
    hold_condition,
    holds,
    release_hold,
)
from otaudit.retention.policy import row_attributes
from otaudit.store.base import Store
from otaudit.store.search import SearchFilter
from retention_records import DAY_NS, NOW_NS, log_record


def _run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A data directory holding an empty SQLite ledger."""
    path = tmp_path / "data"
    made = _run("migrate", "--data", str(path))
    assert made.exit_code == 0, made.output
    return path


def _token(data: Path, scope: str = "admin") -> str:
    made = _run("token", "create", "--data", str(data), "--scope", scope)
    assert made.exit_code == 0, made.stderr
    return made.stdout.splitlines()[-1]


def test_create_list_release_through_the_command_line(data: Path) -> None:
    d = str(data)
    made = _run("hold", "create", "--data", d, "--name", "case 42", "--reason", "litigation",
                "--actor", "alice", "--actor", "bob", "--action", "login",
                "--since", "2026-01-01", "--until", "2026-07-01")  # fmt: skip
    assert made.exit_code == 0, made.stderr
    hold_id = made.stdout.splitlines()[-1]
    assert hold_id.startswith("hold_") and len(hold_id) == 17
    assert "--actor bob --since 2026-01-01T00:00:00.000000000Z --until" in made.stderr
    second = _run("hold", "create", "--data", d, "--name", "all", "--reason", "audit")
    assert second.exit_code == 0, second.stderr
    everything = second.stdout.splitlines()[-1]
    assert "it covers: every record" in second.stderr

    listed = _run("hold", "list", "--data", d, "--format", "json")
    assert listed.exit_code == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [r["id"] for r in rows] == [hold_id, everything]
    assert rows[0]["filters"] == (
        "--action login --actor alice --actor bob --since 2026-01-01T00:00:00.000000000Z "
        "--until 2026-07-01T00:00:00.000000000Z"
    )
    assert rows[0]["reason"] == "litigation" and rows[0]["released_seq"] is None
    assert rows[1]["filters"] == "every record"
    table = _run("hold", "list", "--data", d)
    assert hold_id in table.stdout and "2 hold(s)" in table.stdout

    released = _run("hold", "release", "--data", d, hold_id, "--reason", "case closed")
    assert released.exit_code == 0, released.stderr
    assert f"released hold {hold_id} (case 42)" in released.stdout
    listed = json.loads(_run("hold", "list", "--data", d, "--format", "json").stdout)
    assert [r["id"] for r in listed] == [everything]
    listed = json.loads(_run("hold", "list", "--data", d, "--all", "--format", "json").stdout)
    assert listed[0]["release_reason"] == "case closed" and listed[0]["released_seq"] > 0

    again = _run("hold", "release", "--data", d, hold_id, "--reason", "twice")
    assert again.exit_code == 2
    assert again.stderr.startswith(f"otaudit: error: hold {hold_id} was already released")
    unknown = _run("hold", "release", "--data", d, "hold_000000000000", "--reason", "x")
    assert unknown.exit_code == 2 and "no hold with id 'hold_000000000000'" in unknown.stderr
    blank = _run("hold", "create", "--data", d, "--name", " ", "--reason", "x")
    assert blank.exit_code == 2 and "a hold's name is required" in blank.stderr
    no_reason = _run("hold", "create", "--data", d, "--name", "x")
    assert no_reason.exit_code == 2 and "--reason" in no_reason.stderr
    backwards = _run("hold", "create", "--data", d, "--name", "x", "--reason", "y",
                     "--since", "2026-02-01", "--until", "2026-01-01")  # fmt: skip
    assert backwards.exit_code == 2 and "must be before --until" in backwards.stderr


def test_no_ledger_no_hold(tmp_path: Path) -> None:
    made = _run("hold", "create", "--data", str(tmp_path / "none"), "--name", "x",
                "--reason", "y")  # fmt: skip
    assert made.exit_code == 2 and "no ledger in" in made.stderr
    assert not (tmp_path / "none").exists()


def test_with_tokens_in_use_a_hold_needs_two_admin_tokens(data: Path) -> None:
    d = str(data)
    first, second, reader = _token(data), _token(data), _token(data, "read")
    anonymous = _run("hold", "create", "--data", d, "--name", "n", "--reason", "r")
    assert anonymous.exit_code == 2
    assert "tokens are in use on this ledger: creating a hold needs an admin token" in (
        anonymous.stderr
    )
    wrong_scope = _run("hold", "create", "--data", d, "--name", "n", "--reason", "r",
                       "--token", reader)  # fmt: skip
    assert wrong_scope.exit_code == 2 and "lacks the 'admin' scope" in wrong_scope.stderr
    made = _run("hold", "create", "--data", d, "--name", "n", "--reason", "r",
                env={"OTAUDIT_TOKEN": first})  # fmt: skip
    assert made.exit_code == 0, made.stderr
    hold_id = made.stdout.splitlines()[-1]
    first_id = first.split("_")[1]
    store = datadir.open_store(data, None, readonly=True)
    try:
        (hold,) = holds(store)
    finally:
        store.close()
    assert hold.token_id == first_id

    same = _run("hold", "release", "--data", d, hold_id, "--reason", "r", "--token", first)
    assert same.exit_code == 2
    assert f"needs an admin token other than {first_id}, the token that created" in same.stderr
    nobody = _run("hold", "release", "--data", d, hold_id, "--reason", "r")
    assert nobody.exit_code == 2 and "needs an admin token" in nobody.stderr
    other = _run("hold", "release", "--data", d, hold_id, "--reason", "r", "--token", second)
    assert other.exit_code == 0, other.stderr
    store = datadir.open_store(data, None, readonly=True)
    try:
        (hold,) = holds(store)
        assert hold.released_token_id == second.split("_")[1]
        (row,) = store.action_rows((HOLD_RELEASE_ACTION,))
        assert row_attributes(row[4])["audit.token.id"] == second.split("_")[1]
    finally:
        store.close()


@pytest.fixture
def store(store_url: str, tmp_path: Path) -> Iterator[Store]:
    opened = datadir.open_store(tmp_path, store_url, readonly=False)
    yield opened
    opened.close()


def _hold(store: Store, reader: Reader, filters: SearchFilter, name: str = "case") -> Hold:
    return create_hold(DirectAppender(store), reader, store, name, "litigation", filters)


def test_holds_are_records_on_the_ledger(store: Store) -> None:
    ops = Reader("ops")
    filters = SearchFilter({"actor": ("alice",), "service": ("web", "api")}, 5, 10)
    placed = _hold(store, ops, filters)
    assert placed.filters == filters and placed.created_by == "ops" and placed.token_id is None
    other = _hold(store, ops, SearchFilter(), "everything")
    assert holds(store) == [placed, other]
    assert active_holds(store) == [placed, other]
    (row, _) = store.action_rows((HOLD_CREATE_ACTION,))
    assert row_attributes(row[4])[FILTERS_ATTRIBUTE] == (
        "--actor alice --service web --service api --since-ns 5 --until-ns 10"
    )
    released = release_hold(DirectAppender(store), Reader("lead"), store, placed.id, "done")
    assert released.released_by == "lead" and released.released_reason == "done"
    assert holds(store) == [released, other]
    assert active_holds(store) == [other]
    with pytest.raises(ConfigError, match="already released"):
        release_hold(DirectAppender(store), ops, store, placed.id, "again")
    with pytest.raises(ConfigError, match="no hold with id"):
        release_hold(DirectAppender(store), ops, store, "hold_nothere", "x")
    with pytest.raises(ConfigError, match="reason is required"):
        release_hold(DirectAppender(store), ops, store, other.id, "  ")
    for bad in (SearchFilter({"result": ("failure",)}), SearchFilter(seqs=(1,)),
                SearchFilter({"actor": ("",)}), SearchFilter({}, 10, 10)):  # fmt: skip
        with pytest.raises(ConfigError):
            _hold(store, ops, bad)
    with pytest.raises(ConfigError, match="name is required"):
        _hold(store, ops, filters, "x" * 201)


def test_the_token_rule_in_the_library(store: Store) -> None:
    admin_a, admin_b = auth.new_token("a", ("admin",))[1], auth.new_token("b", ("admin",))[1]
    ingest = auth.new_token("i", ("ingest",))[1]
    for row in (admin_a, admin_b, ingest):
        store.add_token(row)
    with pytest.raises(Forbidden, match="tokens are in use"):
        _hold(store, Reader("ops"), SearchFilter())
    with pytest.raises(Forbidden, match="is not an unrevoked admin token"):
        _hold(store, Reader("ops", token_id=ingest.token_id), SearchFilter())
    placed = _hold(store, Reader("ops", token_id=admin_a.token_id), SearchFilter())
    same = Reader("lead", token_id=admin_a.token_id)
    with pytest.raises(Forbidden, match="other than"):
        release_hold(DirectAppender(store), same, store, placed.id, "done")
    store.revoke_token(admin_b.token_id, "2026-12-01T00:00:00Z")
    revoked = Reader("lead", token_id=admin_b.token_id)
    with pytest.raises(Forbidden, match="not an unrevoked admin token"):
        release_hold(DirectAppender(store), revoked, store, placed.id, "done")
    for row in (admin_a, ingest):
        store.revoke_token(row.token_id, "2026-12-01T00:00:00Z")
    # every token revoked: tokens are no longer in use, the OS user may release
    released = release_hold(DirectAppender(store), Reader("lead"), store, placed.id, "done")
    assert released.released_token_id is None


def _covered(store: Store, held: list[Hold]) -> list[int]:
    sql_store: Any = store  # the SQL of the one store implementation, as prune runs it
    condition, params = hold_condition(held, sql_store._db.placeholder)
    sql = f"SELECT seq FROM {sql_store._records} WHERE {condition} ORDER BY seq"
    return [int(row[0]) for row in sql_store._db.stream("testing", sql, params)]


def test_a_hold_covers_matching_records_including_later_ones(store: Store) -> None:
    day = DAY_NS
    before = store.append([
        log_record("login", NOW_NS - 10 * day, actor="alice"),
        log_record("login", NOW_NS - 10 * day, actor="bob"),
        log_record("delete", NOW_NS - 10 * day, actor="alice", service="billing"),
    ]).seqs  # fmt: skip
    ops = Reader("ops")
    alice = _hold(store, ops, SearchFilter({"actor": ("alice",)}))
    window = _hold(store, ops, SearchFilter({"service": ("billing",)}, NOW_NS - 2 * day,
                                            NOW_NS))  # fmt: skip
    after = store.append([
        log_record("login", NOW_NS - day, actor="alice"),  # arrives after both holds
        log_record("pay", NOW_NS - day, actor="carol", service="billing"),  # in the window
        log_record("pay", NOW_NS, actor="carol", service="billing"),  # at its end: not held
        log_record("pay", NOW_NS - day, actor="dave", service="billing", time_ns=NOW_NS - 9 * day),
    ]).seqs  # fmt: skip
    assert _covered(store, [alice]) == [before[0], before[2], after[0]]
    assert _covered(store, [alice, window]) == [before[0], before[2], after[0], after[1]]
    assert _covered(store, []) == []
    everything = _covered(store, [_hold(store, ops, SearchFilter())])
    assert len(everything) == store.tree_size()
    seqs = [s for s in (*before, *after) if s is not None]
    assert held_seqs(store, [alice, window], seqs) == {before[0], before[2], after[0], after[1]}
    assert held_seqs(store, [alice], [seqs[1], seqs[-1]]) == set()


def test_listing_holds_is_a_recorded_read(data: Path) -> None:
    made = _run("hold", "create", "--data", str(data), "--name", "c", "--reason", "r",
                "--actor", "alice")  # fmt: skip
    assert made.exit_code == 0, made.stderr
    assert _run("hold", "list", "--data", str(data), "--all").exit_code == 0
    store = datadir.open_store(data, None, readonly=True)
    try:
        reads = [row_attributes(r[4]) for r in store.action_rows(["audit_log.query"])]
    finally:
        store.close()
    assert [(a["audit.query.text"], a["audit.query.rows"]) for a in reads] == [
        ("hold list --all", "1")
    ]
