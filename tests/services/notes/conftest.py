"""Fixtures for the notes service tests: a real Redis and a key prefix unique to each test.

These tests need no database: ``redis_client`` here overrides the root fixture of the same
name (which depends on the migrated database).
"""

from __future__ import annotations

from collections.abc import Iterator
from uuid import uuid4

import pytest
import redis

from tests.support.servers import TestServers


@pytest.fixture
def redis_client(test_servers: TestServers) -> Iterator[redis.Redis]:
    # The test process's own Redis db (see tests/conftest.py), without the database.
    client = redis.Redis.from_url(test_servers.redis_url)
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
