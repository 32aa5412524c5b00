"""Fixtures for the notes service tests: a real Redis and a key prefix unique to each test.

These tests need no database: ``redis_client`` here overrides the root fixture of the same
name (which depends on the migrated database).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from uuid import uuid4

import pytest
import redis


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15"))
    try:
        client.ping()
    except redis.ConnectionError as exc:  # pragma: no cover - environment problem
        pytest.fail(f"Redis is not reachable for the notes tests: {exc}")
    yield client
    client.close()


@pytest.fixture
def redis_prefix(redis_client: redis.Redis) -> Iterator[str]:
    """A key prefix unique to the test; every key under it is deleted afterwards."""
    prefix = f"t{uuid4().hex[:10]}"
    yield prefix
    keys = list(redis_client.scan_iter(match=f"{prefix}:*", count=500))
    if keys:
        redis_client.delete(*keys)
