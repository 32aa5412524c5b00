"""One loopback TCP relay and the two proxies the tests build on it.

`TcpRelay` accepts on a free loopback port, opens a connection to the target for each client and
pumps bytes both ways unchanged; a subclass watches each chunk (`on_chunk`) and may cut the
connection instead of forwarding it.

* `DroppingProxy` loses a response on purpose: the request reaches the real server, the server
  commits and answers, and the proxy closes the client's connection instead of forwarding the
  answer. This is the "committed, then the connection dropped" failure a ticketing adapter must
  survive without posting twice.

      with DroppingProxy("127.0.0.1", rt.port) as proxy:
          proxy.drop_next(1, methods=("POST",))
          ... point the adapter at proxy.base_url ...
          proxy.wait_dropped(1)

* `RoundTripProxy` counts round trips, to hold a request to its budget of trips to PostgreSQL
  or Redis. Both protocols are request/response: a client sends (in one or more segments), then
  waits for the server's answer. So a round trip is a burst of client bytes that follows server
  bytes (or opens the connection); the proxy counts those, and the bytes the server sent, over
  every connection it carries. It understands neither protocol, so what passes through it is
  exactly what the product sends.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, Self

Side = Literal["client", "server"]


@dataclass
class Connection:
    """One relayed connection: what a subclass remembers about it between chunks."""

    client: socket.socket
    upstream: socket.socket
    last: Side = "server"
    chunks_from_client: int = 0
    drop: bool = False


class TcpRelay:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.lock = threading.Condition()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, name="tcp-relay", daemon=True)

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._closed.set()
        # Closing a socket does not wake a thread blocked in its accept(); shutting it down
        # does (accept fails at once), so the join below does not sit out its timeout.
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        with self.lock:
            sockets = list(self._sockets)
        for sock in sockets:
            _close(sock)
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def on_connect(self, conn: Connection) -> None:
        """Called with the relay's lock held when a client's connection is relayed."""

    def on_chunk(self, conn: Connection, side: Side, data: bytes) -> bool:
        """Called with the relay's lock held before `data` from `side` is forwarded; False cuts
        the connection instead."""
        return True

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=60)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = Connection(client, upstream)
            with self.lock:
                self._sockets += [client, upstream]
                self.on_connect(conn)
            for args in ((conn, client, upstream, "client"), (conn, upstream, client, "server")):
                threading.Thread(target=self._pipe, args=args, daemon=True).start()

    def _pipe(self, conn: Connection, src: socket.socket, dst: socket.socket, side: Side) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                # Watched before forwarding: the answer cannot overtake what was counted.
                with self.lock:
                    forward = self.on_chunk(conn, side, data)
                    conn.last = side
                    if side == "client":
                        conn.chunks_from_client += 1
                if not forward:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                _close(sock)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class DroppingProxy(TcpRelay):
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        super().__init__(upstream_host, upstream_port)
        self._drops = 0
        self._methods: tuple[bytes, ...] = ()
        self.dropped = 0
        self.requests: list[bytes] = []  # the first line of every connection's first request

    def drop_next(self, count: int, *, methods: tuple[str, ...] = ("POST", "PUT", "PATCH")) -> None:
        """Lose the answers to the next ``count`` requests made with one of ``methods``."""
        with self.lock:
            self._drops = count
            self._methods = tuple(m.encode() + b" " for m in methods)

    def wait_dropped(self, count: int, timeout_s: float = 60.0) -> None:
        with self.lock:
            if not self.lock.wait_for(lambda: self.dropped >= count, timeout_s):
                raise AssertionError(f"proxy dropped {self.dropped} answers, expected {count}")

    def on_chunk(self, conn: Connection, side: Side, data: bytes) -> bool:
        if side == "client":
            if conn.chunks_from_client == 0:
                self.requests.append(data.split(b"\r\n", 1)[0])
                if self._drops > 0 and data.startswith(self._methods):
                    self._drops -= 1
                    conn.drop = True
            return True
        if conn.drop:
            # The server has answered, so it has done the work: lose the answer.
            self.dropped += 1
            self.lock.notify_all()
            return False
        return True


class RoundTripProxy(TcpRelay):
    def __init__(self, target_host: str, target_port: int) -> None:
        super().__init__(target_host, target_port)
        self.round_trips = 0
        self.server_bytes = 0
        self.connections = 0

    def reset(self) -> None:
        with self.lock:
            self.round_trips = 0
            self.server_bytes = 0
            self.connections = 0

    def counts(self) -> tuple[int, int, int]:
        """(round trips, bytes the server sent, connections opened) since the last reset."""
        with self.lock:
            return self.round_trips, self.server_bytes, self.connections

    def on_connect(self, conn: Connection) -> None:
        self.connections += 1

    def on_chunk(self, conn: Connection, side: Side, data: bytes) -> bool:
        if side == "client":
            if conn.last != "client":
                self.round_trips += 1
        else:
            self.server_bytes += len(data)
        return True
