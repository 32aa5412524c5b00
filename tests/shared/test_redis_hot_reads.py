"""The cached preview's Redis reads (shared.redis_client.HotReads), against the real server:
the answers are the client's, and a connection the server dropped or a script it forgot never
fails a read that the client itself would have answered."""

from __future__ import annotations

import uuid

import redis
from redis.sentinel import SentinelConnectionPool

from shared.config import Settings
from shared.redis_client import HotReads


def _client(settings: Settings, name: str | None = None) -> redis.Redis:
    assert settings.REDIS_URL is not None
    return redis.Redis.from_url(settings.REDIS_URL, client_name=name)


def test_a_get_answers_what_the_client_answers(migrated: Settings) -> None:
    client = _client(migrated)
    key = f"test:hot:{uuid.uuid4().hex}"
    reads = HotReads(client)
    assert reads.get(key) is None
    client.set(key, b"note\x00body", ex=60)
    assert reads.get(key) == client.get(key) == b"note\x00body"


def test_a_connection_the_server_killed_falls_back_to_the_client(migrated: Settings) -> None:
    # Named, so that only this test's connections are killed on a server other tests share.
    name = f"hot-{uuid.uuid4().hex[:12]}"
    client = _client(migrated, name)
    key = f"test:hot:{uuid.uuid4().hex}"
    client.set(key, b"v1", ex=60)
    reads = HotReads(client)
    assert reads.get(key) == b"v1"
    assert reads.idle_connections == 1
    killer = _client(migrated)
    ours = [c["id"] for c in killer.client_list() if c.get("name") == name]
    assert ours, "the reads' connection carries the client's name"
    for client_id in ours:
        killer.execute_command("CLIENT", "KILL", "ID", client_id)
    # Answered by the client; the dead connection left the stack.
    assert reads.get(key) == b"v1"
    assert reads.idle_connections == 0
    # The next read opens a working one of its own again.
    assert reads.get(key) == b"v1"
    assert reads.idle_connections == 1


def test_a_script_the_server_forgot_is_loaded_again(migrated: Settings) -> None:
    client = _client(migrated)
    script = client.register_script("return {KEYS[1], ARGV[1]}")
    reads = HotReads(client)
    key = f"test:hot:{uuid.uuid4().hex}"
    assert reads.run_script(script, [key], ["a"]) == [key.encode(), b"a"]
    client.script_flush()
    assert reads.run_script(script, [key], ["b"]) == [key.encode(), b"b"]


def test_a_sentinel_client_reads_through_its_own_pool(migrated: Settings) -> None:
    """Under Sentinel the client's pool is what follows a failover: no stack of its own."""
    pool = SentinelConnectionPool("rfmaster", sentinel_manager=None)  # type: ignore[arg-type]
    reads = HotReads(redis.Redis(connection_pool=pool))
    assert reads.uses_own_connections is False
    assert HotReads(_client(migrated)).uses_own_connections is True


def test_a_forked_child_does_not_use_its_parents_connections(migrated: Settings) -> None:
    """gunicorn forks its workers: a child must open connections of its own, never share a
    socket with its parent."""
    import os

    client = _client(migrated)
    key = f"test:hot:{uuid.uuid4().hex}"
    client.set(key, b"v", ex=60)
    reads = HotReads(client)
    assert reads.get(key) == b"v"
    assert reads.idle_connections == 1
    pid = os.fork()
    if pid == 0:  # the child: report by exit code only
        os._exit(0 if reads.idle_connections == 0 else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # The parent keeps its connection.
    assert reads.idle_connections == 1
