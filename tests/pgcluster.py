"""A throwaway PostgreSQL server for tests and benchmarks.

``PgCluster.start()`` runs ``initdb`` and ``pg_ctl`` from Debian's postgresql
package (``make test`` installs it when missing) on a free port in a fresh
temporary directory, removed again by ``destroy()``. As root, the server runs
as the ``postgres`` user, since PostgreSQL refuses to run as root.

With ``OTAUDIT_TEST_PG_DSN`` set, ``server_for_tests()`` uses that server
instead (it needs the right to create databases); tests that restart
PostgreSQL always use a cluster of their own.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from otaudit.demo import free_port

DSN_ENV = "OTAUDIT_TEST_PG_DSN"


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    raise RuntimeError(
        "PostgreSQL server binaries not found: install Debian's postgresql package "
        f"(`make test` does this) or set {DSN_ENV}"
    )


@dataclass
class PgCluster:
    """One PostgreSQL server in a temporary directory, on 127.0.0.1:``port``."""

    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="otaudit-pg-")))
    port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        self.bin = _bindir()
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self._user: pwd.struct_passwd | None = None
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            self._user = pwd.getpwnam("postgres")
            os.chown(self.root, self._user.pw_uid, self._user.pw_gid)
        os.chmod(self.root, 0o700)

    def _run(self, *args: str) -> None:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self._user is not None:
            cmd = [
                "setpriv",
                f"--reuid={self._user.pw_uid}",
                f"--regid={self._user.pw_gid}",
                "--init-groups",
                "--",
                *cmd,
            ]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
        if done.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(args[:2])} failed: {done.stderr}{done.stdout}\n{log}")

    def start(self) -> PgCluster:
        """initdb on first start, then start the server and wait until it accepts connections."""
        if not self.data.exists():
            self._run(
                "initdb",
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-instructions",
            )
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c max_connections=200 -c fsync=on -c synchronous_commit=on"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-w",
            "-t",
            "60",
            "-o",
            options,
            "start",
        )
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``immediate`` is a crash: no shutdown checkpoint)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        """Stop the server if it runs and remove its directory."""
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError):
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    @property
    def dsn(self) -> str:
        """The superuser DSN of the ``postgres`` database."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"


@dataclass
class PgServer:
    """A server the tests may create databases on: throwaway, or from ``OTAUDIT_TEST_PG_DSN``."""

    dsn: str
    cluster: PgCluster | None = None
    created: list[str] = field(default_factory=list)

    def database(self) -> str:
        """A new empty database; its URL."""
        name = f"otaudit_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return _with_database(self.dsn, name)

    def close(self) -> None:
        """Drop the databases created (external server) or remove the throwaway cluster."""
        if self.cluster is not None:
            self.cluster.destroy()
            return
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            for name in self.created:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def query_url(self, url: str) -> str:
        """``url`` as ``otaudit_sql``, a login holding only ``otaudit_query`` (created once):
        the login user SQL runs as. The database must have been migrated."""
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(_QUERY_LOGIN)
        return with_login(url, "otaudit_sql")


_QUERY_LOGIN = """DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'otaudit_query') THEN
        CREATE ROLE otaudit_query NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'otaudit_sql') THEN
        CREATE ROLE otaudit_sql LOGIN IN ROLE otaudit_query;
    END IF;
END $$"""


def with_login(url: str, login: str) -> str:
    """The URL with another user (no password: the throwaway server trusts local logins)."""
    return re.sub(r"^(postgres(?:ql)?://)[^@/]*@", rf"\g<1>{login}@", url)


def _with_database(dsn: str, name: str) -> str:
    """The URL ``dsn`` (postgresql://...) with its database replaced by ``name``."""
    head, _sep, tail = dsn.partition("://")
    authority, _, rest = tail.partition("/")
    query = rest.partition("?")[2]
    return f"{head}://{authority}/{name}" + (f"?{query}" if query else "")


def server_for_tests() -> PgServer:
    """The external server named by ``OTAUDIT_TEST_PG_DSN``, or a new throwaway cluster."""
    external = os.environ.get(DSN_ENV)
    if external:
        return PgServer(external)
    cluster = PgCluster().start()
    return PgServer(cluster.dsn, cluster)
