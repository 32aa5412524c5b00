"""Test infrastructure: real PostgreSQL and Redis, one database and one Redis db per xdist
worker, every table emptied after each test.

Servers: TEST_DATABASE_URL / TEST_REDIS_URL when set; else the local servers on 127.0.0.1:5432
(database `test`) and 127.0.0.1:6379 when they answer; else the embedded ones, started in a
directory of the suite's own (never the `.data/` that `make run` keeps).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import redis
from sqlalchemy import text

from shared.config import PROJECT_ROOT, Settings

ARTIFACTS = PROJECT_ROOT / ".test-artifacts"
TEST_SECRET_KEY = "test-secret-key-0123456789abcdef0123456789"


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _admin_database_url() -> str:
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


def _redis_base_url() -> str:
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


def _claim_slot(redis_base: str) -> int:
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


def _release_slot(redis_base: str, slot: int) -> None:
    control = redis.Redis.from_url(f"{redis_base}/0")
    key = f"rf:test-slot:{slot}"
    if control.get(key) == str(os.getpid()).encode():
        control.delete(key)


def _with_database(admin_url: str, name: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


@dataclass(frozen=True)
class TestServers:
    database_url: str
    redis_url: str
    key_prefix: str


@pytest.fixture(scope="session")
def test_servers() -> Iterator[TestServers]:
    admin_url = _admin_database_url()
    redis_base = _redis_base_url()
    slot = _claim_slot(redis_base)
    name = f"rf_test_{slot}"
    conn = psycopg2.connect(admin_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    redis_url = f"{redis_base}/{slot}"
    redis.Redis.from_url(redis_url).flushdb()
    try:
        yield TestServers(
            database_url=_with_database(admin_url, name),
            redis_url=redis_url,
            key_prefix=f"rft{slot}",
        )
    finally:
        _release_slot(redis_base, slot)


@pytest.fixture(scope="session")
def settings(test_servers: TestServers) -> Settings:
    env = {
        "RF_ENV": "test",
        "DATABASE_URL": test_servers.database_url,
        "REDIS_URL": test_servers.redis_url,
        "SECRET_KEY": TEST_SECRET_KEY,
        "REDIS_KEY_PREFIX": test_servers.key_prefix,
        "ALLOW_PRIVATE_WEBHOOKS": "true",
        "RF_DATA_DIR": str(ARTIFACTS / "data"),
    }
    # The model under test: ANTHROPIC_MODEL when set (the suite runs against each supported
    # model family that way), else the product's default.
    if os.environ.get("ANTHROPIC_MODEL"):
        env["ANTHROPIC_MODEL"] = os.environ["ANTHROPIC_MODEL"]
    for key in ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"):
        os.environ.pop(key, None)
    # Child processes (CLI, workers, servers) inherit these.
    os.environ.update(env)
    return Settings.from_env(env)


@pytest.fixture(scope="session")
def migrated(settings: Settings) -> Settings:
    from app.cli import migrate
    from shared import runtime

    configured = runtime.configure(settings)
    migrate(configured)
    return configured


@pytest.fixture(autouse=True)
def _clean_state(request: pytest.FixtureRequest) -> Iterator[None]:
    """Empty every table and the worker's Redis db after each test that touched them."""
    yield
    if "migrated" not in request.fixturenames:
        return
    from shared.db import db
    from shared.models import Base

    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with db.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    servers: TestServers = request.getfixturevalue("test_servers")
    redis.Redis.from_url(servers.redis_url).flushdb()


@pytest.fixture
def redis_client(migrated: Settings) -> redis.Redis:
    assert migrated.REDIS_URL is not None
    return redis.Redis.from_url(migrated.REDIS_URL)


# ── Apps and clients ──────────────────────────────────────────────────────


@pytest.fixture(scope="session")
def scripts_app(migrated: Settings) -> Any:
    from services.scripts import create_app

    app = create_app(migrated)
    app.config["TESTING"] = True
    return app


@pytest.fixture
def client(scripts_app: Any) -> Any:
    return scripts_app.test_client()


# ── Data factories ────────────────────────────────────────────────────────


@dataclass(frozen=True)
class Actor:
    id: uuid.UUID
    account_id: uuid.UUID
    team_id: uuid.UUID | None
    email: str
    role: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture
def make_account(migrated: Settings) -> Callable[..., uuid.UUID]:
    from app.cli import create_account

    def factory(name: str | None = None) -> uuid.UUID:
        return uuid.UUID(create_account(name or f"Account {uuid.uuid4().hex[:6]}")["id"])

    return factory


@pytest.fixture
def make_user(migrated: Settings, make_account: Callable[..., uuid.UUID]) -> Callable[..., Actor]:
    from app.cli import create_user
    from shared.db import db
    from shared.models import User

    def factory(
        role: str = "engineer",
        *,
        account_id: uuid.UUID | None = None,
        team: str | None = "Helpdesk",
        super_admin: bool = False,
        password: str | None = None,
    ) -> Actor:
        account_id = account_id or make_account()
        email = f"{role}-{uuid.uuid4().hex[:8]}@example.test"
        created = create_user(
            migrated,
            account=str(account_id),
            email=email,
            role=role,
            team=team,
            super_admin=super_admin,
            password=password,
        )
        with db.session() as session:
            user = session.get(User, uuid.UUID(created["id"]))
            assert user is not None
            team_id = user.team_id
        return Actor(
            id=uuid.UUID(created["id"]),
            account_id=account_id,
            team_id=team_id,
            email=email,
            role=role,
            token=created["token"],
        )

    return factory


@pytest.fixture
def library(migrated: Settings) -> dict[str, Any]:
    from services.scripts.library import load_builtin_library
    from shared.db import db

    with db.transaction() as session:
        return load_builtin_library(session)


@pytest.fixture
def category_id(library: dict[str, Any]) -> uuid.UUID:
    from sqlalchemy import select

    from shared.db import db
    from shared.models import ScriptCategory

    with db.session() as session:
        return session.scalars(
            select(ScriptCategory.id).order_by(ScriptCategory.sort_order)
        ).first()


def settings_with(settings: Settings, **overrides: Any) -> Settings:
    return replace(settings, **overrides)


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
