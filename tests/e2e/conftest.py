"""The product as users start it: the gateway under gunicorn (2 processes), two Celery worker
processes (threads pool), the stub Messages API in its own process."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
import requests

from shared.config import PROJECT_ROOT, Settings
from tests.support.stub_anthropic import StubAnthropicProcess
from tests.support.workers import (
    ARTIFACTS,
    CeleryWorker,
    child_env,
    clean_state,
    running_gateway,
)

NOTE_SYSTEM_MARKER = "You write resolution notes"


@dataclass
class Gateway:
    settings: Settings
    base_url: str
    stub: Any
    workers: list[CeleryWorker]
    http: requests.Session = field(default_factory=requests.Session)

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def note_calls(self) -> list[dict[str, Any]]:
        """The stub's recorded calls that were resolution-note generations."""
        calls = self.stub.client.calls()
        return [c for c in calls if NOTE_SYSTEM_MARKER in str(c["json"].get("system"))]


@pytest.fixture(scope="module")
def gateway_overrides() -> dict[str, Any]:
    return {}


@pytest.fixture(scope="module")
def gateway(migrated: Settings, gateway_overrides: dict[str, Any]) -> Iterator[Gateway]:
    (ARTIFACTS / "workers").mkdir(parents=True, exist_ok=True)
    with StubAnthropicProcess(cwd=str(PROJECT_ROOT)) as stub:
        values: dict[str, Any] = {
            "ANTHROPIC_API_KEY": "test-key",
            "ANTHROPIC_BASE_URL": stub.url,
            "LLM_MAX_RETRIES": 0,
            "LLM_TIMEOUT_S": 20.0,
            "NOTES_PREWARM": True,
            "NOTES_PREWARM_QUIET_S": 1.0,
            "NOTES_LOCK_TTL_S": 5.0,
        }
        settings = replace(migrated, **{**values, **gateway_overrides})
        env = child_env(settings)
        workers = [CeleryWorker(env, concurrency=4).start() for _ in range(2)]
        try:
            with running_gateway(env) as base:
                yield Gateway(settings, base, stub, workers)
        finally:
            for worker in workers:
                worker.stop()


@pytest.fixture(autouse=True)
def _clean_state(request: pytest.FixtureRequest) -> Iterator[None]:
    """Like the suite's clean-up, but keeps the broker's bindings for the module's workers."""
    gateway: Gateway | None = (
        request.getfixturevalue("gateway") if "gateway" in request.fixturenames else None
    )
    if gateway is not None:
        gateway.stub.client.reset()
    yield
    if gateway is not None:
        clean_state(gateway.settings, gateway.workers[0])
    elif "migrated" in request.fixturenames:
        # Every other e2e test gets the suite's usual clean-up.
        import redis
        from sqlalchemy import text

        from shared.db import db
        from shared.models import Base

        tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        with db.engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        servers = request.getfixturevalue("test_servers")
        redis.Redis.from_url(servers.redis_url).flushdb()
