"""With DATABASE_URL / REDIS_URL unset, the CLI starts the embedded PostgreSQL and Redis on
demand in its data directory (`make run` uses the same ones)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from shared.config import PROJECT_ROOT, Settings
from shared.embedded import DataDirInUse, redis_owner, start_redis, stop_redis
from tests.support.workers import free_port


def _cli(env: dict[str, str], *args: str) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_cli_starts_embedded_servers_on_demand(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(RF_DATA_DIR=str(tmp_path), EMBEDDED_REDIS_PORT=str(port), RF_ENV="dev")
    try:
        assert _cli(env, "migrate") == {"migrated": True}
        first = _cli(env, "create-account", "--name", "Embedded Co")
        # A second process finds the same data: the server kept it in the data directory.
        user = _cli(
            env,
            "create-user",
            "--account",
            str(first["id"]),
            "--email",
            "e@emb.test",
            "--role",
            "owner",
        )
        assert set(user) == {"id", "token"}
        assert (tmp_path / "pg" / "PG_VERSION").exists()
        # The command started the Redis, so it stopped it when it exited: nothing is left
        # behind to collide with a later `make run` on the folder.
        assert redis_owner(tmp_path) is None
        with pytest.raises(redis.ConnectionError):
            redis.Redis(port=port, socket_connect_timeout=1).ping()
    finally:
        stop_redis(tmp_path)


def test_the_cli_joins_a_running_redis_on_its_folder_and_leaves_it_running(
    tmp_path: Path, settings: Settings
) -> None:
    port = free_port()
    start_redis(tmp_path, port)
    try:
        owner = redis_owner(tmp_path)
        assert owner is not None and owner[1] == port
        # Redis is the subject here; the suite's PostgreSQL spares starting an embedded one.
        env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
        assert settings.DATABASE_URL is not None
        env.update(
            DATABASE_URL=settings.DATABASE_URL,
            RF_DATA_DIR=str(tmp_path),
            EMBEDDED_REDIS_PORT=str(port),
            RF_ENV="dev",
        )
        assert _cli(env, "migrate") == {"migrated": True}
        # A running stack's Redis: the command used it and left it alone.
        assert redis_owner(tmp_path) == owner
        assert redis.Redis(port=port).ping()
    finally:
        stop_redis(tmp_path)
    assert redis_owner(tmp_path) is None


def test_a_second_redis_on_the_same_folder_is_refused(tmp_path: Path, settings: Settings) -> None:
    port, other = free_port(), free_port()
    start_redis(tmp_path, port)
    try:
        with pytest.raises(DataDirInUse, match=f"port {port}") as refused:
            start_redis(tmp_path, other)
        assert f"EMBEDDED_REDIS_PORT={port}" in str(refused.value)
        with pytest.raises(redis.ConnectionError):
            redis.Redis(port=other, socket_connect_timeout=1).ping()
        # Through the CLI: one JSON error, exit code 2, naming the folder's server.
        env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
        assert settings.DATABASE_URL is not None
        env.update(
            DATABASE_URL=settings.DATABASE_URL,
            RF_DATA_DIR=str(tmp_path),
            EMBEDDED_REDIS_PORT=str(other),
            RF_ENV="dev",
        )
        result = subprocess.run(
            [sys.executable, "-m", "app.cli", "migrate"],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert result.returncode == 2, result.stderr
        assert "a second Redis on the same folder is refused" in json.loads(result.stderr)["error"]
    finally:
        stop_redis(tmp_path)
