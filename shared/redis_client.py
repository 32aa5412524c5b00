"""Redis connections, one pool per URL per process, for a single node or a Sentinel group.

`REDIS_URL` and `CACHE_REDIS_URL` take either form:

    redis://[:password@]host:port/db
    sentinel://[:password@]host1:26379;sentinel://host2:26379;sentinel://host3:26379/db?master_name=NAME

With Sentinel addresses, the locks, the pub/sub wake-ups and the cache use redis-py's `Sentinel`
(the client asks the sentinels for the current primary and follows a failover), and the Celery
broker uses kombu's `sentinel://` transport with the same master name (:func:`broker_options`).
The password, when given, is the data nodes' (`requirepass`); sentinels are reached without one.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError
from redis.sentinel import Sentinel, SentinelConnectionPool

_clients: dict[str, redis.Redis] = {}
_lock = threading.Lock()

SOCKET_CONNECT_TIMEOUT_S = 2


class RedisURLError(ValueError):
    """A Redis URL the product cannot use."""


@dataclass(frozen=True)
class SentinelTarget:
    sentinels: tuple[tuple[str, int], ...]
    master_name: str
    db: int
    password: str | None

    def broker_url(self) -> str:
        """The form kombu's sentinel transport reads (the master name goes in its options)."""
        auth = f":{self.password}@" if self.password else ""
        hosts = ";".join(f"sentinel://{auth}{host}:{port}" for host, port in self.sentinels)
        return f"{hosts}/{self.db}"


def is_sentinel_url(url: str) -> bool:
    return url.strip().startswith("sentinel://")


def parse_sentinel_url(url: str) -> SentinelTarget:
    """`sentinel://h1:p1;sentinel://h2:p2/db?master_name=NAME` -> its parts."""
    sentinels: list[tuple[str, int]] = []
    master_name: str | None = None
    db = 0
    password: str | None = None
    for part in url.strip().split(";"):
        if not part:
            continue
        split = urlsplit(part if "://" in part else f"sentinel://{part}")
        if split.scheme != "sentinel":
            raise RedisURLError(f"every address of a Sentinel URL is sentinel://, got {part!r}")
        if not split.hostname:
            raise RedisURLError(f"a sentinel address needs a host, got {part!r}")
        sentinels.append((split.hostname, split.port or 26379))
        password = split.password or password
        if split.path.strip("/"):
            try:
                db = int(split.path.strip("/"))
            except ValueError as exc:
                raise RedisURLError(f"the database of {part!r} must be a number") from exc
        names = parse_qs(split.query).get("master_name")
        if names:
            master_name = names[0]
    if not sentinels:
        raise RedisURLError("a Sentinel URL needs at least one sentinel://host:port")
    if not master_name:
        raise RedisURLError(
            "a Sentinel URL needs the master name: sentinel://host:26379;...;"
            "sentinel://host:26379/0?master_name=NAME"
        )
    return SentinelTarget(tuple(sentinels), master_name, db, password)


def broker_options(url: str) -> tuple[str, dict[str, Any]]:
    """The broker URL and the transport options kombu needs for `url` (either form)."""
    if not is_sentinel_url(url):
        return url, {}
    target = parse_sentinel_url(url)
    return target.broker_url(), {
        "master_name": target.master_name,
        "sentinel_kwargs": {"socket_connect_timeout": SOCKET_CONNECT_TIMEOUT_S},
    }


def _connect(url: str) -> redis.Redis:
    options: dict[str, Any] = {
        "socket_connect_timeout": SOCKET_CONNECT_TIMEOUT_S,
        "socket_timeout": None,
        "health_check_interval": 30,
    }
    if not is_sentinel_url(url):
        return redis.Redis.from_url(url, **options)
    target = parse_sentinel_url(url)
    sentinel = Sentinel(
        list(target.sentinels),
        sentinel_kwargs={"socket_connect_timeout": SOCKET_CONNECT_TIMEOUT_S, "socket_timeout": 2},
    )
    master: redis.Redis = sentinel.master_for(
        target.master_name, db=target.db, password=target.password, **options
    )
    return master


def get_redis(url: str) -> redis.Redis:
    with _lock:
        client = _clients.get(url)
        if client is None:
            client = _connect(url)
            _clients[url] = client
        return client


def reset_clients() -> None:
    """Forget pools (after fork, or in tests that restart Redis)."""
    with _lock:
        for client in _clients.values():
            client.close()
        _clients.clear()


class HotReads:
    """One-command reads for the request the product serves most (the cached preview), on
    connections of the client's own class and settings kept on a stack of their own.

    Why: redis-py's command path (its pool's checkout with a pid check, a lock, connection
    metrics and a deprecated-argument inspection, then the retry wrapper) cost as much CPU as
    the round trip itself. Here a command takes a connection off the stack (a deque: its
    pop and append are atomic, so no lock), sends, reads and puts it back; the stack holds at
    most as many connections as the process ran reads at once. The connection's own health
    check (the client's `health_check_interval`) still runs before a command.

    Any connection error drops that connection and the command goes through the client, with
    its retries and its errors (the API's 503). A Sentinel client reads through the client
    alone: its pool is what follows a failover."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        pool = client.connection_pool
        self.uses_own_connections = not isinstance(pool, SentinelConnectionPool)
        self._connection_class = pool.connection_class
        self._connection_kwargs = dict(pool.connection_kwargs)
        self._idle: deque[Any] = deque()
        _every_hot_reads.add(self)

    @property
    def idle_connections(self) -> int:
        return len(self._idle)

    def get(self, key: str) -> bytes | None:
        result: bytes | None = self._execute(("GET", key), lambda: self.client.get(key))
        return result

    def run_script(self, script: Script, keys: Sequence[str], args: Sequence[str]) -> Any:
        """`script(keys, args)` as one EVALSHA; a server that does not hold the script yet
        (restarted, flushed) gets it through the client's Script, which loads it."""
        try:
            return self._execute(
                ("EVALSHA", script.sha, len(keys), *keys, *args),
                lambda: script(keys=list(keys), args=list(args)),
            )
        except NoScriptError:
            return script(keys=list(keys), args=list(args))

    def _execute(self, command: tuple[Any, ...], through_client: Callable[[], Any]) -> Any:
        if not self.uses_own_connections:
            return through_client()
        try:
            connection = self._idle.pop()
        except IndexError:
            connection = self._connection_class(**self._connection_kwargs)
        try:
            connection.send_command(*command)
            response = connection.read_response()
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            connection.disconnect()
            return through_client()
        except redis.ResponseError:
            # An answer (NOSCRIPT, WRONGTYPE): the connection is in step, keep it.
            self._idle.append(connection)
            raise
        except BaseException:
            # Interrupted halfway: the reply may still be unread, so the connection goes.
            connection.disconnect()
            raise
        self._idle.append(connection)
        return response


# Every HotReads of the process, so that a forked child drops its parent's connections.
_every_hot_reads: weakref.WeakSet[HotReads] = weakref.WeakSet()


def _forget_parent_connections() -> None:
    # A forked child never uses its parent's sockets (redis-py's pool does the same); the
    # parent keeps them open, so they are dropped here, not closed.
    for reads in list(_every_hot_reads):
        reads._idle = deque()


os.register_at_fork(after_in_child=_forget_parent_connections)
