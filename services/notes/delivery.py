"""Webhook delivery of resolution notes (Standard Webhooks).

Pure functions plus one HTTP call; no Flask, no database. The caller (a Celery task) owns the
delivery row, decides when to call :func:`deliver` again with :func:`next_delay`, and records
each :class:`AttemptResult`.

Retry schedule semantics: ``schedule[i]`` is the delay in seconds before attempt ``i + 1``
(the default ``0, 5, 300, ...`` means "immediately, then 5 s after the first failure, ...").
So a schedule allows ``len(schedule)`` attempts in all; after that :func:`next_delay` returns
``None`` and the delivery is given up.

URL safety and the HTTP call: :func:`deliver` goes through `shared.outbound`, which encodes the
host once, resolves it once, vets every address (public only unless ALLOW_PRIVATE_WEBHOOKS) and
connects to exactly that address, within one total deadline; redirects are never followed.

What is recorded of an attempt: the status code and a short reason this module writes
(:attr:`AttemptResult.error`), plus at most :data:`MAX_DETAIL_CHARS` printable characters of
the target's answer (:attr:`AttemptResult.detail`), which only the account's owners see.
"""

from __future__ import annotations

import base64
import enum
import json
import math
import random
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from standardwebhooks import Webhook

from shared import outbound

EVENT_TYPE = "resolution_note.created"
USER_AGENT = "ResolutionFlow-Webhooks/1"
MAX_RETRY_AFTER_S = 24 * 3600
DEFAULT_JITTER = 0.1
# How much of an error answer is read, and how much of it is kept (sanitised) for owners.
MAX_ERROR_BODY_BYTES = 4096
MAX_DETAIL_CHARS = 200

# A webhook URL that must not be called (`retryable` only when the host did not resolve).
WebhookURLError = outbound.OutboundRefused


class Outcome(enum.Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    FAILED = "failed"
    DISABLED = "disabled"


@dataclass(frozen=True)
class AttemptResult:
    outcome: Outcome
    status_code: int | None
    error: str | None  # a short reason written here, never the target's words
    retry_after: str | None
    duration_ms: int
    detail: str | None = None  # a bounded, sanitised excerpt of the target's answer


# -- retry schedule ---------------------------------------------------------------------------


def parse_retry_schedule(raw: str | Sequence[int]) -> tuple[int, ...]:
    """``"0, 5, 300"`` or ``[0, 5, 300]`` -> ``(0, 5, 300)``.

    Raises ``ValueError`` for an empty schedule, a negative delay or a non-integer entry.
    """
    if isinstance(raw, str):
        parts = [part.strip() for part in raw.split(",") if part.strip()]
        try:
            delays = tuple(int(part) for part in parts)
        except ValueError as exc:
            raise ValueError(
                f"retry schedule must be comma-separated seconds, got {raw!r}"
            ) from exc
    else:
        items = list(raw)
        for item in items:
            if isinstance(item, bool) or not isinstance(item, int):
                raise ValueError(f"retry schedule entries must be integers, got {item!r}")
        delays = tuple(items)
    if not delays:
        raise ValueError("retry schedule needs at least one delay")
    if any(delay < 0 for delay in delays):
        raise ValueError(f"retry schedule delays must be non-negative, got {delays!r}")
    return delays


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or an HTTP-date).

    ``None`` for a missing or unparseable header; a date in the past gives ``0.0``. The
    result is capped at :data:`MAX_RETRY_AFTER_S`.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    seconds: float
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        reference = now or datetime.now(UTC)
        if reference.tzinfo is None:
            reference = reference.replace(tzinfo=UTC)
        seconds = (when - reference).total_seconds()
    if math.isnan(seconds):
        return None
    return float(min(max(seconds, 0.0), MAX_RETRY_AFTER_S))


