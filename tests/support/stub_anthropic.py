"""A local stub of the Anthropic Messages API, for tests and benchmarks.

The stub speaks enough of ``POST /v1/messages`` for the official ``anthropic`` SDK to run
unmodified against it (point ``base_url`` at :attr:`StubAnthropic.url`):

* non-streaming requests get a JSON ``Message`` object;
* ``"stream": true`` requests get the Server-Sent Events sequence of the real API
  (``message_start``, ``content_block_start``, ``ping``, several ``content_block_delta``,
  ``content_block_stop``, ``message_delta``, ``message_stop``);
* it is strict, per model family (:data:`STUB_MODELS`, from the vendor's documents): an
  unknown model is a 404 ``not_found_error``; sampling parameters on Sonnet 5.x, an assistant
  prefill on the 4.6 generation and later, a thinking mode or forced ``tool_choice`` the model
  does not take, ``max_tokens`` above its limit, more than four ``cache_control``
  breakpoints, a 1-hour entry after a 5-minute one, a structured-output JSON schema with an
  object that does not set ``additionalProperties: false``, roles that do not alternate or
  start with an assistant turn, empty content, a system prompt other than a string or text
  blocks: each is a 400 ``invalid_request_error`` with the real error body
  (:func:`validate_request`), and is listed in :attr:`StubAnthropic.refusals`;
* ``usage`` is estimated from the request size (about four characters a token), and prompt
  caching is modelled as the API does it (:meth:`StubAnthropic._usage`): a cache entry is the
  byte-exact prefix (tools, system, messages) up to a ``cache_control`` breakpoint, per
  model, kept for its TTL (``5m`` or ``1h``, refreshed by each hit; :meth:`advance_clock` lets
  time pass); a later request with the same prefix reports ``cache_read_input_tokens``, a new
  one ``cache_creation_input_tokens`` (split by TTL in ``cache_creation``), and a prefix below
  the model's minimum cacheable length caches nothing: both counters stay 0;
* the Message Batches endpoints (``POST /v1/messages/batches``, ``GET .../{id}``,
  ``GET .../{id}/results`` as JSONL) answer each request as ``/v1/messages`` would, an
  invalid one as an ``errored`` result; a batch ends on its first retrieve (or after
  :attr:`batch_polls_before_end` more);
* an API key is required (``x-api-key``, or ``Authorization: Bearer`` as the SDK sends it),
  otherwise the real API's 401 ``authentication_error`` body comes back.

Behaviour is programmable: a ``responder`` callable decides the answer text (the default one
echoes the last user message, writes a four-section resolution note when the system
prompt asks for ``## Problem`` or the note schema's JSON for a ``<session>`` request, and
proposes the suggested literals of a ``<literals>`` request as template parameters), fixed
answers can be queued, and a FIFO of scripted failures is consumed one per request
(:meth:`StubAnthropic.fail_next`, :meth:`StubAnthropic.delay_next`,
:meth:`StubAnthropic.stream_error_next`, :meth:`StubAnthropic.stall_next`). A global
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
* ``POST /_stub/clock``     ``{"advance_s": 301}`` (cache entries age as if that time passed)
* ``POST /_stub/batch_polls`` ``{"before_end": 2}``
* ``GET  /_stub/refusals``, ``GET /_stub/batches``
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
import time
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
    if isinstance(doc.get("sections"), list):
        return _sectioned_note(doc["sections"])

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


def _sectioned_note(sections: list[Any]) -> str:
    """A note of a kind whose session data lists its sections (title, items, when_empty):
    each section's items copied, citing their ids; an empty section says `when_empty`."""

    def text_of(item: dict[str, Any]) -> str:
        if item.get("text"):
            return str(item["text"])
        if item.get("template_name"):
            return f"Ran the script {item['template_name']}."
        steps = "; ".join(str(s) for s in item.get("steps") or [])
        return f"{item.get('title', '')}" + (f": {steps}" if steps else "")

    out = []
    for section in sections:
        if not isinstance(section, dict):
            continue
        items = [
            {
                "text": text_of(item),
                "format": "bullet",
                "cites": [str(item["id"])] if item.get("id") else [],
            }
            for item in section.get("items") or []
            if isinstance(item, dict) and text_of(item).strip()
        ]
        if not items:
            items = [
                {
                    "text": str(section.get("when_empty") or "Nothing."),
                    "format": "sentence",
                    "cites": [],
                }
            ]
        out.append({"title": str(section.get("title", "")), "items": items})
    return json.dumps({"sections": out})


