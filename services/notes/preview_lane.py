"""The console's poll of a cached preview, answered before Flask is reached.

The poll (`GET .../resolution-note/preview` with a plain `kind`/`wait` query, with or without
If-None-Match) is the request the product serves most, and once the note is cached its answer
is one PostgreSQL statement and one Redis read. Measured under wrk through the gateway, Flask's
machinery around that answer (request and app contexts, URL matching, the hooks, werkzeug's
request and response objects) cost more than the answer itself: the poll served at about
0.8x the rate of `GET /healthz` through Flask and at about that rate or above through this
lane (bench/test_bench_gateway.py; the figures are in deploy/README.md).

:class:`PreviewLane` wraps the notes app's WSGI callable. It answers a request itself only
when every part of it is the plain, valid poll and the note is ready: the same statement
(services.notes.bundle.principal_and_session_state) under the service's database role, the
same first look (services.notes.preview.first_look), the same body and headers, the same
request id, metric and access line (shared.observability.RequestRecorder). Anything else (no
or a bad token, an inactive user, a session not found, a kind the session's status refuses,
a query or header Flask would judge, a body, a note not ready, any error of PostgreSQL or
Redis) goes to Flask untouched, which answers it as it always has: the lane writes nothing
before it knows it answers, so handing a request on costs only what was read.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl

from werkzeug.http import parse_etags

from services.notes.bundle import principal_and_session_state
from services.notes.context import NotesContext
from services.notes.preview import PreviewOutcome, first_look
from services.notes.preview_body import hit_body
from services.notes.schemas import plain_preview_args
from shared.auth import user_id_from_authorization
from shared.db import request_role
from shared.hostile_input import query_may_be_unstorable
from shared.observability import (
    REQUEST_ID_ENVIRON_KEY,
    REQUEST_ID_HEADER,
    RequestRecorder,
)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

# Clients revalidate every time (the note changes with the session) and keep it private.
PREVIEW_CACHE_CONTROL = "private, no-cache"
# werkzeug's UUID converter, which the Flask rule's `<uuid:session_id>` uses.
_UUID_PATTERN = r"[A-Fa-f0-9]{8}-[A-Fa-f0-9]{4}-[A-Fa-f0-9]{4}-[A-Fa-f0-9]{4}-[A-Fa-f0-9]{12}"
_PLAIN_QUERY_KEYS = frozenset({"kind", "wait"})
# Request headers that bring a body Flask's hostile-input check would read.
_BODY_ENVIRON_KEYS = ("CONTENT_LENGTH", "CONTENT_TYPE", "HTTP_TRANSFER_ENCODING")


def if_none_match_tags(header: str | None) -> list[str]:
    """The opaque tags of an If-None-Match value, sorted (weak comparison: W/ is ignored;
    `*` names no tag)."""
    if not header:
        return []
    return sorted(parse_etags(header).as_set(include_weak=True))


def rule_pattern(rule: str) -> re.Pattern[str]:
    """The paths of a Flask rule with one `<uuid:...>` part, the uuid as the one group."""
    before, _, rest = rule.partition("<uuid:")
    _, _, after = rest.partition(">")
    return re.compile(re.escape(before) + f"({_UUID_PATTERN})" + re.escape(after))


class PreviewLane:
    """The notes app's WSGI callable, with the ready preview answered in front of it."""

    def __init__(
        self,
        flask_app: WSGIApp,
        *,
        rule: str,
        secret_key: str,
        service_role: str | None,
        recorder: RequestRecorder,
        context: Callable[[], NotesContext],
    ) -> None:
        self.flask_app = flask_app
        self.rule = rule
        self._path = rule_pattern(rule)
        self._secret_key = secret_key
        self._service_role = service_role
        self._recorder = recorder
        self._context = context

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("REQUEST_METHOD") == "GET":
            match = self._path.fullmatch(environ.get("PATH_INFO", ""))
            if match is not None:
                answered = self._answer(environ, start_response, match.group(1))
                if answered is not None:
                    return answered
        return self.flask_app(environ, start_response)

    def _answer(
        self, environ: dict[str, Any], start_response: Callable[..., Any], raw_session_id: str
    ) -> list[bytes] | None:
        args = _plain_query(environ.get("QUERY_STRING", ""))
        if args is None or any(environ.get(key) for key in _BODY_ENVIRON_KEYS):
            return None
        started = time.perf_counter()
        request_id = self._recorder.begin(environ.get(REQUEST_ID_ENVIRON_KEY))
        try:
            try:
                outcome = self._ready_outcome(environ, args["kind"], uuid.UUID(raw_session_id))
            except Exception:  # noqa: BLE001 - Flask answers it, with its own error or 503
                outcome = None
            if outcome is None:
                return None
            status, headers, body = _response(outcome)
            headers.append((REQUEST_ID_HEADER, request_id))
            start_response(status, headers)
            self._recorder.finish("GET", self.rule, int(status[:3]), time.perf_counter() - started)
            return [body] if body else []
        finally:
            # Flask binds its own when it takes the request over.
            self._recorder.end()

    def _ready_outcome(
        self, environ: dict[str, Any], kind: str, session_id: uuid.UUID
    ) -> PreviewOutcome | None:
        """The first look's outcome (services.notes.preview.first_look: ready, or the caller's
        copy current) when the principal is active and the session is in its account; None
        otherwise."""
        user_id = user_id_from_authorization(
            self._secret_key, environ.get("HTTP_AUTHORIZATION", "")
        )
        request_role(self._service_role)
        try:
            principal, state = principal_and_session_state(user_id, session_id)
            if principal is None or state is None:
                return None
            outcome, _ = first_look(
                self._context(),
                kind=kind,
                state=state,
                if_none_match=if_none_match_tags(environ.get("HTTP_IF_NONE_MATCH")),
                rendered=True,
            )
        finally:
            request_role(None)
        return outcome


def _response(outcome: PreviewOutcome) -> tuple[str, list[tuple[str, str]], bytes]:
    """Status line, headers and body of a ready outcome, as the Flask view sends them."""
    if outcome.matched_tag is not None:
        return (
            "304 NOT MODIFIED",
            [("Cache-Control", PREVIEW_CACHE_CONTROL), ("ETag", f'W/"{outcome.matched_tag}"')],
            b"",
        )
    hit = outcome.hit
    if hit is None:
        raise ValueError("a ready outcome without its rendered body")
    body = hit_body(
        hit.parts,
        kind=outcome.kind,
        session_id=str(outcome.session_id),
        state_version=outcome.state_version,
        ticket_ref=outcome.ticket_ref,
    )
    headers = [
        ("Cache-Control", PREVIEW_CACHE_CONTROL),
        ("ETag", f'W/"{hit.tag}"'),
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
    ]
    return "200 OK", headers, body


def _plain_query(query: str) -> dict[str, Any] | None:
    """The poll's arguments (services.notes.schemas.plain_preview_args) when the query is
    nothing but a `kind` and a `wait` that load, each at most once, in plain ASCII (nothing
    percent-encoded: Flask's hostile-input check judges those)."""
    if query_may_be_unstorable(query):
        return None
    pairs = parse_qsl(query, keep_blank_values=True)
    values = dict(pairs)
    if len(values) != len(pairs) or not values.keys() <= _PLAIN_QUERY_KEYS:
        return None
    return plain_preview_args(values)
