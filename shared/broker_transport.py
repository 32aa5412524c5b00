"""kombu's Redis transports (single node and Sentinel) with one Redis client per channel.

kombu's Redis channel builds a new `redis.Redis` object for every command it sends outside its
event loop's own connections: the unacked-message bookkeeping of every delivery (`ZADD` +
`HSET` in a pipeline), every ack (`ZREM` + `HDEL`), every publish (`LPUSH`). With redis-py 8
that constructor is the expensive part (it builds the client's table of response callbacks),
and a worker's consumer thread runs it twice per task, on the thread every task's delivery
and ack go through: profiled under load, it was a sixth of the consumer's CPU.

A `redis.Redis` is safe to share between threads (each command takes a connection from the
channel's pool), so each channel here keeps the one it built and rebuilds it only when the
channel's pool changes (kombu drops the pool when the channel closes or reconnects). The
commands, keys and pool are kombu's own; only the client object is kept.

Named in the Celery configuration as `broker_transport` (:func:`transport_for`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis
from kombu.transport import redis as kombu_redis

from shared.redis_client import is_sentinel_url


class _KeptClient:
    """The client-keeping part, for both channel classes."""

    _rf_client: redis.Redis | None = None

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        if client:
            yield client
            return
        pool = self.pool  # type: ignore[attr-defined]  # kombu's Channel.pool
        kept = self._rf_client
        if kept is None or kept.connection_pool is not pool:
            kept = self._create_client()  # type: ignore[attr-defined]  # kombu's Channel
            self._rf_client = kept
        yield kept


class Channel(_KeptClient, kombu_redis.Channel):  # type: ignore[misc]  # kombu is untyped
    pass


class SentinelChannel(_KeptClient, kombu_redis.SentinelChannel):  # type: ignore[misc]
    pass


class Transport(kombu_redis.Transport):  # type: ignore[misc]
    Channel = Channel


class SentinelTransport(kombu_redis.SentinelTransport):  # type: ignore[misc]
    Channel = SentinelChannel


def transport_for(url: str) -> str | None:
    """The `broker_transport` setting for a broker URL: these transports for redis:// and
    sentinel://; None (kombu's own, from the URL's scheme) for anything else, rediss://
    included, whose TLS defaults kombu derives from the scheme's name."""
    if is_sentinel_url(url):
        return f"{__name__}:SentinelTransport"
    if url.strip().startswith("redis://"):
        return f"{__name__}:Transport"
    return None