def wants_json_schema(request: dict[str, Any]) -> bool:
    """Whether the request asks for structured output (``output_config.format``)."""
    config = request.get("output_config")
    fmt = config.get("format") if isinstance(config, dict) else None
    return isinstance(fmt, dict) and fmt.get("type") == "json_schema"


def _tagged_json(text: str, tag: str) -> Any:
    start, end = text.find(f"<{tag}>\n"), text.rfind(f"\n</{tag}>")
    if start < 0 or end < start:
        return None
    try:
        return json.loads(text[start + len(tag) + 3 : end])
    except ValueError:
        return None


def default_template_parameters(request: dict[str, Any]) -> str:
    """A template-parameter proposal as its schema asks for: every literal the request marks
    as suggested, lifted under the suggested key and type, with a label and help of its own."""
    literals = _tagged_json(last_user_text(request), "literals")
    parameters = []
    for literal in literals if isinstance(literals, list) else []:
        suggested = literal.get("suggested") if isinstance(literal, dict) else None
        if not isinstance(suggested, dict):
            continue
        words = str(suggested.get("key", "value")).replace("_", " ")
        parameters.append(
            {
                "literal": str(literal.get("value", "")),
                "key": str(suggested.get("key", "value")),
                "label": words[:1].upper() + words[1:],
                "type": str(suggested.get("type", "string")),
                "help": f"The {words} this script acts on.",
            }
        )
    return json.dumps({"parameters": parameters, "keep_as_written": []})


