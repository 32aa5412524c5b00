"""The API's answer when a write to an AI session cannot bump it: the one translation of
`shared.events.SessionNotFound` into a 404 and `SessionReadOnly` into a 409, for every service
that writes to a session (shared.web renders the domain errors raised here)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from shared import events
from shared.errors import AI_SESSION_NOT_FOUND, Conflict, NotFound

READ_ONLY = "Session is resolved and read-only; reopen it first"


@contextmanager
def session_write_errors(*, read_only: str = READ_ONLY, field: str | None = None) -> Iterator[None]:
    """Raise NotFound for a session the caller's account does not have and Conflict (with
    `read_only` as its message) for a resolved one. With `field`, the body names the request
    field that named the session."""
    try:
        yield
    except events.SessionNotFound as exc:
        errors = {field: ["no such session"]} if field else None
        raise NotFound(AI_SESSION_NOT_FOUND, errors=errors) from exc
    except events.SessionReadOnly as exc:
        errors = {field: ["session is resolved"]} if field else None
        raise Conflict(read_only, errors=errors) from exc
