"""Redis servers of a test's own (never the machine's 127.0.0.1:6379), on free loopback ports:
one node to kill and restart, or a Sentinel group (a primary, a replica, three sentinels) to
fail over. All run the `redis-server` binary the embedded Redis uses."""

from __future__ import annotations

import subprocess
from pathlib import Path

import redis
from redis.sentinel import MasterNotFoundError, Sentinel

from shared.embedded import redis_server_binary
from tests.support.workers import free_port, wait_until

MASTER_NAME = "rfmaster"


class RedisServer:
    """One redis-server with the deploy's persistence (AOF, fsync every second)."""

    def __init__(self, directory: Path, *extra: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.directory = directory
        self.extra = list(extra)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_connect_timeout=0.5, socket_timeout=2)

    def start(self) -> RedisServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                redis_server_binary(),
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(self.directory),
                "--appendonly",
                "yes",
                "--save",
                "",
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def up() -> bool:
            try:
                return bool(self.client().ping())
            except redis.RedisError:
                return False

        try:
            wait_until(up, 60, message=f"redis-server on {self.port}")
        except BaseException:
            self.kill()
            raise
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown, no last fsync."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class SentinelGroup:
    """A primary, a replica and three sentinels (quorum 2) that fail over within seconds."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.primary = RedisServer(directory / "primary")
        self.replica = RedisServer(
            directory / "replica", "--replicaof", "127.0.0.1", str(self.primary.port)
        )
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.sentinels: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        hosts = ";".join(f"sentinel://127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"{hosts}/0?master_name={MASTER_NAME}"

    def _sentinel(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_connect_timeout=0.5, socket_timeout=2)

    def start(self) -> SentinelGroup:
        try:
            return self._start()
        except BaseException:
            self.stop()  # never leave a half-started group behind
            raise

    def _start(self) -> SentinelGroup:
        self.primary.start()
        self.replica.start()
        wait_until(
            lambda: self.replica.client().info("replication").get("master_link_status") == "up",
            60,
            message="the replica to sync",
        )
        for port in self.sentinel_ports:
            conf = self.directory / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.directory}\n"
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.primary.port} 2\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} 1000\n"
                f"sentinel failover-timeout {MASTER_NAME} 10000\n"
                f"sentinel parallel-syncs {MASTER_NAME} 1\n"
            )
            self.sentinels.append(
                subprocess.Popen(
                    [redis_server_binary(), str(conf), "--sentinel"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )

        def ready() -> bool:
            try:
                for port in self.sentinel_ports:
                    client = self._sentinel(port)
                    info = client.sentinel_master(MASTER_NAME)
                    if int(info["num-slaves"]) < 1 or int(info["num-other-sentinels"]) < 2:
                        return False
                return True
            except (redis.RedisError, KeyError):
                return False

        wait_until(ready, 60, interval_s=0.2, message="the sentinels to see each other")
        return self

    def master_port(self) -> int | None:
        """The master's port as a client finds it: from `SENTINEL MASTERS`, a master not flagged
        down (redis-py's discovery). `get-master-addr-by-name` names the promoted replica while
        the failover is still reconfiguring, before the sentinels switch their master; a client
        asked then finds no master at all."""
        sentinel = Sentinel(
            [("127.0.0.1", port) for port in self.sentinel_ports],
            sentinel_kwargs={"socket_connect_timeout": 0.5, "socket_timeout": 2},
        )
        try:
            return int(sentinel.discover_master(MASTER_NAME)[1])
        except (redis.RedisError, MasterNotFoundError):
            return None

    def stop(self) -> None:
        for proc in self.sentinels:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.replica.kill()
        self.primary.kill()
