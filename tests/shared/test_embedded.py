"""With DATABASE_URL / REDIS_URL unset, the CLI starts the embedded PostgreSQL and Redis on
demand in its data directory (`make run` uses the same ones)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import redis

from shared.config import PROJECT_ROOT
from shared.embedded import stop_redis
from tests.support.workers import free_port


def _cli(env: dict[str, str], *args: str) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-m", "shared.cli", *args],
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
        assert redis.Redis(port=port).ping()
        assert (tmp_path / "redis" / "redis.pid").exists()
    finally:
        stop_redis(tmp_path)