def default_responder(request: dict[str, Any]) -> str:
    """The stub's default answer: a resolution note for note requests, a parameter proposal
    for template-parameter requests, else an echo."""
    first_user = last_user_text({"messages": (request.get("messages") or [])[:1]})
    if wants_json_schema(request) and "<session>" in first_user:
        return default_structured_note(request)
    if wants_json_schema(request) and "<literals>" in first_user:
        return default_template_parameters(request)
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

    def log_message(self, format: str, *args: Any) -> None:  # stdlib signature
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

    def do_GET(self) -> None:  # stdlib naming
        stub = self.server.stub
        path = self.path.split("?", 1)[0]
        if path.startswith("/v1/messages/batches"):
            self._batches_get(path)
            return
        if self.path == "/_stub/calls":
            calls = stub.calls
            self._send_json(200, {"count": len(calls), "calls": calls})
        elif self.path == "/_stub/refusals":
            refusals = stub.refusals
            self._send_json(200, {"count": len(refusals), "refusals": refusals})
        elif self.path == "/_stub/batches":
            batches = stub.batch_submissions
            self._send_json(200, {"count": len(batches), "batches": batches})
        elif self.path == "/_stub/health":
            self._send_json(200, {"ok": True})
        else:
            self._send_json(404, error_body(404, message=f"Not found: {self.path}"))

    def do_POST(self) -> None:  # stdlib naming
        stub = self.server.stub
        try:
            payload = self._read_json()
        except (ValueError, UnicodeDecodeError):
            self._send_json(400, error_body(400, message="Request body is not valid JSON."))
            return
        if self.path.split("?", 1)[0] == "/v1/messages":
            self._messages(payload)
            return
        if self.path.split("?", 1)[0] == "/v1/messages/batches":
            self._batches_create(payload)
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
        elif self.path == "/_stub/batch_polls":
            stub.batch_polls_before_end = int(payload.get("before_end", 0))
        elif self.path == "/_stub/clock":
            stub.advance_clock(float(payload.get("advance_s", 0.0)))
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
        call = stub._record(request, headers, self.path)

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

        refusal = validate_request(request)
        if refusal is not None:
            stub._record_refusal(request, refusal)
            self._send_json(
                refusal.status, error_body(refusal.status, refusal.error_type, refusal.message)
            )
            return

        stub._wait(stub.latency_s)
        if stub._stopping.is_set() or self._client_gone():
            # Like the real API, work for a client that gave up is not delivered; queued
            # answers are kept for the next request.
            self.close_connection = True
            return
        text = stub._answer(request)
        usage = stub._usage(request, text)
        stub._answered(call, usage)
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

    # -- Message Batches ------------------------------------------------------------------

    def _batches_create(self, payload: Any) -> None:
        stub = self.server.stub
        headers = {key.lower(): value for key, value in self.headers.items()}
        if not _has_api_key(headers):
            self._send_json(401, error_body(401))
            return
        requests_ = payload.get("requests") if isinstance(payload, dict) else None
        if not isinstance(requests_, list) or not requests_:
            self._send_json(400, error_body(400, message="requests: at least one is required"))
            return
        ids = [r.get("custom_id") for r in requests_ if isinstance(r, dict)]
        if len(ids) != len(requests_) or any(not isinstance(i, str) or not i for i in ids):
            self._send_json(400, error_body(400, message="requests.custom_id: Field required"))
            return
        if len(set(ids)) != len(ids):
            self._send_json(400, error_body(400, message="requests: custom_id must be unique"))
            return
        for index, entry in enumerate(requests_):
            params = entry.get("params")
            if not isinstance(params, dict) or params.get("stream"):
                self._send_json(
                    400,
                    error_body(400, message=f"requests.{index}.params: streaming not allowed"),
                )
                return
        host = f"http://{self.headers.get('host') or f'{stub.host}:{stub.port}'}"
        self._send_json(200, stub._create_batch(requests_, host))

    def _batches_get(self, path: str) -> None:
        stub = self.server.stub
        headers = {key.lower(): value for key, value in self.headers.items()}
        if not _has_api_key(headers):
            self._send_json(401, error_body(401))
            return
        parts = path.rstrip("/").split("/")  # ["", "v1", "messages", "batches", id, ...]
        batch_id = parts[4] if len(parts) > 4 else ""
        wants_results = len(parts) > 5 and parts[5] == "results"
        batch = stub._batch_view(batch_id, advance=not wants_results)
        if batch is None:
            self._send_json(404, error_body(404, message=f"message batch {batch_id} not found"))
            return
        if not wants_results:
            self._send_json(200, batch)
            return
        if batch["processing_status"] != "ended":
            self._send_json(400, error_body(400, message="batch has not finished processing"))
            return
        lines = stub._batch_results(batch_id)
        body = "".join(json.dumps(line) + "\n" for line in lines).encode()
        self.send_response(200)
        self.send_header("content-type", "application/binary")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

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


@dataclass(frozen=True)
class StubModel:
    """What the real API accepts from one model family (its public docs; see
    ``shared/llm_models.py`` for the sources). Kept apart from the product's own table on
    purpose: a mistake there must not be mirrored here."""

    max_output_tokens: int
    min_cacheable_tokens: int
    sampling: bool  # temperature / top_p / top_k
    prefill: bool
    thinking: frozenset[str]
    forced_tool_choice: bool
    temperature_xor_top_p: bool = False


STUB_MODELS: dict[str, StubModel] = {
    "claude-sonnet-5-5": StubModel(128_000, 1024, False, False, frozenset({"adaptive"}), False),
    "claude-sonnet-5": StubModel(
        128_000, 1024, False, False, frozenset({"adaptive", "disabled"}), True
    ),
    "claude-sonnet-4-6": StubModel(
        64_000, 2048, True, False, frozenset({"adaptive", "enabled", "disabled"}), True, True
    ),
    "claude-opus-4-6": StubModel(
        128_000, 4096, True, False, frozenset({"adaptive", "enabled", "disabled"}), True, True
    ),
    "claude-sonnet-4-5": StubModel(
        64_000, 1024, True, True, frozenset({"enabled", "disabled"}), True, True
    ),
    "claude-haiku-4-5": StubModel(
        64_000, 4096, True, True, frozenset({"enabled", "disabled"}), True, True
    ),
}

CACHE_TTLS_S = {"5m": 300.0, "1h": 3600.0}
MAX_CACHE_BREAKPOINTS = 4


def stub_model(model: str) -> StubModel | None:
    """The family of ``model`` (alias or dated id), None for a model the API does not know."""
    best = None
    for family, spec in STUB_MODELS.items():
        if model == family or model.startswith(family + "-"):
            if best is None or len(family) > len(best[0]):
                best = (family, spec)
    return best[1] if best else None


