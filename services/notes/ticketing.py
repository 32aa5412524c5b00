"""One delivery attempt of a note through the account's ticketing adapter, exactly once.

None of the ticketing APIs has an idempotency key for adding a note, so the note carries a
marker derived from its id (``RF-Ref: <note id>``) and, whenever an earlier attempt's outcome is
not known to be "nothing was posted" (any retry, and a first attempt whose worker died mid-call),
the adapter first looks for a note bearing the marker on the ticket. Finding one means it was
delivered: a target that committed the note and then dropped the connection, or answered 5xx
after committing, ends with one note.

The outcome rules are the webhook's: 2xx delivered; no answer, 408, 429 and 5xx retried (with
``Retry-After`` honoured by the caller); 401/403 and 404 fail at once with the reason; the
webhook's 410 disables the integration. Pure function of its inputs plus the HTTP calls; no
database, no Flask.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from services.notes.adapters.base import Adapter, Posted, Target, TargetError
from services.notes.adapters.webhook import WebhookAdapter
from services.notes.delivery import Outcome


@dataclass(frozen=True)
class TicketAttempt:
    outcome: Outcome
    status_code: int | None
    error: str | None
    retry_after: str | None
    duration_ms: int
    request_id: str | None = None
    detail: str | None = None
    posted: Posted | None = None


def _failure(exc: TargetError, start: float) -> TicketAttempt:
    if exc.disable:
        outcome = Outcome.DISABLED
    elif exc.retryable:
        outcome = Outcome.RETRY
    else:
        outcome = Outcome.FAILED
    return TicketAttempt(
        outcome=outcome,
        status_code=exc.status,
        error=str(exc),
        retry_after=exc.retry_after,
        duration_ms=int((time.monotonic() - start) * 1000),
        request_id=exc.request_id,
        detail=exc.detail,
    )


def attempt(
    adapter: Adapter,
    target: Target,
    *,
    note_id: str,
    ticket_ref: str | None,
    markdown: str,
    webhook_payload: dict[str, Any],
    look_first: bool,
) -> TicketAttempt:
    """Deliver the note once (or find that it already was). Never raises for the target's or
    the network's failures: they come back as a :class:`TicketAttempt`."""
    start = time.monotonic()

    def done(posted: Posted) -> TicketAttempt:
        return TicketAttempt(
            outcome=Outcome.DELIVERED,
            status_code=None if posted.found else 200,
            error=None,
            retry_after=None,
            duration_ms=int((time.monotonic() - start) * 1000),
            request_id=posted.request_id,
            detail=posted.answer,
            posted=posted,
        )

    try:
        if isinstance(adapter, WebhookAdapter):
            # Receivers deduplicate on the webhook-id (the note id): nothing to look for.
            result = adapter.deliver(target, webhook_payload, msg_id=note_id)
            return TicketAttempt(
                outcome=result.outcome,
                status_code=result.status_code,
                error=result.error,
                retry_after=result.retry_after,
                duration_ms=result.duration_ms,
                detail=result.detail,
                posted=Posted(ticket=str(webhook_payload.get("ticket_ref") or ""))
                if result.outcome is Outcome.DELIVERED
                else None,
            )
        if not ticket_ref:
            return TicketAttempt(
                outcome=Outcome.FAILED,
                status_code=None,
                error=f"the session has no ticket_ref: nothing to post to in {adapter.label}",
                retry_after=None,
                duration_ms=0,
            )
        if look_first:
            found = adapter.find(target, ticket_ref, note_id)
            if found is not None:
                return done(found)
        rendered = adapter.render(markdown, note_id)
        return done(adapter.post(target, ticket_ref, rendered))
    except TargetError as exc:
        return _failure(exc, start)
