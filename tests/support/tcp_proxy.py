"""A loopback TCP proxy that can lose a response on purpose: the request reaches the real
server, the server commits and answers, and the proxy closes the client's connection instead of
forwarding the answer. This is the "committed, then the connection dropped" failure a ticketing
adapter must survive without posting twice.

    with DroppingProxy("127.0.0.1", rt.port) as proxy:
        proxy.drop_next(1, methods=("POST",))
        ... point the adapter at proxy.base_url ...
        proxy.wait_dropped(1)
"""

from __future__ import annotations

import socket
import threading
from types import TracebackType


class DroppingProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._cond = threading.Condition()
        self._drops = 0
        self._methods: tuple[bytes, ...] = ()
        self.dropped = 0
        self.requests: list[bytes] = []  # the first line of every request seen
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def drop_next(self, count: int, *, methods: tuple[str, ...] = ("POST", "PUT", "PATCH")) -> None:
        """Lose the answers to the next ``count`` requests made with one of ``methods``."""
        with self._cond:
            self._drops = count
            self._methods = tuple(m.encode() + b" " for m in methods)

    def wait_dropped(self, count: int, timeout_s: float = 60.0) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: self.dropped >= count, timeout_s):
                raise AssertionError(f"proxy dropped {self.dropped} answers, expected {count}")

    def start(self) -> DroppingProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._listener.close()
        self._thread.join(timeout=5)

    def __enter__(self) -> DroppingProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals ---------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.upstream, timeout=60)
        except OSError:
            client.close()
            return
        first = client.recv(65536)
        drop = False
        with self._cond:
            self.requests.append(first.split(b"\r\n", 1)[0])
            if self._drops > 0 and first.startswith(self._methods):
                self._drops -= 1
                drop = True
        upstream.sendall(first)
        pump = threading.Thread(target=self._pump, args=(client, upstream), daemon=True)
        pump.start()
        try:
            while True:
                chunk = upstream.recv(65536)
                if not chunk:
                    break
                if drop:
                    # The server has answered, so it has done the work: lose the answer.
                    with self._cond:
                        self.dropped += 1
                        self._cond.notify_all()
                    break
                client.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (client, upstream):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                chunk = source.recv(65536)
                if not chunk:
                    break
                sink.sendall(chunk)
        except OSError:
            pass