@dataclass(frozen=True)
class Refusal:
    status: int
    message: str
    error_type: str = "invalid_request_error"


def _blocks_of(content: Any) -> list[Any]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return content if isinstance(content, list) else []


def _check_cache_control(where: str, block: Any, ttls: list[str]) -> str | None:
    control = block.get("cache_control") if isinstance(block, dict) else None
    if control is None:
        return None
    if not isinstance(control, dict) or control.get("type") != "ephemeral":
        return f"{where}.cache_control.type: Input should be 'ephemeral'"
    ttl = control.get("ttl", "5m")
    if ttl not in CACHE_TTLS_S:
        return f"{where}.cache_control.ttl: Input should be '5m' or '1h'"
    ttls.append(ttl)
    return None


def validate_request(request: Any) -> Refusal | None:
    """The first reason the real API would refuse ``request`` (with its status), or None."""
    if not isinstance(request, dict):
        return Refusal(400, "Request body must be a JSON object.")
    model = request.get("model")
    if not isinstance(model, str) or not model:
        return Refusal(400, "model: Field required")
    spec = stub_model(model)
    if spec is None:
        return Refusal(404, f"model: {model}", "not_found_error")
    max_tokens = request.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        return Refusal(400, "max_tokens: Field required (a positive integer)")
    if max_tokens > spec.max_output_tokens:
        return Refusal(
            400,
            f"max_tokens: {max_tokens} > {spec.max_output_tokens}, which is the maximum "
            f"allowed number of output tokens for {model}",
        )
    if not spec.sampling:
        for name in ("temperature", "top_p", "top_k"):
            if name in request:
                return Refusal(400, f"{name}: is not supported on {model}; remove it")
    elif spec.temperature_xor_top_p and "temperature" in request and "top_p" in request:
        return Refusal(
            400, f"`temperature` and `top_p` cannot both be specified for this model ({model})"
        )
    thinking = request.get("thinking")
    if thinking is not None:
        mode = thinking.get("type") if isinstance(thinking, dict) else None
        if mode not in spec.thinking:
            return Refusal(400, f"thinking.type: {mode!r} is not supported on {model}")
    tool_choice = request.get("tool_choice")
    if isinstance(tool_choice, dict) and tool_choice.get("type") in ("any", "tool"):
        if not spec.forced_tool_choice:
            return Refusal(400, f"tool_choice: forced tool use is not supported on {model}")

    schema_problem = _output_schema_problem(request.get("output_config"))
    if schema_problem:
        return Refusal(400, schema_problem)

    ttls: list[str] = []
    system = request.get("system")
    if system is not None and not isinstance(system, str | list):
        return Refusal(400, "system: Input should be a valid string or list of text blocks")
    if isinstance(system, list):
        for index, block in enumerate(system):
            if not isinstance(block, dict) or block.get("type") != "text":
                return Refusal(400, f"system.{index}.type: Input should be 'text'")
            if not isinstance(block.get("text"), str):
                return Refusal(400, f"system.{index}.text: Field required")
            if not block["text"]:
                return Refusal(400, f"system.{index}.text: text content blocks must be non-empty")
            problem = _check_cache_control(f"system.{index}", block, ttls)
            if problem:
                return Refusal(400, problem)

    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        return Refusal(400, "messages: at least one message is required")
    previous = None
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            return Refusal(400, f"messages.{index}.role: Input should be 'user' or 'assistant'")
        if "content" not in message:
            return Refusal(400, f"messages.{index}.content: Field required")
        role = message["role"]
        if index == 0 and role != "user":
            return Refusal(400, "messages.0.role: the first message must use the 'user' role")
        if role == previous:
            return Refusal(
                400, f"messages.{index}: roles must alternate between 'user' and 'assistant'"
            )
        previous = role
        content = message["content"]
        if isinstance(content, str):
            if not content.strip() and not (role == "assistant" and index == len(messages) - 1):
                return Refusal(
                    400,
                    f"messages.{index}: all messages must have non-empty content except for "
                    "the optional final assistant message",
                )
            continue
        if not isinstance(content, list) or not content:
            return Refusal(400, f"messages.{index}.content: Input should be a string or blocks")
        for number, block in enumerate(content):
            if not isinstance(block, dict) or not isinstance(block.get("type"), str):
                return Refusal(400, f"messages.{index}.content.{number}.type: Field required")
            problem = _check_cache_control(f"messages.{index}.content.{number}", block, ttls)
            if problem:
                return Refusal(400, problem)
    if previous == "assistant" and not spec.prefill:
        return Refusal(
            400,
            f"This model does not support assistant message prefill. The conversation must "
            f"end with a user message ({model}).",
        )
    if len(ttls) > MAX_CACHE_BREAKPOINTS:
        return Refusal(
            400,
            f"A maximum of {MAX_CACHE_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {len(ttls)}.",
        )
    seen_5m = False
    for ttl in ttls:
        if ttl == "5m":
            seen_5m = True
        elif seen_5m:
            return Refusal(
                400, "cache_control: a ttl='1h' entry must not come after a ttl='5m' one"
            )
    return None


