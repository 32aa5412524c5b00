"""Request ids: accepting, making and reading the id bound to the current log context."""

from __future__ import annotations

import re
import uuid

import structlog

from shared.observability.redaction import clear_sensitive_values

REQUEST_ID_HEADER = "X-Request-ID"


_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,128}")


def new_request_id() -> str:
    return uuid.uuid4().hex


def sanitize_request_id(raw: str | None) -> str:
    """`raw` when it is at most 128 of `[A-Za-z0-9._-]`, else a fresh uuid4 hex."""
    if raw is not None and _REQUEST_ID_RE.fullmatch(raw):
        return raw
    return new_request_id()


def current_request_id() -> str | None:
    value = structlog.contextvars.get_contextvars().get("request_id")
    return value if isinstance(value, str) else None


def _reset_context() -> None:
    structlog.contextvars.clear_contextvars()
    clear_sensitive_values()
