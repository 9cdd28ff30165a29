"""A real ``otaudit serve`` subprocess on free ports with a fresh data directory.

Data directories are made under ``bench/results/`` (git-ignored), which is on the
same filesystem as the repository: a real disk, so the fsync of every commit is
part of what is measured. :func:`describe_fs` says which filesystem that is.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

RESULTS = Path(__file__).resolve().parent / "results"
_SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*(?:\{[^}]*\})?) (\S+)$")


def scratch_dir(prefix: str) -> Path:
    """A new empty directory under ``bench/results/`` (the caller removes it)."""
    RESULTS.mkdir(exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=RESULTS))


def describe_fs(path: Path) -> str:
    """The filesystem holding ``path``, from ``/proc/mounts`` (e.g. ``ext4 on /dev/vda``)."""
    best = ("", "?", "?")
    real = str(path.resolve())
    with contextlib.suppress(OSError), open("/proc/mounts") as f:
        for line in f:
            dev, mnt, fstype = line.split()[:3]
            inside = real == mnt or real.startswith(mnt.rstrip("/") + "/")
            if inside and len(mnt) > len(best[0]):
                best = (mnt, fstype, dev)
    kind = "tmpfs: fsync is free, figures are optimistic" if best[1] == "tmpfs" else "real disk"
    return f"{best[1]} on {best[2]} (mounted at {best[0]}; {kind})"


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process ``pid`` and its live descendants.

    The server decodes in worker processes (a forkserver's children), so they count too.
    """
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents[int(entry)] = int(_stat(int(entry))[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in tree:
                tree.add(child)
                frontier.append(child)
    total = 0
    for member in tree:
        try:
            fields = _stat(member)
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


class ServerProcess:
    """``python -m otaudit serve`` on free ports; a context manager that SIGTERMs it on exit."""

    def __init__(
        self, label: str, extra_args: tuple[str, ...] = (), key_from: Path | None = None
    ) -> None:
        """``extra_args`` go to ``otaudit serve``; ``key_from`` is a data directory whose
        signing key this node shares (another node of the same ledger)."""
        self.root = scratch_dir(f"{label}-")
        self.data = self.root / "data"
        self.extra_args = extra_args
        if key_from is not None:
            self.data.mkdir(mode=0o700)
            shutil.copy2(key_from / "signing.key", self.data / "signing.key")
        self.http_port = free_port()
        self.grpc_port = free_port()
        self.log_path = self.root / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """The server's process id."""
        assert self.proc is not None
        return self.proc.pid

    def __enter__(self) -> ServerProcess:
        argv = [sys.executable, "-m", "otaudit", "serve", "--data", str(self.data)]
        argv += ["--http", f"127.0.0.1:{self.http_port}", "--grpc", f"127.0.0.1:{self.grpc_port}"]
        argv += self.extra_args
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.root)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"otaudit serve exited {self.proc.returncode}: {self.log()}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                if self._get("/healthz", 1.0)[0] == 200:
                    return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"otaudit serve did not answer /healthz within 60 s: {self.log()}")

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _get(self, path: str, timeout: float) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=timeout)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def log(self) -> str:
        """The last lines the server wrote."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return "(no log)"

    def metrics(self) -> dict[str, float]:
        """The server's Prometheus samples, keyed by ``name{labels}``."""
        status, body = self._get("/metrics", 10.0)
        if status != 200:
            raise RuntimeError(f"GET /metrics answered {status}")
        text = body.decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            m = _SAMPLE.match(line)
            if m:
                out[m.group(1)] = float(m.group(2))
        return out

    def stop(self) -> int | None:
        """SIGTERM the server and wait for it (final checkpoint); its exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None
