"""Shared fixtures: a real ``otaudit serve`` process on free ports with its own data directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support import Server, otaudit

__all__ = ["Server", "otaudit"]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """A fresh server with an empty ledger; stopped (final checkpoint signed) afterwards."""
    srv = Server(tmp_path / "data").start()
    yield srv
    if srv.proc is not None:
        srv.stop()
