"""A local stub of the Anthropic Messages API, for tests and benchmarks.

The stub speaks enough of ``POST /v1/messages`` for the official ``anthropic`` SDK to run
unmodified against it (point ``base_url`` at :attr:`StubAnthropic.url`):

* non-streaming requests get a JSON ``Message`` object;
* ``"stream": true`` requests get the Server-Sent Events sequence of the real API
  (``message_start``, ``content_block_start``, ``ping``, several ``content_block_delta``,
  ``content_block_stop``, ``message_delta``, ``message_stop``);
* ``usage`` is estimated from the request size (about four characters a token), and prompt
  caching is simulated: when the system prompt carries a block with ``cache_control``, the
  first request with that exact cached prefix (per model) reports
  ``cache_creation_input_tokens``, later ones ``cache_read_input_tokens``;
* an API key is required (``x-api-key``, or ``Authorization: Bearer`` as the SDK sends it),
  otherwise the real API's 401 ``authentication_error`` body comes back.

Behaviour is programmable: a ``responder`` callable decides the answer text (the default one
echoes the last user message, and writes a four-section resolution note when the system
prompt asks for ``## Problem``), fixed answers can be queued, and a FIFO of scripted
failures is consumed one per request (:meth:`StubAnthropic.fail_next`,
:meth:`StubAnthropic.delay_next`, :meth:`StubAnthropic.stream_error_next`,
:meth:`StubAnthropic.stall_next`). A global
``latency_s`` makes every answer slow, for concurrency benchmarks; the server is threaded.

In-process::

    with StubAnthropic() as stub:
        client = anthropic.Anthropic(api_key="test", base_url=stub.url)
        stub.fail_next(status=429, times=1, retry_after=0.01)
        ...
        assert stub.call_count == 2

As its own process (for workers and API servers in other processes)::

    python -m tests.support.stub_anthropic --port 0 [--latency 0.2]
    # prints {"url": "http://127.0.0.1:PORT"} on one line once ready, serves until SIGTERM

and drive it with :class:`StubClient` (or :class:`StubAnthropicProcess`, which starts and
stops that process). Control endpoints, which need no API key and are not recorded:

* ``GET  /_stub/calls``     -> ``{"count": n, "calls": [...]}``
* ``POST /_stub/reset``
* ``POST /_stub/fail``      ``{"status": 529, "times": 1, "retry_after": null}``
* ``POST /_stub/delay``     ``{"seconds": 2.0, "times": 1}``
* ``POST /_stub/stream_error`` ``{"error_type": "overloaded_error", "after_deltas": 1, "times": 1}``
* ``POST /_stub/stall``     ``{"seconds": 2.0, "after_deltas": 1, "times": 1}``
* ``POST /_stub/latency``   ``{"seconds": 0.2}``
* ``POST /_stub/responses`` ``{"texts": ["...", "..."]}`` (answered one per request, in order,
  before the responder is consulted)
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import select
import signal
import socket
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any

import requests

Responder = Callable[[dict[str, Any]], str]

ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}

ERROR_MESSAGES: dict[str, str] = {
    "invalid_request_error": "Invalid request.",
    "authentication_error": "x-api-key header is required",
    "rate_limit_error": "Number of request tokens has exceeded your per-minute rate limit.",
    "api_error": "Internal server error",
    "timeout_error": "Request timed out.",
    "overloaded_error": "Overloaded",
}

NOTE_MARKER = "## Problem"


def estimate_tokens(text: str) -> int:
    """About four characters a token: the same rough rule the product uses."""
    return math.ceil(len(text) / 4) if text else 0


def _content_text(content: Any) -> str:
    """The text of a message ``content`` (a string, or a list of content blocks)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, dict) and isinstance(block.get("text"), str):
                parts.append(block["text"])
        return "\n".join(parts)
    return ""


def system_text(request: dict[str, Any]) -> str:
    """The whole system prompt of a request as one string."""
    return _content_text(request.get("system"))


