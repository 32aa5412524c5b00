"""A loopback TCP proxy that counts round trips, to hold a request to its budget of trips to
PostgreSQL or Redis.

Both protocols are request/response: a client sends (in one or more segments), then waits for
the server's answer. So a round trip is a burst of client bytes that follows server bytes (or
opens the connection); the proxy counts those, and the bytes the server sent, over every
connection it carries. It forwards bytes unchanged and understands neither protocol, so what
passes through it is exactly what the product sends.
"""

from __future__ import annotations

import socket
import threading
from types import TracebackType


class RoundTripProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self.round_trips = 0
        self.server_bytes = 0
        self.connections = 0

    def __enter__(self) -> RoundTripProxy:
        threading.Thread(target=self._accept, name="rt-proxy-accept", daemon=True).start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closed.set()
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                try:
                    sock.close()
                except OSError:
                    pass

    def reset(self) -> None:
        with self._lock:
            self.round_trips = 0
            self.server_bytes = 0
            self.connections = 0

    def counts(self) -> tuple[int, int, int]:
        """(round trips, bytes the server sent, connections opened) since the last reset."""
        with self._lock:
            return self.round_trips, self.server_bytes, self.connections

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            state = {"last": "server"}
            with self._lock:
                self._sockets += [client, upstream]
                self.connections += 1
            for args in ((client, upstream, "client", state), (upstream, client, "server", state)):
                threading.Thread(target=self._pipe, args=args, daemon=True).start()

    def _pipe(
        self, src: socket.socket, dst: socket.socket, side: str, state: dict[str, str]
    ) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                # Counted before forwarding: the answer cannot overtake its own count.
                with self._lock:
                    if side == "client" and state["last"] != "client":
                        self.round_trips += 1
                    if side == "server":
                        self.server_bytes += len(data)
                    state["last"] = side
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
