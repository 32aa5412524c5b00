"""Webhook delivery of resolution notes (Standard Webhooks).

Pure functions plus one HTTP call; no Flask, no database. The caller (a Celery task) owns the
delivery row, decides when to call :func:`deliver` again with :func:`next_delay`, and records
each :class:`AttemptResult`.

Retry schedule semantics: ``schedule[i]`` is the delay in seconds before attempt ``i + 1``
(the default ``0, 5, 300, ...`` means "immediately, then 5 s after the first failure, ...").
So a schedule allows ``len(schedule)`` attempts in all; after that :func:`next_delay` returns
``None`` and the delivery is given up.

URL safety: :func:`validate_webhook_url` refuses anything but public http(s) endpoints unless
``allow_private``. :func:`deliver` re-validates (re-resolves) the host immediately before each
attempt, which defeats a host that was re-pointed at an internal address after registration.
A resolver that answers differently between that check and the connection a moment later
(a deliberate rebinding race) is not fully excluded, because the HTTP library resolves the
name again; redirects are never followed and at most 4 KiB of the response is read back.
"""

from __future__ import annotations

import base64
import enum
import ipaddress
import json
import math
import random
import secrets
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from standardwebhooks import Webhook

EVENT_TYPE = "resolution_note.created"
USER_AGENT = "ResolutionFlow-Webhooks/1"
MAX_RETRY_AFTER_S = 24 * 3600
DEFAULT_JITTER = 0.1
MAX_ERROR_BODY_BYTES = 4096
MAX_ERROR_CHARS = 500


class WebhookURLError(ValueError):
    """A webhook URL that must not be called. ``retryable`` is True only when the host could
    not be resolved (DNS can recover); every other refusal is permanent."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class Outcome(enum.Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    FAILED = "failed"
    DISABLED = "disabled"


@dataclass(frozen=True)
class AttemptResult:
    outcome: Outcome
    status_code: int | None
    error: str | None
    retry_after: str | None
    duration_ms: int


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
    an invalid URL or request (``requests`` URL/schema errors) fails.
    """
    if status_code is None:
        if error is None:
            raise ValueError("classify needs a status code or an error")
        if isinstance(error, WebhookURLError):
            return Outcome.RETRY if error.retryable else Outcome.FAILED
        if isinstance(
            error,
            requests.exceptions.InvalidURL
            | requests.exceptions.MissingSchema
            | requests.exceptions.InvalidSchema
            | requests.exceptions.InvalidHeader,
        ):
            return Outcome.FAILED
        return Outcome.RETRY
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

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _non_public_reason(ip: IPAddress) -> str | None:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        reason = _non_public_reason(ip.ipv4_mapped)
        return f"IPv4-mapped {reason}" if reason else None
    if ip.is_unspecified:
        return "unspecified address"
    if ip.is_loopback:
        return "loopback address"
    if ip.is_link_local:
        return "link-local address"
    if ip.is_multicast:
        return "multicast address"
    if ip.is_private:
        return "private address"
    if ip.is_reserved:
        return "reserved address"
    if not ip.is_global:
        return "non-public address"
    return None


