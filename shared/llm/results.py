"""What an LLM call returns or raises: the usage figures, the result, and the classified
failure (transient, already retried by the SDK, or permanent)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import anthropic
import httpx2

GENERATOR_ANTHROPIC = "anthropic"
GENERATOR_OFFLINE = "offline"
OFFLINE_MODEL = "offline"

# Reasons carried by LLMUnavailable. The first group is transient (the SDK already retried);
# the second means the request itself was refused and repeating it will not help.
TRANSIENT_REASONS = frozenset(
    {"timeout", "connection_error", "rate_limited", "overloaded", "server_error"}
)
PERMANENT_REASONS = frozenset(
    {
        "auth_error",
        "billing_error",
        "invalid_request",
        "unsupported_request",
        "api_error",
        "offline",
    }
)
# The API's error texts are stored in the ledger: bounded, never a prompt.
MAX_ERROR_CHARS = 300


# error.type of an SSE ``error`` event (which arrives inside a 200 response) -> (reason, status)
_STREAM_ERROR_TYPES: dict[str, tuple[str, int]] = {
    "overloaded_error": ("overloaded", 529),
    "rate_limit_error": ("rate_limited", 429),
    "timeout_error": ("timeout", 504),
    "api_error": ("server_error", 500),
}


@dataclass(frozen=True)
class LLMUsage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    # The 1-hour-TTL part of cache_creation_input_tokens (priced higher than 5-minute writes).
    cache_creation_1h_input_tokens: int = 0


@dataclass(frozen=True)
class LLMResult:
    text: str
    generator: str  # "anthropic" | "offline"
    model: str
    usage: LLMUsage
    latency_ms: int
    stop_reason: str | None = None


class LLMUnavailable(RuntimeError):
    """The LLM could not answer: the SDK gave up after its retries, or refused the request.

    ``reason`` is one of :data:`TRANSIENT_REASONS` (``timeout``, ``connection_error``,
    ``rate_limited``, ``overloaded``, ``server_error``: try again later) or
    :data:`PERMANENT_REASONS` (``auth_error`` for 401/403, ``invalid_request`` for other
    4xx, ``api_error`` for anything else the SDK raised: retrying will not help).
    ``status_code`` is the HTTP status when there was one; ``error`` is the API's own
    ``error.type: error.message`` (or the local refusal), bounded, for the ledger.
    """

    def __init__(
        self,
        reason: str,
        *,
        status_code: int | None = None,
        detail: str = "",
        error: str = "",
    ) -> None:
        message = f"LLM unavailable: {reason}"
        if status_code is not None:
            message += f" (HTTP {status_code})"
        if detail:
            message += f": {detail}"
        super().__init__(message)
        self.reason = reason
        self.status_code = status_code
        self.error = (error or detail or reason)[:MAX_ERROR_CHARS]

    @property
    def retryable(self) -> bool:
        """Whether trying again later may succeed."""
        return self.reason in TRANSIENT_REASONS


def _classify(exc: Exception) -> tuple[str, int | None]:
    """``(reason, status_code)`` for an exception raised by the SDK or its HTTP layer."""
    if isinstance(exc, anthropic.APITimeoutError | httpx2.TimeoutException):
        return "timeout", None
    if isinstance(exc, anthropic.APIConnectionError | httpx2.TransportError):
        return "connection_error", None
    if isinstance(exc, anthropic.APIStatusError):
        status = exc.status_code
        if status < 400:  # an SSE error event inside a 200 stream
            return _STREAM_ERROR_TYPES.get(str(exc.type or ""), ("server_error", 500))
        if status == 429:
            return "rate_limited", status
        if status == 529:
            return "overloaded", status
        if status in (408, 504):
            return "timeout", status
        if status >= 500 or status == 409:
            return "server_error", status
        if status in (401, 403):
            return "auth_error", status
        if status == 402:
            return "billing_error", status
        return "invalid_request", status
    return "api_error", None


def _api_error_text(exc: Exception) -> str:
    """``error.type: error.message`` from the API's error body, when it sent one."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        nested = body.get("error")
        error: dict[str, Any] = nested if isinstance(nested, dict) else body
        etype = str(error.get("type") or "")
        message = str(error.get("message") or "")
        if etype or message:
            return f"{etype}: {message}"[:MAX_ERROR_CHARS]
    return type(exc).__name__


def _get(raw: Any, name: str) -> Any:
    if isinstance(raw, dict):
        return raw.get(name)
    return getattr(raw, name, None)


def usage_from(raw: Any) -> LLMUsage:
    """:class:`LLMUsage` from a ``usage`` block (an SDK object or its JSON dict)."""
    if raw is None:
        return LLMUsage()
    split = _get(raw, "cache_creation")
    one_hour = int(_get(split, "ephemeral_1h_input_tokens") or 0) if split is not None else 0
    return LLMUsage(
        input_tokens=int(_get(raw, "input_tokens") or 0),
        output_tokens=int(_get(raw, "output_tokens") or 0),
        cache_creation_input_tokens=int(_get(raw, "cache_creation_input_tokens") or 0),
        cache_read_input_tokens=int(_get(raw, "cache_read_input_tokens") or 0),
        cache_creation_1h_input_tokens=one_hour,
    )


_usage = usage_from