def last_user_text(request: dict[str, Any]) -> str:
    """The text of the newest user message of a request ("" if none)."""
    for message in reversed(request.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return _content_text(message.get("content"))
    return ""


def _meaningful_lines(text: str) -> list[str]:
    lines = []
    for raw in text.splitlines():
        line = raw.strip().lstrip("-*#>").strip()
        if line:
            lines.append(line)
    return lines


def _pick(lines: list[str], words: Iterable[str]) -> list[str]:
    wanted = tuple(w.lower() for w in words)
    return [line for line in lines if any(w in line.lower() for w in wanted)]


def default_note(request: dict[str, Any]) -> str:
    """A valid four-section resolution note built deterministically from the request text."""
    lines = _meaningful_lines(last_user_text(request))
    problem = (_pick(lines, ("symptom", "problem", "issue", "title", "subject")) or lines or ["-"])[
        0
    ]
    confirmed = _pick(lines, ("confirmed", "observation", "observed", "verified")) or lines[:3]
    cause = _pick(lines, ("root cause", "cause", "because")) or confirmed[-1:] or ["Not recorded."]
    resolution = _pick(lines, ("fix", "resolution", "resolved", "applied", "script")) or [
        "Applied the agreed fix and verified with the user."
    ]
    bullets = "\n".join(f"- {line[:300]}" for line in confirmed[:5]) or "- Nothing recorded."
    return (
        f"## Problem\n{problem[:300]}\n\n"
        f"## What we confirmed\n{bullets}\n\n"
        f"## Root cause\n{cause[0][:300]}\n\n"
        f"## Resolution\n{resolution[-1][:300]}\n"
    )


def _session_document(request: dict[str, Any]) -> dict[str, Any]:
    text = last_user_text(request)
    start, end = text.find("<session>\n"), text.rfind("\n</session>")
    if start < 0 or end < start:
        return {}
    try:
        found = json.loads(text[start + len("<session>\n") : end])
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def default_structured_note(request: dict[str, Any]) -> str:
    """A resolution note as the JSON the note schema asks for (structured outputs), copied from
    the session data in the first user message: each section's facts, each item citing its id."""
    first = {"messages": (request.get("messages") or [])[:1]}
    doc = _session_document(first)

    def items(facts: Any, fmt: str = "bullet") -> list[dict[str, Any]]:
        return [
            {"text": str(f.get("text", "")), "format": fmt, "cites": [str(f.get("id", ""))]}
            for f in facts or []
            if isinstance(f, dict) and f.get("text")
        ]

    problem = doc.get("problem") or {}
    confirmed = doc.get("what_we_confirmed") or {}
    cause = doc.get("root_cause") or {}
    resolution = doc.get("resolution") or {}
    sections = [
        (
            "Problem",
            (
                [{"text": problem["statement"], "format": "sentence", "cites": []}]
                if problem.get("statement")
                else []
            )
            + items(problem.get("facts")),
        ),
        ("What we confirmed", items(confirmed.get("facts"))),
        ("Root cause", items(cause.get("facts"), "sentence")),
        ("Resolution", items(resolution.get("facts"), "sentence")),
    ]
    fallback = {
        "Problem": "The reported problem was investigated.",
        "What we confirmed": "No facts were confirmed during this session.",
        "Root cause": "No root cause was confirmed during this session.",
        "Resolution": "No resolution was recorded for this session.",
    }
    return json.dumps(
        {
            "sections": [
                {
                    "title": title,
                    "items": found
                    or [{"text": fallback[title], "format": "sentence", "cites": []}],
                }
                for title, found in sections
            ]
        }
    )


def wants_json_schema(request: dict[str, Any]) -> bool:
    """Whether the request asks for structured output (``output_config.format``)."""
    config = request.get("output_config")
    fmt = config.get("format") if isinstance(config, dict) else None
    return isinstance(fmt, dict) and fmt.get("type") == "json_schema"


def default_responder(request: dict[str, Any]) -> str:
    """The stub's default answer: a resolution note for note requests, else an echo."""
    if wants_json_schema(request) and "<session>" in last_user_text(
        {"messages": (request.get("messages") or [])[:1]}
    ):
        return default_structured_note(request)
    if NOTE_MARKER in system_text(request):
        return default_note(request)
    said = " ".join(last_user_text(request).split())
    if len(said) > 200:
        said = said[:200] + "..."
    return (
        f'Stub reply. You said: "{said}". '
        "Next, check the event log on the affected machine and share what you find."
    )


@dataclass(frozen=True)
class _Action:
    """One scripted behaviour, consumed by one ``/v1/messages`` request."""

    kind: str  # "fail" | "delay" | "stream_error" | "stall"
    status: int = 529
    error_type: str | None = None
    retry_after: float | None = None
    seconds: float = 0.0
    after_deltas: int = 1


def error_body(
    status: int, error_type: str | None = None, message: str | None = None
) -> dict[str, Any]:
    etype = error_type or ERROR_TYPES.get(status) or ("api_error" if status >= 500 else "error")
    return {
        "type": "error",
        "error": {"type": etype, "message": message or ERROR_MESSAGES.get(etype, etype)},
        "request_id": None,
    }


def _split_deltas(text: str, pieces: int = 6) -> list[str]:
    """Split ``text`` into several chunks (at least 3 when the text allows it)."""
    if not text:
        return [""]
    size = max(1, math.ceil(len(text) / pieces))
    return [text[i : i + size] for i in range(0, len(text), size)]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 512
    allow_reuse_address = True
    stub: StubAnthropic


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, the client's delayed ACK adds
    # ~40 ms to every answer on a kept-alive connection.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    # -- plumbing -----------------------------------------------------------------------

    def _read_json(self) -> Any:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return {}
        return json.loads(raw)

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.send_header("request-id", self.server.stub._next_id("req"))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
            self.close_connection = True

    def _client_gone(self) -> bool:
        """Whether the client closed the connection (e.g. timed out) while we waited."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    # -- routes -------------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        stub = self.server.stub
        if self.path == "/_stub/calls":
            calls = stub.calls
            self._send_json(200, {"count": len(calls), "calls": calls})
        elif self.path == "/_stub/health":
            self._send_json(200, {"ok": True})
        else:
            self._send_json(404, error_body(404, message=f"Not found: {self.path}"))

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        stub = self.server.stub
        try:
            payload = self._read_json()
        except (ValueError, UnicodeDecodeError):
            self._send_json(400, error_body(400, message="Request body is not valid JSON."))
            return
        if self.path.split("?", 1)[0] == "/v1/messages":
            self._messages(payload)
            return
        if not isinstance(payload, dict):
            payload = {}
        if self.path == "/_stub/reset":
            stub.reset()
        elif self.path == "/_stub/fail":
            stub.fail_next(
                status=int(payload.get("status", 529)),
                times=int(payload.get("times", 1)),
                retry_after=payload.get("retry_after"),
                error_type=payload.get("error_type"),
            )
        elif self.path == "/_stub/delay":
            stub.delay_next(float(payload["seconds"]), times=int(payload.get("times", 1)))
        elif self.path == "/_stub/stream_error":
            stub.stream_error_next(
                error_type=payload.get("error_type", "overloaded_error"),
                after_deltas=int(payload.get("after_deltas", 1)),
                times=int(payload.get("times", 1)),
            )
        elif self.path == "/_stub/stall":
            stub.stall_next(
                float(payload["seconds"]),
                after_deltas=int(payload.get("after_deltas", 1)),
                times=int(payload.get("times", 1)),
            )
        elif self.path == "/_stub/latency":
            stub.latency_s = float(payload.get("seconds", 0.0))
        elif self.path == "/_stub/responses":
            stub.queue_responses(*[str(t) for t in payload.get("texts", [])])
        else:
            self._send_json(404, error_body(404, message=f"Not found: {self.path}"))
            return
        self._send_json(200, {"ok": True})

    def _messages(self, request: Any) -> None:
        stub = self.server.stub
        headers = {key.lower(): value for key, value in self.headers.items()}
        stub._record(request, headers, self.path)

        if not _has_api_key(headers):
            self._send_json(401, error_body(401))
            return

        action = stub._pop_action()
        if action is not None and action.kind == "delay":
            stub._wait(action.seconds)
        if action is not None and (
            action.kind == "fail" or (action.kind == "stream_error" and not _streaming(request))
        ):
            extra = {}
            if action.retry_after is not None:
                extra["retry-after"] = f"{action.retry_after:g}"
            self._send_json(action.status, error_body(action.status, action.error_type), extra)
            return

        problem = _validate(request)
        if problem:
            self._send_json(400, error_body(400, message=problem))
            return

        stub._wait(stub.latency_s)
        if stub._stopping.is_set() or self._client_gone():
            # Like the real API, work for a client that gave up is not delivered; queued
            # answers are kept for the next request.
            self.close_connection = True
            return
        text = stub._answer(request)
        usage = stub._usage(request, text)
        message_id = stub._next_id("msg")
        if _streaming(request):
            broken = (
                action if action is not None and action.kind in ("stream_error", "stall") else None
            )
            self._stream(request, message_id, text, usage, broken)
        else:
            self._send_json(
                200,
                {
                    "id": message_id,
                    "type": "message",
                    "role": "assistant",
                    "model": request.get("model"),
                    "content": [{"type": "text", "text": text}],
                    "stop_reason": "end_turn",
                    "stop_sequence": None,
                    "usage": usage,
                },
            )

    def _stream(
        self,
        request: dict[str, Any],
        message_id: str,
        text: str,
        usage: dict[str, int],
        stream_error: _Action | None,
    ) -> None:
        def event(name: str, data: dict[str, Any]) -> bytes:
            return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()

        start_usage = dict(usage, output_tokens=1)
        events = [
            event(
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": message_id,
                        "type": "message",
                        "role": "assistant",
                        "model": request.get("model"),
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": start_usage,
                    },
                },
            ),
            event(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            ),
            event("ping", {"type": "ping"}),
        ]
        deltas = _split_deltas(text)
        stall_at: int | None = None
        stall = stream_error if stream_error is not None and stream_error.kind == "stall" else None
        if stall is not None:
            stall_at = len(events) + max(0, stall.after_deltas)
            stream_error = None
        if stream_error is not None:
            deltas = deltas[: max(0, stream_error.after_deltas)]
        for piece in deltas:
            events.append(
                event(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "text_delta", "text": piece},
                    },
                )
            )
        if stream_error is not None:
            etype = stream_error.error_type or "overloaded_error"
            events.append(event("error", error_body(529, etype)))
        else:
            events += [
                event("content_block_stop", {"type": "content_block_stop", "index": 0}),
                event(
                    "message_delta",
                    {
                        "type": "message_delta",
                        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                        "usage": {"output_tokens": usage["output_tokens"]},
                    },
                ),
                event("message_stop", {"type": "message_stop"}),
            ]
        try:
            self.send_response(200)
            self.send_header("content-type", "text/event-stream; charset=utf-8")
            self.send_header("cache-control", "no-cache")
            self.send_header("transfer-encoding", "chunked")
            self.send_header("request-id", self.server.stub._next_id("req"))
            self.end_headers()
            for number, chunk in enumerate(events):
                if number == stall_at and stall is not None:
                    self.server.stub._wait(stall.seconds)
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


def _has_api_key(headers: dict[str, str]) -> bool:
    if headers.get("x-api-key", "").strip():
        return True
    auth = headers.get("authorization", "")
    return auth.lower().startswith("bearer ") and bool(auth[7:].strip())


def _streaming(request: Any) -> bool:
    return isinstance(request, dict) and request.get("stream") is True


def _validate(request: Any) -> str | None:
    """The first problem the real API would reject the request for, or None."""
    if not isinstance(request, dict):
        return "Request body must be a JSON object."
    if not isinstance(request.get("model"), str) or not request["model"]:
        return "model: Field required"
    max_tokens = request.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        return "max_tokens: Field required (a positive integer)"
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            return f"messages.{index}.role: Input should be 'user' or 'assistant'"
        if "content" not in message:
            return f"messages.{index}.content: Field required"
    system = request.get("system")
    if system is not None and not isinstance(system, str | list):
        return "system: Input should be a valid string or list of text blocks"
    if isinstance(system, list):
        for index, block in enumerate(system):
            if not isinstance(block, dict) or block.get("type") != "text":
                return f"system.{index}.type: Input should be 'text'"
    return None


class StubAnthropic:
    """A threaded HTTP stub of the Anthropic Messages API (see the module docstring)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_s: float = 0.0,
        responder: Responder | None = None,
        cache_min_tokens: int = 0,
    ) -> None:
        self.host = host
        self._requested_port = port
        self._initial_latency_s = latency_s
        self.latency_s = latency_s
        self.responder: Responder = responder or default_responder
        # The real API caches only prefixes of at least 1,024-4,096 tokens (model dependent);
        # 0 caches any prefix marked with cache_control.
        self.cache_min_tokens = cache_min_tokens
        self._lock = threading.Lock()
        self._calls: list[dict[str, Any]] = []
        self._actions: deque[_Action] = deque()
        self._responses: deque[str] = deque()
        self._cached_prefixes: set[tuple[str, str]] = set()
        self._ids = itertools.count(1)
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> StubAnthropic:
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _Server((self.host, self._requested_port), _Handler)
        server.stub = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()  # wakes handlers sleeping in delay/latency
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> StubAnthropic:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("StubAnthropic is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- inspection ---------------------------------------------------------------------

    @property
    def calls(self) -> list[dict[str, Any]]:
        """Every ``/v1/messages`` request so far: ``{"path", "json", "headers"}`` each."""
        with self._lock:
            return list(self._calls)

    @property
    def call_count(self) -> int:
        with self._lock:
            return len(self._calls)

    @property
    def last_request(self) -> dict[str, Any] | None:
        """The parsed JSON body of the newest ``/v1/messages`` request."""
        with self._lock:
            return self._calls[-1]["json"] if self._calls else None

    def reset(self) -> None:
        """Forget calls, scripted failures, queued answers and cache state; restore latency."""
        with self._lock:
            self._calls.clear()
            self._actions.clear()
            self._responses.clear()
            self._cached_prefixes.clear()
            self.latency_s = self._initial_latency_s

    # -- programming --------------------------------------------------------------------

    def fail_next(
        self,
        status: int = 529,
        times: int = 1,
        retry_after: float | None = None,
        error_type: str | None = None,
    ) -> None:
        """Answer the next ``times`` requests with the real API's error body for ``status``
        (429 rate_limit_error, 529 overloaded_error, 500 api_error, 408 timeout_error, ...),
        with a ``retry-after`` header when ``retry_after`` is given."""
        action = _Action("fail", status=status, error_type=error_type, retry_after=retry_after)
        with self._lock:
            self._actions.extend([action] * times)

    def delay_next(self, seconds: float, times: int = 1) -> None:
        """Hold the next ``times`` requests for ``seconds`` before answering (client timeouts)."""
        with self._lock:
            self._actions.extend([_Action("delay", seconds=seconds)] * times)

    def stream_error_next(
        self, error_type: str = "overloaded_error", after_deltas: int = 1, times: int = 1
    ) -> None:
        """Break the next ``times`` streams with an SSE ``error`` event after ``after_deltas``
        text deltas, as the real API does when it overloads mid-stream. A non-streaming
        request consuming this action gets the matching HTTP 529 error instead."""
        action = _Action("stream_error", error_type=error_type, after_deltas=after_deltas)
        with self._lock:
            self._actions.extend([action] * times)

    def stall_next(self, seconds: float, after_deltas: int = 1, times: int = 1) -> None:
        """Pause the next ``times`` streams for ``seconds`` after ``after_deltas`` text deltas
        (a mid-stream read timeout for the client). Non-streaming requests ignore it."""
        action = _Action("stall", seconds=seconds, after_deltas=after_deltas)
        with self._lock:
            self._actions.extend([action] * times)

    def queue_responses(self, *texts: str) -> None:
        """Answer the next requests with these texts, one per request, before the responder."""
        with self._lock:
            self._responses.extend(texts)

    # -- internals used by the handler ---------------------------------------------------

    def _record(self, request: Any, headers: dict[str, str], path: str) -> None:
        with self._lock:
            self._calls.append({"path": path, "json": request, "headers": headers})

    def _pop_action(self) -> _Action | None:
        with self._lock:
            return self._actions.popleft() if self._actions else None

    def _wait(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    def _next_id(self, prefix: str) -> str:
        return f"{prefix}_stub{next(self._ids):016x}"

    def _answer(self, request: dict[str, Any]) -> str:
        with self._lock:
            queued = self._responses.popleft() if self._responses else None
        if queued is not None:
            return queued
        return self.responder(request)

    def _usage(self, request: dict[str, Any], text: str) -> dict[str, int]:
        system = request.get("system")
        blocks: list[dict[str, Any]]
        if isinstance(system, str):
            blocks = [{"type": "text", "text": system}]
        else:
            blocks = [b for b in (system or []) if isinstance(b, dict)]
        last_marked = max(
            (i for i, block in enumerate(blocks) if block.get("cache_control")), default=-1
        )
        prefix = "".join(str(block.get("text", "")) for block in blocks[: last_marked + 1])
        rest = "".join(str(block.get("text", "")) for block in blocks[last_marked + 1 :])
        rest += json.dumps(request.get("messages") or [])
        created = read = 0
        prefix_tokens = estimate_tokens(prefix)
        if last_marked >= 0 and prefix_tokens >= max(1, self.cache_min_tokens):
            key = (str(request.get("model")), prefix)
            with self._lock:
                seen = key in self._cached_prefixes
                self._cached_prefixes.add(key)
            if seen:
                read = prefix_tokens
            else:
                created = prefix_tokens
        else:
            rest = prefix + rest
        return {
            "input_tokens": max(1, estimate_tokens(rest)),
            "output_tokens": max(1, estimate_tokens(text)),
            "cache_creation_input_tokens": created,
            "cache_read_input_tokens": read,
        }


class StubClient:
    """Drives a stub running in another process through its ``/_stub`` control endpoints."""

    def __init__(self, url: str, *, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self._http = requests.Session()

    def _post(self, path: str, payload: dict[str, Any] | None = None) -> None:
        response = self._http.post(f"{self.url}{path}", json=payload or {}, timeout=self.timeout_s)
        response.raise_for_status()

    def calls(self) -> list[dict[str, Any]]:
        response = self._http.get(f"{self.url}/_stub/calls", timeout=self.timeout_s)
        response.raise_for_status()
        calls: list[dict[str, Any]] = response.json()["calls"]
        return calls

    @property
    def call_count(self) -> int:
        response = self._http.get(f"{self.url}/_stub/calls", timeout=self.timeout_s)
        response.raise_for_status()
        return int(response.json()["count"])

    def reset(self) -> None:
        self._post("/_stub/reset")

    def fail(
        self,
        status: int = 529,
        times: int = 1,
        retry_after: float | None = None,
        error_type: str | None = None,
    ) -> None:
        self._post(
            "/_stub/fail",
            {
                "status": status,
                "times": times,
                "retry_after": retry_after,
                "error_type": error_type,
            },
        )

    fail_next = fail

    def delay(self, seconds: float, times: int = 1) -> None:
        self._post("/_stub/delay", {"seconds": seconds, "times": times})

    delay_next = delay

    def stream_error(
        self, error_type: str = "overloaded_error", after_deltas: int = 1, times: int = 1
    ) -> None:
        self._post(
            "/_stub/stream_error",
            {"error_type": error_type, "after_deltas": after_deltas, "times": times},
        )

    def stall(self, seconds: float, after_deltas: int = 1, times: int = 1) -> None:
        self._post(
            "/_stub/stall", {"seconds": seconds, "after_deltas": after_deltas, "times": times}
        )

    def latency(self, seconds: float) -> None:
        self._post("/_stub/latency", {"seconds": seconds})

    def responses(self, texts: Iterable[str]) -> None:
        self._post("/_stub/responses", {"texts": list(texts)})

    def close(self) -> None:
        self._http.close()


class StubAnthropicProcess:
    """Runs ``python -m tests.support.stub_anthropic`` as a child process.

    ``with StubAnthropicProcess(latency_s=0.1) as proc: proc.url, proc.client.fail(...)``.
    The child must be able to import ``tests`` (run from the repository root, or with it
    on ``PYTHONPATH``, passed through ``env``/``cwd``).
    """

    def __init__(
        self,
        *,
        port: int = 0,
        latency_s: float = 0.0,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        startup_timeout_s: float = 20.0,
    ) -> None:
        self._args = [sys.executable, "-m", "tests.support.stub_anthropic", "--port", str(port)]
        if latency_s:
            self._args += ["--latency", str(latency_s)]
        self._cwd = cwd
        self._env = env
        self._startup_timeout_s = startup_timeout_s
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.client: StubClient | None = None

    def start(self) -> StubAnthropicProcess:
        self.proc = subprocess.Popen(
            self._args, cwd=self._cwd, env=self._env, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()))  # type: ignore[union-attr]
        reader.start()
        reader.join(self._startup_timeout_s)
        if not line or not line[0].strip():
            self.stop()
            raise RuntimeError("stub_anthropic process did not report its URL")
        self.url = json.loads(line[0])["url"]
        self.client = StubClient(self.url)
        return self

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> StubAnthropicProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Local stub of the Anthropic Messages API")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--cache-min-tokens", type=int, default=0)
    args = parser.parse_args(argv)

    stub = StubAnthropic(
        host=args.host,
        port=args.port,
        latency_s=args.latency,
        cache_min_tokens=args.cache_min_tokens,
    ).start()
    done = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    print(json.dumps({"url": stub.url}), flush=True)
    while not done.wait(0.5):
        pass
    stub.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
