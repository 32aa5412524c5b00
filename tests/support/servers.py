"""The test servers: real PostgreSQL and Redis, one database and one Redis db per test process.

TEST_DATABASE_URL / TEST_REDIS_URL when set; else the local servers on 127.0.0.1:5432 (database
`test`) and 127.0.0.1:6379 when they answer; else the embedded ones, started in a directory of
the suite's own (never the `.data/` that `make run` keeps).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, replace
from typing import Any

import psycopg2
import redis

from shared.config import PROJECT_ROOT, Settings

ARTIFACTS = PROJECT_ROOT / ".test-artifacts"
TEST_SECRET_KEY = "test-secret-key-0123456789abcdef0123456789"


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def admin_database_url() -> str:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        return url
    if _port_open("127.0.0.1", 5432):
        try:
            psycopg2.connect("postgresql://postgres@127.0.0.1:5432/test", connect_timeout=2).close()
            return "postgresql://postgres@127.0.0.1:5432/test"
        except psycopg2.OperationalError:
            pass
    from shared.embedded import start_postgres

    return start_postgres(ARTIFACTS, database="test")


def redis_base_url() -> str:
    url = os.environ.get("TEST_REDIS_URL")
    if url:
        return url
    if _port_open("127.0.0.1", 6379):
        return "redis://127.0.0.1:6379"
    from shared.embedded import start_redis

    return start_redis(ARTIFACTS, 16379).rsplit("/", 1)[0]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim_slot(redis_base: str) -> int:
    """An exclusive slot 1..15 for this test process: its Redis db number and its database name.

    Slots are claimed in Redis db 0 with SET NX, so test runs that overlap on one machine
    (xdist workers, two terminals) never share a database or flush each other's Redis; a slot
    whose holder process has died is taken over.
    """
    control = redis.Redis.from_url(f"{redis_base}/0")
    me = str(os.getpid())
    for slot in range(1, 16):
        key = f"rf:test-slot:{slot}"
        if control.set(key, me, nx=True, ex=6 * 3600):
            return slot
        holder = control.get(key)
        if holder is not None and not _pid_alive(int(holder)):
            with control.pipeline() as pipe:
                try:
                    pipe.watch(key)
                    if pipe.get(key) == holder:
                        pipe.multi()
                        pipe.set(key, me, ex=6 * 3600)
                        pipe.execute()
                        return slot
                except redis.WatchError:
                    continue
    raise RuntimeError("all 15 test slots are taken by live test processes")


def release_slot(redis_base: str, slot: int) -> None:
    control = redis.Redis.from_url(f"{redis_base}/0")
    key = f"rf:test-slot:{slot}"
    if control.get(key) == str(os.getpid()).encode():
        control.delete(key)


def with_database(admin_url: str, name: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


@dataclass(frozen=True)
class TestServers:
    database_url: str
    redis_url: str
    key_prefix: str


def settings_with(settings: Settings, **overrides: Any) -> Settings:
    return replace(settings, **overrides)