def next_delay(
    attempt_number: int,
    schedule: Sequence[int],
    retry_after: str | None = None,
    rng: random.Random | None = None,
    *,
    jitter: float = DEFAULT_JITTER,
    now: datetime | None = None,
) -> float | None:
    """Seconds to wait before the next attempt, or ``None`` when the schedule is exhausted.

    ``attempt_number`` is the number of attempts already made (1 after the first failure);
    the scheduled delay is ``schedule[attempt_number]`` with ``±jitter`` (10 %) applied
    (``jitter=0`` disables it; a 0 delay stays 0; never negative). A ``Retry-After`` value
    (seconds or HTTP-date) raises the delay to at least that much, capped at 24 h; it never
    extends an exhausted schedule.
    """
    if attempt_number < 0:
        raise ValueError("attempt_number must be >= 0")
    if attempt_number >= len(schedule):
        return None
    base = float(schedule[attempt_number])
    delay = base
    if base > 0 and jitter > 0:
        generator = rng if rng is not None else random.Random()
        delay = base * (1.0 + generator.uniform(-jitter, jitter))
    delay = max(delay, 0.0)
    honoured = parse_retry_after(retry_after, now=now)
    if honoured is not None:
        delay = max(delay, honoured)
    return delay


# -- classification ---------------------------------------------------------------------------


def classify(status_code: int | None, error: Exception | None) -> Outcome:
    """The outcome of one attempt.

    2xx delivered; network errors, timeouts, 408, 429 and 5xx are retried; 410 Gone disables
    the endpoint; any other 4xx, 3xx (redirects are not followed) or 1xx fails permanently.
    A refused URL (:class:`WebhookURLError`) fails, unless its host merely did not resolve;
    a transport failure (`shared.outbound.OutboundError`) is retried; anything else fails.
    """
    if status_code is None:
        if error is None:
            raise ValueError("classify needs a status code or an error")
        if isinstance(error, WebhookURLError):
            return Outcome.RETRY if error.retryable else Outcome.FAILED
        if isinstance(error, outbound.OutboundError | OSError):
            return Outcome.RETRY
        return Outcome.FAILED
    if 200 <= status_code < 300:
        return Outcome.DELIVERED
    if status_code in (408, 429) or 500 <= status_code < 600:
        return Outcome.RETRY
    if status_code == 410:
        return Outcome.DISABLED
    return Outcome.FAILED


# -- payload and signature --------------------------------------------------------------------


def build_payload(
    *,
    note_id: str,
    session_id: str,
    ticket_ref: str | None,
    state_version: int,
    markdown: str,
    generated_at: str | datetime,
) -> dict[str, Any]:
    """The JSON body of a ``resolution_note.created`` webhook."""
    if isinstance(generated_at, datetime):
        stamp = generated_at
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
        generated_at = stamp.astimezone(UTC).isoformat()
    return {
        "type": EVENT_TYPE,
        "note_id": str(note_id),
        "session_id": str(session_id),
        "ticket_ref": ticket_ref,
        "state_version": int(state_version),
        "markdown": markdown,
        "generated_at": generated_at,
    }


def encode_body(payload: Mapping[str, Any]) -> bytes:
    """The exact bytes sent (and signed): compact, key-sorted UTF-8 JSON."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode(
        "utf-8"
    )


def _webhook(secret: str) -> Webhook:
    try:
        return Webhook(secret)
    except Exception as exc:  # binascii.Error, EmptyWebhookSecretError
        raise ValueError("invalid webhook secret (expected whsec_<base64>)") from exc


def sign_headers(
    secret: str, msg_id: str, body: bytes | str, timestamp: datetime
) -> dict[str, str]:
    """Standard Webhooks headers for ``body``.

    ``msg_id`` must stay the same across retries of one message (receivers deduplicate on
    it). A naive ``timestamp`` is taken as UTC. Raises ``ValueError`` for a bad secret.
    """
    if not msg_id:
        raise ValueError("msg_id is required")
    if timestamp.tzinfo is None:
        timestamp = timestamp.replace(tzinfo=UTC)
    # standardwebhooks' sign() *replaces* tzinfo with UTC, so hand it a UTC datetime.
    utc = timestamp.astimezone(UTC)
    data = body.decode("utf-8") if isinstance(body, bytes) else body
    signature = _webhook(secret).sign(msg_id=msg_id, timestamp=utc, data=data)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(math.floor(utc.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


def generate_secret() -> str:
    """A new signing secret: ``whsec_`` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


