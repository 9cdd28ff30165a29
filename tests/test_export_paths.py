"""Where exported audit data goes, and who else can read or change it (issue 14, finding 10).

``otaudit export --out DIR`` writes records as confidential as the data directory (0700):
the directory it creates is 0700 and every file 0600 whatever the umask. An existing
``--out`` must be an empty directory of this user that group and others cannot write to,
reached through no symbolic link; anything else is refused with the path and the reason,
and nothing is written. Files are created relative to the opened directory, so swapping a
path component after the checks cannot redirect them. The witness directory (public files,
shared with the witness) refuses symbolic links and directories any user may write to.
"""

from __future__ import annotations

import os
import pwd
import re
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from minilog import run_cli, sealed_ledger
from otaudit.outdir import UnsafeOutputError, open_output_dir
from otaudit.witness import ConsistencyProof, export_checkpoint
from support import audit_request


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory with a signed ledger of a few audit records."""
    data = tmp_path_factory.mktemp("export-paths") / "data"
    sealed_ledger(data, audit_request(3))
    return data


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The most permissive umask an operator could have, for the length of a test."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def export(data: Path, out: Path) -> tuple[int, str]:
    result = run_cli("export", "--data", data, "--out", out)
    return result.exit_code, result.stderr


def test_export_creates_a_private_directory_and_files(
    data: Path, tmp_path: Path, open_umask: None
) -> None:
    out = tmp_path / "new" / "bundle"
    code, err = export(data, out)
    assert code == 0, err
    assert (mode(out.parent), mode(out)) == (0o700, 0o700)
    names = sorted(p.name for p in out.iterdir())
    assert "records.jsonl" in names and "manifest.json" in names
    assert {name: mode(out / name) for name in names} == dict.fromkeys(names, 0o600)


def test_an_empty_private_directory_of_this_user_is_accepted(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir(mode=0o755)  # others may read it (the user's choice), not write to it
    code, err = export(data, out)
    assert code == 0, err
    assert mode(out) == 0o755
    assert {mode(p) for p in out.iterdir()} == {0o600}


def _other_users_directory(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        pytest.skip("giving a directory to another user needs root")
    path = tmp_path / "theirs"
    path.mkdir(mode=0o755)
    nobody = pwd.getpwnam("nobody")
    os.chown(path, nobody.pw_uid, nobody.pw_gid)
    return path


def _symlink_to_empty_directory(tmp_path: Path) -> Path:
    (tmp_path / "target").mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(tmp_path / "target")
    return tmp_path / "link"


def _under_a_symlinked_parent(tmp_path: Path) -> Path:
    (tmp_path / "target").mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(tmp_path / "target")
    return tmp_path / "link" / "bundle"


def _group_writable(tmp_path: Path) -> Path:
    path = tmp_path / "shared"
    path.mkdir()
    path.chmod(0o770)
    return path


def _world_writable(tmp_path: Path) -> Path:
    path = tmp_path / "open"
    path.mkdir()
    path.chmod(0o1777)
    return path


def _a_file(tmp_path: Path) -> Path:
    path = tmp_path / "file"
    path.write_bytes(b"")
    return path


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (_other_users_directory, r"it is owned by uid \d+, not by this user \(uid \d+\)"),
        (_symlink_to_empty_directory, "it is a symbolic link"),
        (_under_a_symlinked_parent, r"its parent \S+/link is a symbolic link"),
        (_group_writable, "it has mode 0770: group or others may write to it"),
        (_world_writable, "it has mode 1777: group or others may write to it"),
        (_a_file, "it exists and is not a directory"),
    ],
)
def test_unsafe_out_is_refused_and_nothing_written(
    data: Path, tmp_path: Path, make: Callable[[Path], Path], reason: str
) -> None:
    out = make(tmp_path)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    code, err = export(data, out)
    assert code == 2
    assert f"--out {out}: " in err and "; nothing was written" in err
    assert re.search(reason, err), err
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


def test_writes_cannot_be_redirected_after_the_checks(tmp_path: Path) -> None:
    """Swapping the checked path for a link to another directory moves nothing there."""
    out, moved, elsewhere = tmp_path / "out", tmp_path / "moved", tmp_path / "elsewhere"
    elsewhere.mkdir()
    directory = open_output_dir(out)
    try:
        out.rename(moved)
        out.symlink_to(elsewhere)
        with directory.create("records.jsonl") as f:
            f.write(b"secret\n")
    finally:
        directory.close()
    assert list(elsewhere.iterdir()) == []
    assert (moved / "records.jsonl").read_bytes() == b"secret\n"
    assert mode(moved / "records.jsonl") == 0o600


def test_a_failed_export_removes_what_it_created(tmp_path: Path) -> None:
    out = tmp_path / "out"
    directory = open_output_dir(out)
    directory.create("records.csv").close()
    directory.discard()
    directory.close()
    assert not out.exists()
    with pytest.raises(UnsafeOutputError, match="it is the root directory"):
        open_output_dir(Path("/"))


def test_witness_directory_refuses_links_and_world_writable(tmp_path: Path) -> None:
    proof = ConsistencyProof(0, 1, ())
    export_checkpoint(tmp_path / "fresh", "note\n", proof)
    assert (tmp_path / "fresh" / "checkpoint.1").read_text() == "note\n"
    (tmp_path / "link").symlink_to(tmp_path / "fresh")
    with pytest.raises(OSError, match=r"witness directory .*/link is a symbolic link"):
        export_checkpoint(tmp_path / "link", "other\n", ConsistencyProof(0, 2, ()))
    (tmp_path / "open").mkdir()
    (tmp_path / "open").chmod(0o777)
    with pytest.raises(OSError, match="has mode 0777: any user may write to it"):
        export_checkpoint(tmp_path / "open", "note\n", proof)
    assert sorted(p.name for p in (tmp_path / "fresh").iterdir()) == ["checkpoint.1", "proof.1"]
    assert list((tmp_path / "open").iterdir()) == []


def test_error_messages_show_control_characters_escaped(data: Path, tmp_path: Path) -> None:
    """Messages may quote what they were given (here a path); it cannot drive the terminal."""
    out = tmp_path / "x\x1b]0;owned\x07"
    out.symlink_to(tmp_path)
    code, err = export(data, out)
    assert code == 2
    assert "x\\x1b]0;owned\\x07: it is a symbolic link" in err and "\x1b" not in err
