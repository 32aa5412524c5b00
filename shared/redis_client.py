"""Redis connections, one pool per URL per process."""

from __future__ import annotations

import threading

import redis

_clients: dict[str, redis.Redis] = {}
_lock = threading.Lock()


def get_redis(url: str) -> redis.Redis:
    with _lock:
        client = _clients.get(url)
        if client is None:
            client = redis.Redis.from_url(
                url, socket_connect_timeout=2, socket_timeout=None, health_check_interval=30
            )
            _clients[url] = client
        return client


def reset_clients() -> None:
    """Forget pools (after fork, or in tests that restart Redis)."""
    with _lock:
        for client in _clients.values():
            client.close()
        _clients.clear()