def _output_schema_problem(config: Any) -> str | None:
    """Structured outputs' rule for a JSON schema: every object closes its properties
    (``additionalProperties: false``)."""
    if config is None:
        return None
    fmt = config.get("format") if isinstance(config, dict) else None
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        return None
    schema = fmt.get("schema")
    if not isinstance(schema, dict):
        return "output_config.format.schema: Field required"

    def walk(node: Any, where: str) -> str | None:
        if isinstance(node, dict):
            if node.get("type") == "object" and node.get("additionalProperties") is not False:
                return f"{where}: 'additionalProperties' must be explicitly set to false"
            for key, value in node.items():
                found = walk(value, f"{where}.{key}")
                if found:
                    return found
        elif isinstance(node, list):
            for index, value in enumerate(node):
                found = walk(value, f"{where}.{index}")
                if found:
                    return found
        return None

    return walk(schema, "output_config.format.schema")


def _validate(request: Any) -> str | None:
    """The message of the first refusal (kept for callers of the older helper)."""
    refusal = validate_request(request)
    return refusal.message if refusal else None


def _block_tokens(block: Any) -> int:
    if isinstance(block, dict) and isinstance(block.get("text"), str):
        return estimate_tokens(block["text"])
    if isinstance(block, dict):
        body = {k: v for k, v in block.items() if k != "cache_control"}
        return estimate_tokens(json.dumps(body, sort_keys=True))
    return 0


def prompt_blocks(request: dict[str, Any]) -> list[tuple[str, dict[str, Any], int]]:
    """The prompt as the API caches it: tools, then system blocks, then every message's
    content blocks, in order, each as ``(key, block, tokens)`` where ``key`` is the block's
    exact bytes (its role included, ``cache_control`` excluded)."""
    out: list[tuple[str, dict[str, Any], int]] = []
    for tool in request.get("tools") or []:
        if isinstance(tool, dict):
            out.append(("tool", tool, _block_tokens(tool)))
    for block in _blocks_of(request.get("system")):
        if isinstance(block, dict):
            out.append(("system", block, _block_tokens(block)))
    for message in request.get("messages") or []:
        role = str(message.get("role"))
        blocks = _blocks_of(message.get("content"))
        for index, block in enumerate(blocks):
            if isinstance(block, dict):
                # A few tokens of framing per message, as the real count has.
                framing = MESSAGE_FRAMING_TOKENS if index == 0 else 0
                out.append((role, block, _block_tokens(block) + framing))
    return out


MESSAGE_FRAMING_TOKENS = 3


