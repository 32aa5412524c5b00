"""kombu's Redis transports (single node and Sentinel) with one Redis client per channel.

kombu's Redis channel builds a new `redis.Redis` object for every command it sends outside its
event loop's own connections: the unacked-message bookkeeping of every delivery (`ZADD` +
`HSET` in a pipeline), every ack (`ZREM` + `HDEL`), every publish (`LPUSH`). With redis-py 8
that constructor is the expensive part (it builds the client's table of response callbacks),
and a worker's consumer thread runs it twice per task, on the thread every task's delivery
and ack go through: profiled under load, it was a sixth of the consumer's CPU. The
bookkeeping itself (a MULTI/EXEC pipeline of two writes per delivery and per ack) is one Lua
script each here (:class:`QoS`).

A `redis.Redis` is safe to share between threads (each command takes a connection from the
channel's pool), so each channel here keeps the one it built and rebuilds it only when the
channel's pool changes (kombu drops the pool when the channel closes or reconnects). The
commands, keys and pool are kombu's own; only the client object is kept.

Named in the Celery configuration as `broker_transport` (:func:`transport_for`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from time import time
from typing import Any

import redis
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.json import dumps
from redis.commands.core import Script

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


# kombu's bookkeeping of an unacknowledged message, as one script each instead of a MULTI/EXEC
# pipeline of four commands: the same keys, values and scores (what kombu's restore of
# unacknowledged messages reads back), written as atomically, in one command and one reply.
_APPEND = """
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return 1
"""
_ACK = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
"""
_scripts: dict[str, Script] = {}


def _script(client: redis.Redis, source: str) -> Script:
    script = _scripts.get(source)
    if script is None:
        script = _scripts[source] = client.register_script(source)
    return script


class QoS(kombu_redis.QoS):
    """kombu's Redis QoS with a delivery's and an ack's bookkeeping in one script each. A
    channel with a global key prefix keeps kombu's own (its client prefixes pipelined keys)."""

    def append(self, message: Any, delivery_tag: str) -> None:
        channel = self.channel
        if channel.global_keyprefix:
            kombu_redis.QoS.append(self, message, delivery_tag)
            return
        delivery = message.delivery_info
        raw = dumps([message._raw, delivery["exchange"], delivery["routing_key"]])
        with channel.conn_or_acquire() as client:
            _script(client, _APPEND)(
                keys=[self.unacked_index_key, self.unacked_key],
                args=[time(), delivery_tag, raw],
                client=client,
            )
        virtual.QoS.append(self, message, delivery_tag)

    def ack(self, delivery_tag: str) -> None:
        channel = self.channel
        if channel.global_keyprefix:
            kombu_redis.QoS.ack(self, delivery_tag)
            return
        with channel.conn_or_acquire() as client:
            _script(client, _ACK)(
                keys=[self.unacked_index_key, self.unacked_key], args=[delivery_tag], client=client
            )
        virtual.QoS.ack(self, delivery_tag)


class Channel(_KeptClient, kombu_redis.Channel):
    QoS = QoS


class SentinelChannel(_KeptClient, kombu_redis.SentinelChannel):
    QoS = QoS


class Transport(kombu_redis.Transport):
    Channel = Channel


class SentinelTransport(kombu_redis.SentinelTransport):
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
