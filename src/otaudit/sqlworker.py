"""User SQL in a process of its own, so that a runaway query takes down only itself.

A statement a reader sends (``otaudit sql``, ``POST /api/v1/sql``) never runs
in the process that receives OTLP and holds the sequencer. It runs in a
query worker: a child process started with ``python -m otaudit.sqlworker``,
whose address space is capped (``RLIMIT_AS``), which dies with its parent
(a thread watches for it, even mid-statement), and which the parent kills when a
statement overstays its time limit. Inside, the store's own bounds apply
(:mod:`otaudit.store.sqlite_query`, :mod:`otaudit.store.postgres_query`).

Parent and worker exchange length-prefixed JSON frames: a request names the
store (``sqlite`` and a path, or ``postgresql`` and the query login's DSN),
the statement and the limits; the answer carries the rows, with the cell
types JSON lacks (bytes, decimals, timestamps, non-finite floats) tagged.
A worker serves one statement at a time and is reused until it fails.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import decimal
import os
import queue
import resource
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any, Final

import orjson

from otaudit.errors import ConfigError, OtauditError, Overloaded, QueryError, StoreError
from otaudit.sqllimits import QueryLimits, QueryRows

_HEADER: Final = struct.Struct(">I")
#: Time a worker gets past the statement's own limit before it is killed.
_GRACE_S: Final = 2.0
#: The longest error message a worker passes on.
MAX_MESSAGE_CHARS: Final = 8192
_ERRORS: Final[dict[str, type[OtauditError]]] = {
    "QueryError": QueryError,
    "StoreError": StoreError,
    "ConfigError": ConfigError,
}


@dataclass(frozen=True)
class QueryTarget:
    """Where a statement runs: ``("sqlite", path)`` or ``("postgresql", query login DSN)``."""

    kind: str
    where: str


# -- cells across the process boundary ------------------------------------------


def encode_cell(value: Any) -> Any:
    """A cell as JSON can carry it, with the types JSON lacks tagged (see :func:`decode_cell`)."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**64 else {"$i": str(value)}
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else {"$f": repr(value)}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$b": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, decimal.Decimal):
        return {"$d": str(value)}
    if isinstance(value, datetime.datetime):
        return {"$t": value.isoformat()}
    if isinstance(value, list | tuple):
        return [encode_cell(v) for v in value]
    if isinstance(value, dict):
        return {"$m": [[encode_cell(k), encode_cell(v)] for k, v in value.items()]}
    return str(value)


def decode_cell(value: Any) -> Any:
    """The value :func:`encode_cell` was given (other types come back as their text)."""
    if isinstance(value, list):
        return [decode_cell(v) for v in value]
    if not isinstance(value, dict):
        return value
    ((tag, text),) = value.items()
    if tag == "$i":
        return int(text)
    if tag == "$f":
        return float(text)
    if tag == "$b":
        return base64.b64decode(text)
    if tag == "$d":
        return decimal.Decimal(text)
    if tag == "$t":
        return datetime.datetime.fromisoformat(text)
    return {decode_cell(k): decode_cell(v) for k, v in text}


# -- the worker -------------------------------------------------------------------