# -- URL validation ---------------------------------------------------------------------------


def validate_webhook_url(url: str, *, allow_private: bool) -> str:
    """Return ``url`` (stripped) if it may be called, else raise :class:`WebhookURLError`.

    http(s) only, a host is required, no ``user:password@``; the host (encoded once, UTS 46)
    must resolve only to public addresses unless ``allow_private``. See `shared.outbound`.
    """
    return outbound.vet_url(url, allow_private=allow_private).url


# -- delivery ---------------------------------------------------------------------------------


def _elapsed_ms(start: float) -> int:
    return int((time.monotonic() - start) * 1000)


def sanitise_excerpt(raw: bytes, limit: int = MAX_DETAIL_CHARS) -> str | None:
    """At most ``limit`` characters of a target's answer, printable ASCII only (anything else
    becomes ``?``), whitespace collapsed: safe to show to owners, never markup or controls."""
    text = raw[: limit * 4].decode("utf-8", errors="replace")
    cleaned = "".join(ch if " " <= ch <= "~" else (" " if ch in "\r\n\t" else "?") for ch in text)
    cleaned = " ".join(cleaned.split())[:limit]
    return cleaned or None


def _reason(status: int) -> str:
    if 300 <= status < 400:
        return f"HTTP {status}: the endpoint redirected; redirects are not followed"
    if status == 410:
        return "HTTP 410: the endpoint is gone"
    if status == 429:
        return "HTTP 429: the endpoint asked to slow down"
    if status == 408:
        return "HTTP 408: the endpoint timed out"
    if status >= 500:
        return f"HTTP {status}: the endpoint failed"
    if status >= 400:
        return f"HTTP {status}: the endpoint refused the delivery"
    return f"HTTP {status}: unexpected status"


def deliver(
    url: str,
    secret: str,
    payload: dict[str, Any],
    *,
    msg_id: str,
    timeout_s: float,
    allow_private: bool,
) -> AttemptResult:
    """POST ``payload`` as signed JSON to ``url`` once, within ``timeout_s`` seconds in all.
    Never raises for HTTP, network, URL, secret or payload problems: everything comes back as
    an :class:`AttemptResult`.

    Redirects are not followed (a 3xx is a permanent failure) and their ``Location`` is not
    recorded; at most 4 KiB of an error answer is read, of which :data:`MAX_DETAIL_CHARS`
    sanitised characters are kept in ``detail``.
    """
    start = time.monotonic()

    def result(
        outcome: Outcome,
        status: int | None = None,
        error: str | None = None,
        retry_after: str | None = None,
        detail: str | None = None,
    ) -> AttemptResult:
        return AttemptResult(outcome, status, error, retry_after, _elapsed_ms(start), detail)

    try:
        body = encode_body(payload)
        headers = sign_headers(secret, msg_id, body, datetime.now(UTC))
    except (TypeError, ValueError) as exc:
        return result(Outcome.FAILED, error=f"the delivery could not be signed: {exc}")
    headers["user-agent"] = USER_AGENT
    try:
        response = outbound.send(
            "POST",
            url,
            headers=headers,
            body=body,
            deadline_s=timeout_s,
            allow_private=allow_private,
            max_body_bytes=MAX_ERROR_BODY_BYTES,
        )
    except outbound.OutboundRefused as exc:
        return result(classify(None, exc), error=str(exc))
    except outbound.OutboundTimeout as exc:
        return result(Outcome.RETRY, error=f"Timeout: {exc.reason}")
    except outbound.OutboundError as exc:
        return result(Outcome.RETRY, error=f"ConnectionError: {exc.reason}")
    status = response.status
    outcome = classify(status, None)
    retry_after = response.header("retry-after")
    if outcome is Outcome.DELIVERED:
        return result(outcome, status, None, retry_after)
    detail = None if 300 <= status < 400 else sanitise_excerpt(response.body)
    return result(outcome, status, _reason(status), retry_after, detail)
