"""Small trusted files written whole or not at all (otaudit.smallfile.write_atomic)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from otaudit.detect.process import PositionFile
from otaudit.smallfile import write_atomic


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_replaces_with_the_mode_asked_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"old")
    old = os.umask(0o077)
    try:
        write_atomic(path, b"new", 0o644)
    finally:
        os.umask(old)
    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert _names(tmp_path) == ["f"]  # no temporary file left


def test_without_overwrite_an_existing_file_or_link_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"precious")
    with pytest.raises(FileExistsError):
        write_atomic(path, b"new", overwrite=False)
    assert path.read_bytes() == b"precious"
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "nowhere")
    with pytest.raises(FileExistsError):
        write_atomic(link, b"new", overwrite=False)
    assert not (tmp_path / "nowhere").exists()
    write_atomic(tmp_path / "g", b"fresh", 0o600, overwrite=False)
    assert (tmp_path / "g").read_bytes() == b"fresh"
    assert stat.S_IMODE((tmp_path / "g").stat().st_mode) == 0o600
    assert _names(tmp_path) == ["f", "g", "link"]


def test_without_hard_links_a_checked_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_link(src: object, dst: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_link)
    write_atomic(tmp_path / "f", b"one", overwrite=False)
    with pytest.raises(FileExistsError):
        write_atomic(tmp_path / "f", b"two", overwrite=False)
    assert (tmp_path / "f").read_bytes() == b"one"
    assert _names(tmp_path) == ["f"]


def test_a_failed_write_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "missing" / "f", b"x")
    directory = tmp_path / "d"
    directory.mkdir()
    (directory / "f").mkdir()  # a directory cannot be replaced by a file
    with pytest.raises(IsADirectoryError):
        write_atomic(directory / "f", b"x")
    assert _names(directory) == ["f"]


def test_the_detection_position_is_written_atomically(tmp_path: Path) -> None:
    saved = PositionFile(tmp_path / "detect.position")
    saved.write(7)
    saved.write(8)
    assert (tmp_path / "detect.position").read_text() == "8\n"
    assert PositionFile(tmp_path / "detect.position").read() == 8
    assert _names(tmp_path) == ["detect.position"]
