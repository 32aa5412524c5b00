"""A local webhook receiver: records every delivery, verifies its Standard Webhooks signature,
and answers from a programmable sequence of statuses.

    with WebhookReceiver(secret, statuses=[500, 500, 500, 200]) as receiver:
        ... receiver.url ...
        receiver.wait_for(4, timeout_s=20)

A status of ``"hang"`` holds the request open (a timeout for the sender) until
:meth:`release_hangs` or the receiver stops, then answers 200 to nobody. After the sequence is
used up every request gets ``default_status``.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from standardwebhooks import Webhook

Status = int | str


@dataclass(frozen=True)
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    answered: Status

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def webhook_id(self) -> str | None:
        return self.headers.get("webhook-id")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    receiver: WebhookReceiver


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # stdlib signature
        pass

    def do_POST(self) -> None:  # stdlib naming
        receiver = self.server.receiver
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {key.lower(): value for key, value in self.headers.items()}
        status = receiver._next_status(body)
        receiver._record(Delivery(self.path, headers, body, receiver.verify(body, headers), status))
        if status == "hang":
            receiver._hang.wait(receiver.hang_max_s)
            status = 200
        try:
            code = int(status)
            self.send_response(code)
            if code == 429 and receiver.retry_after is not None:
                self.send_header("Retry-After", str(receiver.retry_after))
            payload = b'{"ok": true}' if 200 <= code < 300 else b'{"error": "test"}'
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the sender gave up (timed out or was killed)


class WebhookReceiver:
    def __init__(
        self,
        secret: str | None = None,
        *,
        statuses: Iterable[Status] = (),
        default_status: int = 200,
        retry_after: int | None = None,
        hang_max_s: float = 60.0,
    ) -> None:
        self.secret = secret
        self.default_status = default_status
        self.retry_after = retry_after
        self.hang_max_s = hang_max_s
        self._statuses: deque[Status] = deque(statuses)
        self._hang_sessions: set[str] = set()
        self._deliveries: list[Delivery] = []
        self._cond = threading.Condition()
        self._hang = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.receiver = self
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> WebhookReceiver:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._hang.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/hooks/tickets"

    # -- programming -----------------------------------------------------------------------

    def program(self, statuses: Iterable[Status]) -> None:
        with self._cond:
            self._statuses = deque(statuses)

    def release_hangs(self) -> None:
        self._hang.set()

    def hang_first_delivery_of(self, session_id: str) -> None:
        """The next delivery of that session's note hangs (whatever the sequence says); the
        ones after are answered as usual."""
        with self._cond:
            self._hang_sessions.add(str(session_id))

    def deliveries_of(self, session_id: str) -> list[Delivery]:
        return [d for d in self.deliveries if str(d.json.get("session_id")) == str(session_id)]

    # -- observing -------------------------------------------------------------------------

    @property
    def deliveries(self) -> list[Delivery]:
        with self._cond:
            return list(self._deliveries)

    def wait_for(self, count: int, timeout_s: float = 60.0) -> list[Delivery]:
        """Block until at least `count` requests arrived (woken by each arrival)."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._deliveries) >= count, timeout_s):
                raise AssertionError(
                    f"receiver got {len(self._deliveries)} deliveries, expected {count}"
                )
            return list(self._deliveries)

    def verify(self, body: bytes, headers: dict[str, str]) -> bool:
        if self.secret is None:
            return False
        try:
            Webhook(self.secret).verify(body.decode("utf-8"), headers)
        except Exception:  # noqa: BLE001 - any verification failure is "not verified"
            return False
        return True

    # -- internals -------------------------------------------------------------------------

    def _next_status(self, body: bytes) -> Status:
        with self._cond:
            if self._hang_sessions:
                try:
                    session_id = str(json.loads(body).get("session_id"))
                except (ValueError, AttributeError):
                    session_id = ""
                if session_id in self._hang_sessions:
                    self._hang_sessions.discard(session_id)
                    return "hang"
            return self._statuses.popleft() if self._statuses else self.default_status

    def _record(self, delivery: Delivery) -> None:
        with self._cond:
            self._deliveries.append(delivery)
            self._cond.notify_all()
