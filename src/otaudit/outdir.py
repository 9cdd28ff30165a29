"""A private output directory for exported audit data (``otaudit export --out DIR``).

Exported records are as confidential as the data directory (mode 0700), so
:func:`open_output_dir` gives them the same protection and lets no other local user redirect
or replace them:

1. The path is walked one component at a time from ``/`` (a relative path is first made
   absolute from the working directory, as the kernel reports it), each directory opened
   relative to the previous one with ``O_NOFOLLOW``: a symbolic link anywhere in the path is
   refused. Missing parent directories are created with mode 0700.
2. An absent final directory is created with mode 0700 (whatever the umask). An existing one
   is accepted only if it is an empty directory, not a symbolic link, owned by the current
   user and not writable by group or others; anything else is refused with the path and the
   reason, and nothing is written.
3. Files are created relative to the opened directory, never by path (``O_EXCL``,
   ``O_NOFOLLOW``, mode 0600 whatever the umask), so renaming or replacing a path component
   after the checks cannot redirect them.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO, Final

from otaudit.errors import ConfigError

_DIR_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: Directories on the way are only walked through: O_PATH (Linux) needs no read permission,
#: so a parent such as a 0711 home directory can be passed.
_WALK_FLAGS: Final = (_DIR_FLAGS & ~os.O_RDONLY) | getattr(os, "O_PATH", os.O_RDONLY)
_FILE_FLAGS: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
DIR_MODE: Final = 0o700
FILE_MODE: Final = 0o600


class UnsafeOutputError(ConfigError):
    """An output path that is not a directory only this user can change (see
    :func:`open_output_dir`); nothing was written."""

    def __init__(self, option: str, path: Path, reason: str) -> None:
        super().__init__(f"{option} {path}: {reason}; nothing was written")
        self.option, self.path, self.reason = option, path, reason


class OutputDir:
    """An opened output directory: files are created in it through its descriptor."""

    def __init__(self, path: Path, fd: int, parent_fd: int, created: bool) -> None:
        self.path, self.fd, self._parent_fd, self.created = path, fd, parent_fd, created
        self._names: list[str] = []
        self._dirs: list[str] = []

    def make_dir(self, name: str) -> None:
        """A new subdirectory ``name`` (mode 0700; a path relative to the directory whose
        parents :meth:`make_dir` made), for the files of :meth:`create` (OSError)."""
        self._dirs.append(name)  # first: an exception right after the mkdir still discards it
        os.mkdir(name, 0o700, dir_fd=self.fd)

    def create(self, name: str) -> BinaryIO:
        """A new file ``name`` in the directory, open for writing, mode 0600 (OSError)."""
        self._names.append(name)  # first: an exception right after the open still discards it
        fd = os.open(name, _FILE_FLAGS, FILE_MODE, dir_fd=self.fd)
        try:
            os.fchmod(fd, FILE_MODE)
            return os.fdopen(fd, "wb")
        except BaseException:
            os.close(fd)
            raise

    def sync(self) -> None:
        """Make the directory's entries durable (fsync of the directory)."""
        try:
            os.fsync(self.fd)
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.ENOTSUP):  # not syncable here
                raise

    def discard(self) -> None:
        """Remove every file :meth:`create` made, and the directory if it was created."""
        for name in self._names:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=self.fd)
        for name in reversed(self._dirs):
            with contextlib.suppress(OSError):
                os.rmdir(name, dir_fd=self.fd)
        if self.created:  # renamed or filled by someone else meanwhile: left as it is
            with contextlib.suppress(OSError):
                os.rmdir(self.path.name, dir_fd=self._parent_fd)

    def close(self) -> None:
        """Close the directory's descriptors."""
        os.close(self.fd)
        os.close(self._parent_fd)


def _open_dir(parent_fd: int, name: str, error: UnsafeOutputError, flags: int) -> int:
    """Open directory ``name`` relative to ``parent_fd`` without following a link. On failure
    ``error`` is raised with the reason (``error.reason`` names what was opened)."""
    try:
        return os.open(name, flags, dir_fd=parent_fd)
    except OSError as exc:
        try:
            kind = stat.S_IFMT(os.stat(name, dir_fd=parent_fd, follow_symlinks=False).st_mode)
        except OSError:
            kind = None
        if kind == stat.S_IFLNK:
            reason = "is a symbolic link"
        elif kind is not None and kind != stat.S_IFDIR:
            reason = "exists and is not a directory"
        else:
            reason = f"cannot be opened: {exc.strerror or exc}"
        raise UnsafeOutputError(error.option, error.path, f"{error.reason} {reason}") from exc


def _make_dir(parent_fd: int, name: str, error: UnsafeOutputError) -> bool:
    """Create directory ``name`` (mode 0700 before the umask); False if something is there."""
    try:
        os.mkdir(name, DIR_MODE, dir_fd=parent_fd)
    except FileExistsError:
        return False
    except OSError as exc:
        reason = f"{error.reason} cannot be created: {exc.strerror or exc}"
        raise UnsafeOutputError(error.option, error.path, reason) from exc
    return True


def open_output_dir(path: Path, option: str = "--out") -> OutputDir:
    """Open (or create, mode 0700) the output directory ``path`` under the rules in this
    module's docstring. UnsafeOutputError names ``option``, the path and the reason."""
    absolute = Path(os.path.abspath(path))
    if absolute == absolute.parent:
        raise UnsafeOutputError(option, path, "it is the root directory")
    fd = os.open("/", _WALK_FLAGS)
    try:
        shown = Path("/")
        for name in absolute.parent.parts[1:]:
            shown = shown / name
            where = UnsafeOutputError(option, path, f"its parent {shown}")
            _make_dir(fd, name, where)
            next_fd = _open_dir(fd, name, where, _WALK_FLAGS)
            os.close(fd)
            fd = next_fd
        where = UnsafeOutputError(option, path, "it")
        created = _make_dir(fd, absolute.name, where)
        out_fd = _open_dir(fd, absolute.name, where, _DIR_FLAGS)
    except BaseException:
        os.close(fd)
        raise
    out = OutputDir(absolute, out_fd, fd, created)
    try:
        if created:
            os.fchmod(out_fd, DIR_MODE)
        _check_private(out_fd, path, option)
    except BaseException:
        out.discard()
        out.close()
        raise
    return out


def _check_private(fd: int, path: Path, option: str) -> None:
    """The opened directory is this user's, not writable by others, and empty."""
    st = os.fstat(fd)
    uid = os.geteuid()
    if st.st_uid != uid:
        raise UnsafeOutputError(
            option, path, f"it is owned by uid {st.st_uid}, not by this user (uid {uid})"
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o022:
        raise UnsafeOutputError(
            option, path, f"it has mode {mode:04o}: group or others may write to it"
        )
    if os.listdir(fd):
        reason = "it is not empty (it must not exist or be an empty directory)"
        raise UnsafeOutputError(option, path, reason)