class StubAnthropic:
    """A threaded HTTP stub of the Anthropic Messages API (see the module docstring)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_s: float = 0.0,
        responder: Responder | None = None,
        cache_min_tokens: int | None = None,
    ) -> None:
        self.host = host
        self._requested_port = port
        self._initial_latency_s = latency_s
        self.latency_s = latency_s
        self.responder: Responder = responder or default_responder
        # The real API caches only prefixes of at least the model's minimum (1,024-4,096
        # tokens); None applies each model's own minimum, a number overrides it for all.
        self.cache_min_tokens = cache_min_tokens
        # Seconds added to the clock, so a test can let a cache entry expire without waiting.
        self.clock_offset_s = 0.0
        self._refusals: list[dict[str, Any]] = []
        self._batches: dict[str, dict[str, Any]] = {}
        self._batch_submissions: list[dict[str, Any]] = []
        # How many retrieves a batch answers "in_progress" before it has ended.
        self.batch_polls_before_end = 0
        self._lock = threading.Lock()
        self._calls: list[dict[str, Any]] = []
        self._actions: deque[_Action] = deque()
        self._responses: deque[str] = deque()
        # (model, exact prefix bytes) -> expiry time on the stub's clock
        self._cache: dict[tuple[str, str], float] = {}
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
        """Every ``/v1/messages`` request so far: ``{"path", "json", "headers", "usage"}`` each
        (``usage``: the usage block answered, None when the request was refused or failed)."""
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
            self._cache.clear()
            self._refusals.clear()
            self._batches.clear()
            self._batch_submissions.clear()
            self.batch_polls_before_end = 0
            self.clock_offset_s = 0.0
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

    def _record(self, request: Any, headers: dict[str, str], path: str) -> dict[str, Any]:
        call: dict[str, Any] = {"path": path, "json": request, "headers": headers, "usage": None}
        with self._lock:
            self._calls.append(call)
        return call

    def _answered(self, call: dict[str, Any], usage: dict[str, Any]) -> None:
        with self._lock:
            call["usage"] = usage

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

    # -- Message Batches --------------------------------------------------------------

    def _create_batch(self, entries: list[dict[str, Any]], host: str) -> Any:
        batch_id = self._next_id("msgbatch")
        with self._lock:
            self._batches[batch_id] = {
                "id": batch_id,
                "entries": entries,
                "host": host,
                "polls": 0,
                "results": None,
                "created_at": "2026-12-01T00:00:00Z",
            }
            self._batch_submissions.append({"id": batch_id, "requests": entries})
        view = self._batch_view(batch_id, advance=False)
        assert view is not None
        return view

    def _batch_view(self, batch_id: str, *, advance: bool) -> Any:
        with self._lock:
            batch = self._batches.get(batch_id)
            if batch is None:
                return None
            if advance:
                batch["polls"] += 1
            ended = batch["polls"] > self.batch_polls_before_end
            entries = list(batch["entries"])
            pending = batch["results"] is None
        if ended and pending:
            results = []
            for entry in entries:
                params = entry["params"]
                refusal = validate_request(params)
                if refusal is not None:
                    result: dict[str, Any] = {
                        "type": "errored",
                        "error": error_body(refusal.status, refusal.error_type, refusal.message),
                    }
                else:
                    result = {"type": "succeeded", "message": _batch_message(self, params)}
                results.append({"custom_id": entry["custom_id"], "result": result})
            with self._lock:
                batch["results"] = results
        with self._lock:
            done = batch["results"]
        succeeded = sum(1 for r in done or [] if r["result"]["type"] == "succeeded")
        return {
            "id": batch_id,
            "type": "message_batch",
            "processing_status": "ended" if done is not None else "in_progress",
            "request_counts": {
                "processing": 0 if done is not None else len(entries),
                "succeeded": succeeded,
                "errored": (len(done) - succeeded) if done is not None else 0,
                "canceled": 0,
                "expired": 0,
            },
            "ended_at": "2026-12-01T00:01:00Z" if done is not None else None,
            "created_at": batch["created_at"],
            "expires_at": "2026-12-02T00:00:00Z",
            "archived_at": None,
            "cancel_initiated_at": None,
            "results_url": (
                f"{batch['host']}/v1/messages/batches/{batch_id}/results"
                if done is not None
                else None
            ),
        }

    def _batch_results(self, batch_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._batches[batch_id]["results"] or [])

    def now(self) -> float:
        return time.monotonic() + self.clock_offset_s

    def advance_clock(self, seconds: float) -> None:
        """Move the stub's clock on (cache entries expire as if that time had passed)."""
        with self._lock:
            self.clock_offset_s += seconds

    @property
    def batch_submissions(self) -> list[dict[str, Any]]:
        """Every batch created: ``{"id", "requests"}`` each."""
        with self._lock:
            return list(self._batch_submissions)

    @property
    def refusals(self) -> list[dict[str, Any]]:
        """Every request the stub refused as the real API would: ``{"json", "status",
        "message"}`` each."""
        with self._lock:
            return list(self._refusals)

    def _record_refusal(self, request: Any, refusal: Refusal) -> None:
        with self._lock:
            self._refusals.append(
                {"json": request, "status": refusal.status, "message": refusal.message}
            )

    def _min_cacheable(self, model: str) -> int:
        if self.cache_min_tokens is not None:
            return max(1, self.cache_min_tokens)
        spec = stub_model(model)
        return spec.min_cacheable_tokens if spec else 1024

    def _usage(self, request: dict[str, Any], text: str) -> dict[str, Any]:
        """The usage block, with prompt caching as the API does it: each ``cache_control``
        breakpoint names the exact prefix up to and including its block; the longest prefix
        still cached (within its TTL, which a hit refreshes) is read, the part of the prompt
        from there to the last breakpoint is written (if that prefix reaches the model's
        minimum), the rest is plain input."""
        model = str(request.get("model"))
        blocks = prompt_blocks(request)
        minimum = self._min_cacheable(model)
        keys: list[str] = []
        running = ""
        cumulative: list[int] = []
        total = 0
        breakpoints: list[tuple[int, str]] = []  # (index, ttl)
        for index, (role, block, tokens) in enumerate(blocks):
            body = {k: v for k, v in block.items() if k != "cache_control"}
            running += role + ":" + json.dumps(body, sort_keys=True) + "\n"
            keys.append(running)
            total += tokens
            cumulative.append(total)
            control = block.get("cache_control")
            if isinstance(control, dict):
                breakpoints.append((index, str(control.get("ttl", "5m"))))
        read_upto = -1
        now = self.now()
        with self._lock:
            for index, ttl in reversed(breakpoints):
                key = (model, keys[index])
                expiry = self._cache.get(key)
                if expiry is not None and expiry > now:
                    read_upto = index
                    self._cache[key] = now + CACHE_TTLS_S.get(ttl, 300.0)  # a hit refreshes
                    break
            read = cumulative[read_upto] if read_upto >= 0 else 0
            written_5m = written_1h = 0
            done = read_upto
            for index, ttl in breakpoints:
                if index <= read_upto or cumulative[index] < minimum:
                    continue
                segment = cumulative[index] - (cumulative[done] if done >= 0 else 0)
                if ttl == "1h":
                    written_1h += segment
                else:
                    written_5m += segment
                done = index
                self._cache[(model, keys[index])] = now + CACHE_TTLS_S.get(ttl, 300.0)
        created = written_5m + written_1h
        return {
            "input_tokens": max(1, total - read - created),
            "output_tokens": max(1, estimate_tokens(text)),
            "cache_creation_input_tokens": created,
            "cache_read_input_tokens": read,
            "cache_creation": {
                "ephemeral_5m_input_tokens": written_5m,
                "ephemeral_1h_input_tokens": written_1h,
            },
        }


def _batch_message(stub: StubAnthropic, params: dict[str, Any]) -> dict[str, Any]:
    text = stub._answer(params)
    return {
        "id": stub._next_id("msg"),
        "type": "message",
        "role": "assistant",
        "model": params.get("model"),
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": stub._usage(params, text),
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

    def advance_clock(self, seconds: float) -> None:
        self._post("/_stub/clock", {"advance_s": seconds})

    def batch_polls_before_end(self, polls: int) -> None:
        self._post("/_stub/batch_polls", {"before_end": polls})

    def refusals(self) -> list[dict[str, Any]]:
        response = self._http.get(f"{self.url}/_stub/refusals", timeout=self.timeout_s)
        response.raise_for_status()
        refusals: list[dict[str, Any]] = response.json()["refusals"]
        return refusals

    def batches(self) -> list[dict[str, Any]]:
        response = self._http.get(f"{self.url}/_stub/batches", timeout=self.timeout_s)
        response.raise_for_status()
        batches: list[dict[str, Any]] = response.json()["batches"]
        return batches

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
        startup_timeout_s: float = 120.0,
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
    parser.add_argument(
        "--cache-min-tokens", type=int, default=None, help="override every model's minimum"
    )
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
