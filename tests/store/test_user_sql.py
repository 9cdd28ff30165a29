"""User SQL, one contract on both stores: it reads the audit views, nothing else, within bounds.

Every statement here runs the way ``otaudit sql`` and the read API run it:
in a query worker process, on SQLite through a read-only connection with an
authorizer, on PostgreSQL as ``otaudit_sql``, a login that holds only
``otaudit_query``. The attacks are the ones that once got through: several
statements in one string, a quoted ``set_config``, a row count of an
internal table, a value or a result too large to hold.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from otaudit import datadir
from otaudit.errors import QueryError
from otaudit.query import query_target, run_sql
from otaudit.sqllimits import QueryLimits
from otaudit.sqlworker import QueryTarget, SqlRunner
from otaudit.store.base import Store
from pgcluster import PgServer, with_login
from sealing import entries

LIMITS = QueryLimits(max_rows=10, timeout_ms=5000)


@pytest.fixture(scope="module")
def runner() -> Iterator[SqlRunner]:
    """One pool of query workers for the module, as the read API keeps one."""
    pool = SqlRunner(1)
    yield pool
    pool.close()


@pytest.fixture
def target(any_store: Store, store_url: str, request: pytest.FixtureRequest) -> QueryTarget:
    """Where user SQL over ``any_store`` runs (PostgreSQL: as the query login)."""
    if store_url.startswith("sqlite"):
        return query_target(any_store)
    server: PgServer = request.getfixturevalue("pg")
    return query_target(any_store, server.query_url(store_url))


def test_queries_read_the_views(any_store: Store, target: QueryTarget, runner: SqlRunner) -> None:
    any_store.append(entries(5))
    result = run_sql(
        target,
        "SELECT seq, actor, attributes['audit.action'] AS action FROM audit_spans ORDER BY seq",
        dataclasses.replace(LIMITS, max_rows=3),
        runner,
    )
    assert result.columns == ["seq", "actor", "action"]
    assert result.rows == [(i, "alice", "config_change") for i in range(3)]
    assert result.truncated == "rows"
    counted = run_sql(
        target,
        "SELECT count(*) FROM audit_records WHERE timestamp < NOW() - INTERVAL '90 days';",
        LIMITS,
        runner,
    )
    assert (counted.rows, counted.truncated) == ([(5,)], None)
    recursive = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3)"
    assert run_sql(target, recursive + " SELECT count(*) FROM n", LIMITS, runner).rows == [(3,)]


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT * FROM records",
        "SELECT hash FROM tree_nodes",
        "SELECT count(*) FROM tokens",
        "SELECT count(*) FROM meta",
        "SELECT count(*) FROM tree_nodes",
        "SELECT count(*) FROM checkpoints",
        "SELECT count(*) FROM schema_migrations",
        "SELECT 1 FROM tokens",
        "SELECT count(*) FROM audit_records, tokens",
        # A CTE named like a view once passed for the view itself.
        "WITH audit_records AS (SELECT id, hash FROM tokens) SELECT * FROM audit_records",
        "WITH audit_spans AS (SELECT * FROM meta) SELECT * FROM audit_spans",
        "WITH audit_logs AS (SELECT seq, sealed FROM records) SELECT * FROM audit_logs",
        "DELETE FROM audit_records",
        "INSERT INTO audit_records (seq) VALUES (99)",
    ],
)
def test_nothing_but_the_views_can_be_read_not_even_counted(
    any_store: Store, target: QueryTarget, runner: SqlRunner, statement: str
) -> None:
    any_store.append(entries(2))
    with pytest.raises(QueryError, match=r"^SQL error: "):
        run_sql(target, statement, LIMITS, runner)


def test_the_sqlite_catalog_cannot_be_counted(tmp_path: Path, runner: SqlRunner) -> None:
    store = datadir.open_store(tmp_path, None, readonly=False)
    try:
        for statement in ("SELECT count(*) FROM sqlite_master", "SELECT 1 FROM sqlite_schema"):
            with pytest.raises(QueryError, match=r"not authorized .queries read only audit_"):
                run_sql(query_target(store), statement, LIMITS, runner)
    finally:
        store.close()


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        ("SET statement_timeout = 0", "only reading statements"),
        ("PRAGMA query_only = OFF", "only reading statements"),
        ("ATTACH DATABASE '/tmp/x.db' AS x", "only reading statements"),
        ("LOAD 'evil'", "only reading statements"),
        ("COPY audit_records TO '/tmp/out'", "only reading statements"),
        ("CREATE TABLE x (y int)", "only reading statements"),
        ("SELEC 1", r"only reading statements .* not 'SELEC'"),
        ("SELECT set_config('role', 'postgres', true)", "set_config is not allowed"),
        ("", "the statement is empty"),
        ("WITH gone AS (DELETE FROM audit_records RETURNING seq) SELECT * FROM gone", "SQL error"),
        ("SELECT pg_read_file('/etc/hostname')", "SQL error"),
        ("SELECT 1; DELETE FROM audit_records", "SQL error"),
        ("SELECT " + "1 + " * 40_000 + "1", "characters, over"),
    ],
)
def test_the_query_path_only_reads(
    any_store: Store, target: QueryTarget, runner: SqlRunner, statement: str, message: str
) -> None:
    any_store.append(entries(2))
    with pytest.raises(QueryError, match=message):
        run_sql(target, statement, LIMITS, runner)
    assert any_store.tree_size() == 2


def test_syntax_errors_say_where(target: QueryTarget, runner: SqlRunner) -> None:
    with pytest.raises(QueryError, match=r'^SQL error: .*"FROM".* \(at character 13\)$'):
        run_sql(target, "SELECT seq, FROM audit_logs", LIMITS, runner)


def test_a_long_query_stops_at_the_time_limit(target: QueryTarget, runner: SqlRunner) -> None:
    endless = (
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n"
    )
    with pytest.raises(QueryError, match="after the 200 ms time limit"):
        run_sql(target, endless, dataclasses.replace(LIMITS, timeout_ms=200), runner)
    assert run_sql(target, "SELECT 1", LIMITS, runner).rows == [(1,)]


def test_results_are_bounded_in_bytes(target: QueryTarget, runner: SqlRunner) -> None:
    def text(n: int) -> str:  # n characters, in each store's own SQL
        return f"printf('%.{n}c', 'x')" if target.kind == "sqlite" else f"repeat('x', {n})"

    rows = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)"
    limits = QueryLimits(max_rows=10_000, max_result_bytes=100_000, timeout_ms=5000)
    result = run_sql(target, f"{rows} SELECT i, {text(1000)} FROM n", limits, runner)
    assert result.truncated == "bytes"
    assert 90 <= len(result.rows) < 100
    with pytest.raises(QueryError, match="first row is over the 100000-byte result limit"):
        run_sql(target, f"SELECT {text(200_000)}", limits, runner)
    # Bytes as JSON carries them: a control character is 6 bytes (\u0001), not 1.
    control = (
        f"replace({text(1000)}, 'x', char(1))"
        if target.kind == "sqlite"
        else ("repeat(chr(1), 1000)")
    )
    escaped = run_sql(target, f"{rows} SELECT {control} FROM n", limits, runner)
    assert escaped.truncated == "bytes"
    assert 14 <= len(escaped.rows) <= 17


def test_an_endless_stream_of_large_rows_stops_at_the_byte_cap(
    tmp_path: Path, runner: SqlRunner
) -> None:
    """Once 3.6 GB and a MemoryError inside the server: now 64 MiB at most, in a worker."""
    store = datadir.open_store(tmp_path, None, readonly=False)
    try:
        started = time.monotonic()
        result = run_sql(
            query_target(store),
            "WITH RECURSIVE r(x) AS (SELECT randomblob(1000000) UNION ALL"
            " SELECT randomblob(1000000) FROM r) SELECT x FROM r",
            QueryLimits(timeout_ms=20_000),
            runner,
        )
        assert result.truncated == "bytes"
        assert sum(len(row[0]) for row in result.rows) <= QueryLimits().max_result_bytes
        assert time.monotonic() - started < 15
    finally:
        store.close()


def test_a_huge_value_is_refused_or_capped_quickly(tmp_path: Path, runner: SqlRunner) -> None:
    """``printf('%.*c', 900000000, 'x')`` once held 0.95 GB for 9 s."""
    store = datadir.open_store(tmp_path, None, readonly=False)
    try:
        target = query_target(store)
        with pytest.raises(QueryError, match=r"too big .values are limited to 1000 bytes"):
            run_sql(
                target,
                "SELECT randomblob(2000)",
                QueryLimits(max_value_bytes=1000, timeout_ms=5000),
                runner,
            )
        started = time.monotonic()
        try:
            result = run_sql(
                target,
                "SELECT length(printf('%.*c', 900000000, 'x'))",
                QueryLimits(timeout_ms=2000),
                runner,
            )
        except QueryError as exc:
            assert "time limit" in str(exc)
        else:
            assert result.rows == [(None,)]  # over the value limit: SQLite's printf gives NULL
        assert time.monotonic() - started < 2 + 3  # the time limit, then the worker is killed
    finally:
        store.close()


def test_a_query_over_the_memory_limit_ends_its_worker_only(tmp_path: Path) -> None:
    store = datadir.open_store(tmp_path, None, readonly=False)
    pool = SqlRunner(1)
    try:
        target = query_target(store)
        greedy = QueryLimits(
            max_rows=1_000_000,
            max_result_bytes=4 << 30,
            max_memory_bytes=400 << 20,
            timeout_ms=20_000,
        )
        with pytest.raises(QueryError, match=r"400 MiB"):
            run_sql(
                target,
                "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < 2000)"
                " SELECT randomblob(1000000) FROM r",
                greedy,
                pool,
            )
        assert run_sql(target, "SELECT 1", greedy, pool).rows == [(1,)]
    finally:
        pool.close()
        store.close()


# -- PostgreSQL: the login is what makes it read-only ------------------------------------


@pytest.fixture
def pg_ledger(pg: PgServer, tmp_path: Path) -> Iterator[tuple[Store, str]]:
    """A migrated PostgreSQL ledger with two records, and the URL of its query login."""
    url = pg.database()
    store = datadir.open_store(tmp_path, url, readonly=False)
    store.append(entries(2))
    yield store, pg.query_url(url)
    store.close()


def _logins(pg: PgServer, url: str) -> dict[str, str]:
    """Logins that can do more than read the views: a writer, a reader, a role creator."""
    with psycopg.connect(url, autocommit=True) as conn:
        for login, grant in (
            ("app_writer", "GRANT otaudit_writer TO app_writer"),
            ("app_reader", "GRANT otaudit_reader TO app_reader"),
            ("role_maker", "ALTER ROLE role_maker CREATEROLE"),
            ("two_hats", "GRANT otaudit_query, pg_read_all_data TO two_hats"),
            ("watcher", "GRANT otaudit_query, pg_monitor TO watcher"),
            # A superuser whose sessions start as the query role: current_user alone passes.
            ("sneaky", "ALTER ROLE sneaky SUPERUSER; ALTER ROLE sneaky SET role = 'otaudit_query'"),
        ):
            if (
                conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (login,)).fetchone()
                is None
            ):
                conn.execute(f"CREATE ROLE {login} LOGIN")
            conn.execute(grant)
    return {login: with_login(url, login) for login in
            ("postgres", "app_writer", "app_reader", "role_maker", "two_hats", "watcher",
             "sneaky")}  # fmt: skip


@pytest.mark.parametrize(
    ("login", "problem"),
    [
        ("postgres", "is a superuser"),
        ("app_writer", r"has rights on otaudit\.\w+ beyond reading the audit views"),
        ("app_reader", r"has rights on otaudit\.\w+ beyond reading the audit views"),
        ("role_maker", "can create roles"),
        ("two_hats", r"has rights on otaudit\.\w+ beyond reading the audit views"),
        ("watcher", r"is a predefined role that reaches past the views .through role pg_"),
        ("sneaky", "starts its sessions as role 'otaudit_query'"),
    ],
)
def test_user_sql_is_refused_over_a_login_that_can_do_more(
    pg: PgServer, pg_ledger: tuple[Store, str], runner: SqlRunner, login: str, problem: str
) -> None:
    store, query_url = pg_ledger
    url = _logins(pg, query_url.replace("otaudit_sql@", "postgres@"))[login]
    with pytest.raises(QueryError, match=rf"refusing to run user SQL as '{login}': it {problem}"):
        run_sql(query_target(store, url), "SELECT 1", LIMITS, runner)


def test_a_huge_error_message_is_cut(pg_ledger: tuple[Store, str], runner: SqlRunner) -> None:
    """PostgreSQL quotes the value it could not cast: once 114 MB of error from no rows."""
    store, query_url = pg_ledger
    with pytest.raises(QueryError) as info:
        run_sql(query_target(store, query_url), "SELECT repeat('x', 5000000)::int", LIMITS, runner)
    assert len(str(info.value)) < 9000
    assert str(info.value).endswith("characters cut)")


@pytest.mark.parametrize(
    "attack",
    [
        "SELECT 1; COMMIT; BEGIN READ WRITE; INSERT INTO otaudit.meta VALUES ('x', 'y');"
        " INSERT INTO otaudit.records (seq, sealed, dedup_key) VALUES (2, '', ''); COMMIT",
        "SELECT \"set_config\"('role', 'postgres', true),"
        " query_to_xml('select id, hash from otaudit.tokens', true, true, '')",
        "SELECT query_to_xml('select id, hash from otaudit.tokens', true, true, '')",
        "SELECT 1; COPY (SELECT 1) TO PROGRAM 'touch /tmp/otaudit-pwned'",
        "SELECT * FROM otaudit.records",
        "SELECT pg_advisory_lock(1); SELECT 1",
        "SELECT lo_import('/etc/passwd')",
    ],
)
def test_the_attacks_that_once_wrote_the_ledger_fail(
    pg_ledger: tuple[Store, str], runner: SqlRunner, tmp_path: Path, attack: str
) -> None:
    store, query_url = pg_ledger
    with pytest.raises(QueryError, match=r"^SQL error: "):
        run_sql(query_target(store, query_url), attack, LIMITS, runner)
    assert store.tree_size() == 2
    assert store.meta("x") is None
    assert not Path("/tmp/otaudit-pwned").exists()
    assert [r.seq for r in store.iter_records()] == [0, 1]


def test_a_worker_outlives_the_thread_that_started_it(tmp_path: Path) -> None:
    """The read API's threads come and go; its query workers must not go with them."""
    store = datadir.open_store(tmp_path, None, readonly=False)
    pool = SqlRunner(1)
    try:
        target = query_target(store)
        starter = threading.Thread(target=lambda: run_sql(target, "SELECT 1", LIMITS, pool))
        starter.start()
        starter.join()
        time.sleep(0.5)
        assert run_sql(target, "SELECT 2", LIMITS, pool).rows == [(2,)]
    finally:
        pool.close()
        store.close()