def _exit_with(parent: int) -> None:
    """End this process as soon as ``parent`` is gone, even in the middle of a statement.

    A thread watches the parent id (SQLite and libpq release the GIL while they
    work). Not ``PR_SET_PDEATHSIG``: that fires when the *thread* that started the
    worker ends, and the server's threads come and go.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(3)

    threading.Thread(target=watch, name="otaudit-parent-watch", daemon=True).start()


def _read_frame(stream: IO[bytes]) -> bytes | None:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(header)
    body = stream.read(size)
    return body if len(body) == size else None


def _write_frame(stream: IO[bytes], document: Any) -> None:
    body = orjson.dumps(document)
    stream.write(_HEADER.pack(len(body)) + body)
    stream.flush()


def _run(request: dict[str, Any]) -> QueryRows:
    limits = QueryLimits(**request["limits"])
    if request["kind"] == "sqlite":
        from otaudit.store.sqlite_query import run_query as run_sqlite

        return run_sqlite(Path(request["where"]), request["sql"], limits)
    from otaudit.store.postgres_query import run_query as run_postgres

    return run_postgres(request["where"], request["sql"], limits)


def _shortened(message: str) -> str:
    """An error message cut to ``MAX_MESSAGE_CHARS`` (a database may quote a huge value)."""
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    return f"{message[:MAX_MESSAGE_CHARS]}... ({len(message) - MAX_MESSAGE_CHARS} characters cut)"


def worker_main(parent: int, memory_bytes: int) -> None:
    """Serve requests from stdin until it closes; run by ``python -m otaudit.sqlworker``."""
    if os.getppid() != parent:
        return
    _exit_with(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server stops its workers itself
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else may write into the answer stream
    while (frame := _read_frame(stdin)) is not None:
        ended = False
        try:
            result = _run(orjson.loads(frame))
            answer: dict[str, Any] = {
                "columns": result.columns,
                "rows": [[encode_cell(v) for v in row] for row in result.rows],
                "truncated": result.truncated,
            }
        except OtauditError as exc:
            answer = {"error": {"type": type(exc).__name__, "message": _shortened(str(exc))}}
            ended = isinstance(exc.__cause__, MemoryError)  # start afresh after that
        except MemoryError:
            answer = {"error": {"type": "QueryError", "message": "query stopped: out of memory"}}
            ended = True
        except Exception as exc:  # a defect: answer it, keep serving
            message = _shortened(f"query worker: {exc!r}")
            answer = {"error": {"type": "StoreError", "message": message}}
        if ended:
            answer["ending"] = True
        try:
            _write_frame(stdout, answer)
        except MemoryError:
            answer = {"error": {"type": "QueryError", "message": "result too large"}}
            answer["ending"] = True
            _write_frame(stdout, answer)
            ended = True
        if ended:
            return


# -- the parent side ----------------------------------------------------------------


class _Worker:
    """One worker process, asked one statement at a time."""

    def __init__(self, memory_bytes: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "otaudit.sqlworker", str(os.getpid()), str(memory_bytes)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
        )

    def ask(self, request: dict[str, Any], deadline: float, max_answer_bytes: int) -> Any:
        """The worker's answer to ``request``; TimeoutError past ``deadline``, EOFError if
        the worker ended without answering."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            _write_frame(self.proc.stdin, request)
        except (BrokenPipeError, OSError) as exc:
            raise EOFError("the query worker is gone") from exc
        fd = self.proc.stdout.fileno()
        header = _read_exactly(fd, _HEADER.size, deadline)
        (size,) = _HEADER.unpack(header)
        if size > max_answer_bytes:
            raise EOFError(f"the answer is {size} bytes, over {max_answer_bytes}")
        return orjson.loads(_read_exactly(fd, size, deadline))

    def kill(self) -> None:
        """End the process now and reap it."""
        with contextlib.suppress(OSError):
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    def close(self) -> None:
        """Let the process end on its own (end of input), killing it if it lingers."""
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=2)
        self.kill()


def _read_exactly(fd: int, size: int, deadline: float) -> bytes:
    parts: list[bytes] = []
    left = size
    while left:
        wait = deadline - time.monotonic()
        if wait <= 0 or not select.select([fd], [], [], wait)[0]:
            raise TimeoutError
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise EOFError("the query worker ended")
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


class SqlRunner:
    """Runs user SQL in up to ``workers`` query worker processes, one statement each at a
    time; a statement that finds every worker busy for ``wait_s`` gets ``Overloaded``."""

    def __init__(self, workers: int = 2, *, wait_s: float = 10.0) -> None:
        self._slots = threading.BoundedSemaphore(workers)
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        self._wait_s = wait_s
        self._closed = False

    def run(self, target: QueryTarget, sql: str, limits: QueryLimits) -> QueryRows:
        """Run one statement; QueryError (bad SQL, a limit), StoreError, or Overloaded."""
        if not self._slots.acquire(timeout=self._wait_s):
            raise Overloaded("every query worker is busy; retry", retry_after_s=5)
        try:
            return self._run(target, sql, limits)
        finally:
            self._slots.release()

    def _run(self, target: QueryTarget, sql: str, limits: QueryLimits) -> QueryRows:
        request = {"kind": target.kind, "where": target.where, "sql": sql, "limits": asdict(limits)}
        deadline = time.monotonic() + limits.timeout_ms / 1000 + _GRACE_S
        max_answer_bytes = 8 * limits.max_result_bytes + (1 << 20)
        try:
            worker = self._idle.get_nowait()
        except queue.Empty:
            worker = _Worker(limits.max_memory_bytes)
        else:
            if worker.proc.poll() is not None:  # ended while idle (killed from outside)
                worker.kill()
                worker = _Worker(limits.max_memory_bytes)
        try:
            answer = worker.ask(request, deadline, max_answer_bytes)
        except TimeoutError:
            worker.kill()
            raise QueryError(f"query stopped after the {limits.timeout_ms} ms time limit") from None
        except EOFError as exc:
            worker.kill()
            raise QueryError(
                f"query stopped: its process ended ({exc}; exit status {worker.proc.returncode});"
                f" queries are limited to {limits.max_memory_bytes // 2**20} MiB of memory"
            ) from None
        if answer.get("ending") or self._closed:
            worker.close()
        else:
            self._idle.put(worker)
        if "error" in answer:
            raise _ERRORS.get(answer["error"]["type"], StoreError)(answer["error"]["message"])
        return QueryRows(
            answer["columns"],
            [tuple(decode_cell(v) for v in row) for row in answer["rows"]],
            answer["truncated"],
        )

    def close(self) -> None:
        """Stop every idle worker (a busy one is stopped when its statement ends)."""
        self._closed = True
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


if __name__ == "__main__":
    worker_main(int(sys.argv[1]), int(sys.argv[2]))
