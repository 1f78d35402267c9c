"""A private PostgreSQL server for the cluster tests: one per session, on a Unix socket in a temp directory.

No TCP port is opened, so it never collides with a system server. Each test
gets a schema of its own (``pg_dsn``), in which the cluster store creates its
tables. Without PostgreSQL the cluster tests skip, unless
``CHRONOWHEEL_REQUIRE_PG=1`` (CI) makes that a failure.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

__all__ = ["PgServer", "pg_dsn", "pg_server", "running_server"]


@dataclass(frozen=True)
class PgServer:
    """A running server: its socket directory, its binaries, and how to run them (as ``postgres`` under root)."""

    socket_dir: str
    bin_dir: str
    prefix: tuple[str, ...]
    options: str = ""

    def dsn(self, schema: str | None = None) -> str:
        """An asyncpg DSN; with ``schema``, connections put it first on their ``search_path``."""
        settings = "" if schema is None else f"&search_path={schema}"
        return f"postgresql://postgres@/postgres?host={self.socket_dir}{settings}"

    def psql(self, command: str) -> str:
        """Run one SQL command with psql (the tests' own set-up: no event loop needed)."""
        done = subprocess.run(
            [os.path.join(self.bin_dir, "psql"), "-h", self.socket_dir, "-U", "postgres", "-XAtqc", command],
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout

    def deadlocks(self) -> int:
        """How many deadlocks the server's log reports so far."""
        with open(os.path.join(self.socket_dir, "log"), errors="replace") as log:
            return log.read().count("deadlock detected")

    def pg_ctl(self, *args: str) -> None:
        """Run ``pg_ctl`` on this server's data directory (``"stop", "-m", "immediate"``, ``"start"``)."""
        data, log = os.path.join(self.socket_dir, "data"), os.path.join(self.socket_dir, "log")
        command = [os.path.join(self.bin_dir, "pg_ctl"), "-D", data, "-l", log, "-w", "-o", self.options, *args]
        subprocess.run([*self.prefix, *command], check=True, capture_output=True)


def _bin_dir() -> str | None:
    """``CHRONOWHEEL_PG_BIN``, then ``initdb`` on PATH, then Debian's ``/usr/lib/postgresql/*/bin``."""
    configured = os.environ.get("CHRONOWHEEL_PG_BIN")
    if configured:
        return configured
    initdb = shutil.which("initdb")
    if initdb is not None:
        return os.path.dirname(os.path.realpath(initdb))  # a symlink: psql sits beside the real one
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return os.path.dirname(found[-1]) if found else None


def _unavailable(why: str) -> None:
    if os.environ.get("CHRONOWHEEL_REQUIRE_PG") == "1":
        pytest.fail(f"PostgreSQL is required (CHRONOWHEEL_REQUIRE_PG=1): {why}")
    pytest.skip(f"no PostgreSQL: {why}")


@contextlib.contextmanager
def running_server(*, durable: bool = False) -> Iterator[PgServer]:
    """A new server in a temp directory, stopped (``-m immediate``) and removed at the end.

    ``durable``: commits are flushed before they are acknowledged (fsync and
    synchronous_commit on), so that a crash-restart of the server loses no
    acknowledged commit; the session's shared server trades that for speed.
    """
    bin_dir = _bin_dir()
    if bin_dir is None or not os.path.exists(os.path.join(bin_dir, "initdb")):
        _unavailable("initdb not found (set CHRONOWHEEL_PG_BIN, or install the postgresql package)")
    assert bin_dir is not None
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        _unavailable("asyncpg is not installed (pip install 'chronowheel[postgres]')")
    root = tempfile.mkdtemp(prefix="chronowheel-pg-")
    prefix: tuple[str, ...] = ()
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        shutil.chown(root, "postgres", "postgres")
        prefix = ("runuser", "-u", "postgres", "--")
    speed = "" if durable else " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    options = f"-c listen_addresses='' -k {root}{speed} -c max_connections=200"
    server = PgServer(root, bin_dir, prefix, options)
    try:
        initdb = [os.path.join(bin_dir, "initdb"), "-D", os.path.join(root, "data"), "-A", "trust", "-U", "postgres"]
        subprocess.run([*prefix, *initdb, "--no-sync", "-E", "UTF8"], check=True, capture_output=True)
        server.pg_ctl("start")
    except (OSError, subprocess.CalledProcessError) as exc:
        shutil.rmtree(root, ignore_errors=True)
        _unavailable(f"the server did not start: {exc}")
    try:
        yield server
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            server.pg_ctl("-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    with running_server() as server:
        yield server


_schemas = itertools.count()


@pytest.fixture
def pg_dsn(pg_server: PgServer) -> str:
    """A DSN whose connections work in a new, empty schema: one cluster per test."""
    schema = f"t{os.getpid()}_{next(_schemas)}"
    pg_server.psql(f"CREATE SCHEMA {schema}")
    return pg_server.dsn(schema)
