"""Shared fixtures: a real ``otaudit serve`` process on free ports with its own data directory,
and the two stores (SQLite in a temporary directory, PostgreSQL on a throwaway server)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from otaudit import datadir
from otaudit.store.base import Store
from pgcluster import PgServer, server_for_tests
from s3server import moto_s3, s3_env
from support import Server, otaudit

__all__ = ["Server", "moto_s3", "otaudit", "s3_env"]

STORE_KINDS = ("sqlite", "postgresql")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """A fresh server with an empty ledger; stopped (final checkpoint signed) afterwards."""
    srv = Server(tmp_path / "data").start()
    yield srv
    if srv.proc is not None:
        srv.stop()


@pytest.fixture(scope="session")
def pg() -> Iterator[PgServer]:
    """The PostgreSQL server of this test run (throwaway, or ``OTAUDIT_TEST_PG_DSN``)."""
    server = server_for_tests()
    yield server
    server.close()


def new_store_url(kind: str, directory: Path, request: pytest.FixtureRequest) -> str:
    """A ``--store`` URL for a new, empty ledger of the given kind."""
    if kind == "sqlite":
        return f"sqlite:///{directory / 'ledger.db'}"
    server: PgServer = request.getfixturevalue("pg")
    return server.database()


def query_args(store_url: str | None, request: pytest.FixtureRequest) -> list[str]:
    """``--query-store`` for user SQL over ``store_url``: the query login on PostgreSQL."""
    if store_url is None or not store_url.startswith("postgresql"):
        return []
    server: PgServer = request.getfixturevalue("pg")
    return ["--query-store", server.query_url(store_url)]


@pytest.fixture(params=STORE_KINDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new, empty ledger on each store, as a ``--store`` URL."""
    return new_store_url(request.param, tmp_path, request)


@pytest.fixture
def any_store(store_url: str, tmp_path: Path) -> Iterator[Store]:
    """The ledger of ``store_url``, opened writable (schema created)."""
    store = datadir.open_store(tmp_path, store_url, readonly=False)
    yield store
    store.close()


# Fuzzing profiles: `make test` runs a bounded number of examples, `make fuzz` many more.
settings.register_profile("default", max_examples=100, deadline=None)
settings.register_profile("fuzz", max_examples=20_000, deadline=None)
settings.load_profile(os.environ.get("OTAUDIT_FUZZ_PROFILE", "default"))
