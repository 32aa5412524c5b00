"""The broker transport the workers use (shared.broker_transport), against the real Redis: the
unacknowledged-message bookkeeping its scripts write is what kombu's own restore reads back,
an ack removes it, and a channel keeps one client."""

from __future__ import annotations

import json
import uuid
from typing import Any

import redis
from kombu import Connection, Exchange, Queue

from shared.broker_transport import Channel, SentinelChannel, transport_for
from shared.config import Settings


def _connection(url: str, tag: str) -> Connection:
    options = {
        "unacked_key": f"rf-test-{tag}-unacked",
        "unacked_index_key": f"rf-test-{tag}-unacked_index",
        "unacked_mutex_key": f"rf-test-{tag}-unacked_mutex",
    }
    return Connection(url, transport=transport_for(url), transport_options=options)


def test_transport_for_each_url_form() -> None:
    assert transport_for("redis://127.0.0.1:6379/0") == "shared.broker_transport:Transport"
    assert (
        transport_for("sentinel://h1:26379;sentinel://h2:26379/0")
        == "shared.broker_transport:SentinelTransport"
    )
    # kombu's own, which derives its TLS defaults from the scheme.
    assert transport_for("rediss://127.0.0.1:6380/0") is None
    assert SentinelChannel.QoS is Channel.QoS


def test_deliveries_acks_and_restore_keep_kombus_bookkeeping(migrated: Settings) -> None:
    assert migrated.REDIS_URL is not None
    tag = uuid.uuid4().hex[:10]
    queue = Queue(f"rf-test-{tag}", Exchange(f"rf-test-{tag}", type="direct"), f"rf-test-{tag}")
    client = redis.Redis.from_url(migrated.REDIS_URL)
    conn = _connection(migrated.REDIS_URL, tag)
    channel: Any = conn.default_channel
    unacked, index = channel.unacked_key, channel.unacked_index_key
    try:
        assert isinstance(channel, Channel)
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
            assert first is second
        with conn.Producer() as producer:
            for n in range(3):
                producer.publish(
                    {"n": n},
                    exchange=queue.exchange,
                    routing_key=queue.routing_key,
                    declare=[queue],
                )
        got: list[Any] = []
        with conn.Consumer(
            queue, callbacks=[lambda _body, message: got.append(message)], prefetch_count=3
        ):
            while len(got) < 3:
                conn.drain_events(timeout=10)
        assert [m.payload for m in got] == [{"n": 0}, {"n": 1}, {"n": 2}]
        tags = {m.delivery_tag for m in got}
        assert {t.decode() for t in client.hkeys(unacked)} == tags
        assert {t.decode() for t in client.zrange(index, 0, -1)} == tags
        raw = client.hget(unacked, got[0].delivery_tag)
        assert raw is not None
        message, exchange, routing_key = json.loads(raw)
        assert (exchange, routing_key) == (queue.exchange.name, queue.routing_key)
        assert message["properties"]["delivery_tag"] == got[0].delivery_tag

        got[0].ack()
        assert client.hlen(unacked) == 2 and client.zcard(index) == 2
        assert not client.hexists(unacked, got[0].delivery_tag)

        # What a worker's shutdown (or a lost worker's visibility timeout) does: kombu's
        # restore reads the scripts' entries and puts the messages back on the queue.
        channel.qos.restore_unacked()
        assert client.hlen(unacked) == 0 and client.zcard(index) == 0
        assert client.llen(queue.name) == 2
    finally:
        conn.release()
        client.delete(queue.name, unacked, index, f"_kombu.binding.{queue.exchange.name}")
        client.close()