def validate_webhook_url(url: str, *, allow_private: bool) -> str:
    """Return ``url`` (stripped) if it may be called, else raise :class:`WebhookURLError`.

    http(s) only, a host is required, no ``user:password@``. The host is resolved and every
    address it resolves to must be public (not private, loopback, link-local, multicast,
    reserved, unspecified or otherwise non-global; IPv4-mapped IPv6 is judged by its IPv4
    address) unless ``allow_private``.
    """
    if not isinstance(url, str) or not url.strip():
        raise WebhookURLError("webhook URL is empty")
    url = url.strip()
    if any(ord(ch) < 0x21 or ch == "\x7f" for ch in url):
        raise WebhookURLError("webhook URL must not contain whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise WebhookURLError(f"webhook URL is malformed: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise WebhookURLError(f"webhook URL must use http or https, not {scheme or 'nothing'!r}")
    if "@" in parts.netloc:
        raise WebhookURLError("webhook URL must not contain credentials (user:password@)")
    host = parts.hostname
    if not host:
        raise WebhookURLError("webhook URL has no host")
    port = port or (443 if scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except UnicodeError as exc:
        raise WebhookURLError(f"webhook host {host!r} is not a valid host name: {exc}") from exc
    except socket.gaierror as exc:
        raise WebhookURLError(
            f"webhook host {host!r} could not be resolved: {exc}", retryable=True
        ) from exc
    if not infos:
        raise WebhookURLError(f"webhook host {host!r} resolved to no address", retryable=True)
    if allow_private:
        return url
    for info in infos:
        raw_address = str(info[4][0]).split("%", 1)[0]  # drop an IPv6 zone id
        try:
            address = ipaddress.ip_address(raw_address)
        except ValueError as exc:
            raise WebhookURLError(f"webhook host {host!r} resolved to {raw_address!r}") from exc
        reason = _non_public_reason(address)
        if reason:
            raise WebhookURLError(
                f"webhook host {host!r} resolves to {address} ({reason}); "
                "only public addresses may receive webhooks"
            )
    return url


# -- delivery ---------------------------------------------------------------------------------


def _elapsed_ms(start: float) -> int:
    return int((time.monotonic() - start) * 1000)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:MAX_ERROR_CHARS]


def _read_capped(response: requests.Response) -> str:
    try:
        raw = response.raw.read(MAX_ERROR_BODY_BYTES, decode_content=True) or b""
    except Exception:  # a broken or slow body must not hide the status code
        return ""
    return raw[:MAX_ERROR_BODY_BYTES].decode("utf-8", errors="replace")


def deliver(
    url: str,
    secret: str,
    payload: dict[str, Any],
    *,
    msg_id: str,
    timeout_s: float,
    allow_private: bool,
    session: requests.Session | None = None,
) -> AttemptResult:
    """POST ``payload`` as signed JSON to ``url`` once. Never raises for HTTP, network, URL,
    secret or payload problems: everything comes back as an :class:`AttemptResult`.

    Redirects are not followed (a 3xx is a permanent failure); at most 4 KiB of an error
    response is read into ``error``. A private ``session`` is created (with ``trust_env``
    off, so no proxy settings or .netrc credentials apply) unless one is passed.
    """
    start = time.monotonic()

    def result(
        outcome: Outcome,
        status: int | None = None,
        error: str | None = None,
        retry_after: str | None = None,
    ) -> AttemptResult:
        return AttemptResult(outcome, status, error, retry_after, _elapsed_ms(start))

    try:
        url = validate_webhook_url(url, allow_private=allow_private)
    except WebhookURLError as exc:
        return result(classify(None, exc), error=str(exc))
    try:
        body = encode_body(payload)
        headers = sign_headers(secret, msg_id, body, datetime.now(UTC))
    except (TypeError, ValueError) as exc:
        return result(Outcome.FAILED, error=_describe(exc))
    headers["user-agent"] = USER_AGENT

    own_session = session is None
    http = session if session is not None else requests.Session()
    if own_session:
        http.trust_env = False
    try:
        try:
            response = http.post(
                url,
                data=body,
                headers=headers,
                timeout=timeout_s,
                allow_redirects=False,
                stream=True,
            )
        except requests.RequestException as exc:
            return result(classify(None, exc), error=_describe(exc))
        try:
            status = response.status_code
            outcome = classify(status, None)
            retry_after = response.headers.get("retry-after")
            if outcome is Outcome.DELIVERED:
                return result(outcome, status, None, retry_after)
            if 300 <= status < 400:
                location = response.headers.get("location", "")
                error = f"HTTP {status}: redirect to {location!r} not followed"
            else:
                text = " ".join(_read_capped(response).split())
                error = f"HTTP {status}" + (f": {text}" if text else "")
            return result(outcome, status, error[:MAX_ERROR_CHARS], retry_after)
        finally:
            response.close()
    finally:
        if own_session:
            http.close()
