"""The delivery state machine: one attempt of a due note through the account's adapter,
recorded with its outcome, the next attempt scheduled, and redelivery on request.

Retry schedule: `WEBHOOK_RETRY_SCHEDULE_S[i]` is the delay before attempt i + 1 of a run; a run
starts when the note is materialised and again on each redelivery (the attempts after the last
final attempt: delivered, failed or disabled).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.orm import Session

from services.notes import delivery, integrations, ticketing
from services.notes.context import NotesContext
from services.notes.final_note import find_final_note
from services.notes.heartbeat import heartbeat
from services.notes.leases import (
    OPEN_STATUSES,
    LeaseLost,
    extend_lease,
    lease_free,
    release_lease,
)
from shared import outbound
from shared.db import db
from shared.errors import Conflict
from shared.models import ResolutionNote, TicketingIntegration, WebhookAttempt
from shared.observability import (
    WEBHOOK_DELIVERIES,
    get_logger,
)

log = get_logger(__name__)

# Attempt outcomes that end a run of the retry schedule.
FINAL_OUTCOMES = ("delivered", "failed", "disabled")
# Retries further out than this are left to the sweeper: the Redis broker redelivers an
# unacknowledged countdown task after its visibility timeout, so long countdowns are not kept
# in the broker at all.
MAX_COUNTDOWN_S = 300.0


@dataclass(frozen=True)
class DeliveryStep:
    status: str  # the note's delivery_status afterwards, or "skipped"
    countdown: float | None = None  # enqueue the next attempt after this many seconds


def _run_attempts(session: Session, note: ResolutionNote) -> int:
    """Attempts made in the current run of the schedule."""
    last_final = session.execute(
        select(func.max(WebhookAttempt.attempt_number)).where(
            WebhookAttempt.note_id == note.id, WebhookAttempt.outcome.in_(FINAL_OUTCOMES)
        )
    ).scalar_one()
    return int(note.attempts) - int(last_final or 0)


def _account_busy(session: Session, note_id: uuid.UUID, limit: int) -> bool:
    """Whether the note's account already has `limit` deliveries in flight (claimed with a live
    lease). Serialised per account by a transaction-level advisory lock, so two workers cannot
    both take the last slot; a dead worker's slot frees itself when its lease expires."""
    account_id = session.scalar(
        select(ResolutionNote.account_id).where(ResolutionNote.id == note_id)
    )
    if account_id is None:
        return False
    session.execute(
        select(func.pg_advisory_xact_lock(func.hashtextextended(f"rf-deliver:{account_id}", 0)))
    )
    in_flight = session.scalar(
        select(func.count())
        .select_from(ResolutionNote)
        .where(
            ResolutionNote.account_id == account_id,
            ResolutionNote.id != note_id,
            ResolutionNote.delivery_status == "delivering",
            ResolutionNote.lease_expires_at > func.now(),
        )
    )
    return int(in_flight or 0) >= limit


def deliver_note(ctx: NotesContext, note_id: uuid.UUID, *, owner: str) -> DeliveryStep:
    """One delivery attempt of a due note through the account's adapter, recorded with its
    outcome. When an earlier attempt's outcome is not known to be "nothing posted" (any earlier
    attempt, or a claim that found the note still "delivering": its worker died mid-call), the
    adapter first looks for the note's marker on the ticket.

    At most WEBHOOK_ACCOUNT_CONCURRENCY deliveries of one account are in flight at once, so a
    tenant whose endpoint is slow holds that many worker slots, not all of them: a note over
    the cap is put back, due again in WEBHOOK_ACCOUNT_BUSY_DELAY_S, with no attempt counted."""
    settings = ctx.settings
    lease_s = settings.JOB_LEASE_S
    with db.transaction() as session:
        if _account_busy(session, note_id, settings.WEBHOOK_ACCOUNT_CONCURRENCY):
            busy_delay = settings.WEBHOOK_ACCOUNT_BUSY_DELAY_S
            postponed = session.execute(
                update(ResolutionNote)
                .where(
                    ResolutionNote.id == note_id,
                    ResolutionNote.markdown.is_not(None),
                    ResolutionNote.delivery_status.in_(OPEN_STATUSES),
                    lease_free(),
                )
                .values(next_attempt_at=func.now() + timedelta(seconds=busy_delay))
                .returning(ResolutionNote.delivery_status)
            ).scalar_one_or_none()
            if postponed is None:
                return DeliveryStep("skipped")
            return DeliveryStep("account_busy", countdown=busy_delay)
        previous_status = session.scalars(
            select(ResolutionNote.delivery_status)
            .where(ResolutionNote.id == note_id)
            .with_for_update()
        ).one_or_none()
        claimed = session.execute(
            update(ResolutionNote)
            .where(
                ResolutionNote.id == note_id,
                ResolutionNote.markdown.is_not(None),
                ResolutionNote.delivery_status.in_(OPEN_STATUSES),
                or_(
                    ResolutionNote.next_attempt_at.is_(None),
                    ResolutionNote.next_attempt_at <= func.now(),
                ),
                lease_free(),
            )
            .values(
                lease_owner=owner,
                lease_expires_at=func.now() + timedelta(seconds=lease_s),
                delivery_status="delivering",
            )
            .returning(ResolutionNote.id)
        ).one_or_none()
        if claimed is None:
            return DeliveryStep("skipped")
        note = session.get(ResolutionNote, note_id)
        assert note is not None
        integration = session.scalars(
            select(TicketingIntegration).where(TicketingIntegration.account_id == note.account_id)
        ).one_or_none()
        if integration is None or integration.status != "active":
            status = "not_configured" if integration is None else "disabled"
            note.delivery_status = status
            note.last_error = (
                None
                if integration is None
                else f"ticketing endpoint disabled: {integration.disabled_reason or 'unknown'}"
            )
            note.next_attempt_at = None
            note.lease_owner = None
            note.lease_expires_at = None
            return DeliveryStep(status)
        run_attempts = _run_attempts(session, note)
        attempt_number = int(note.attempts) + 1
        look_first = int(note.attempts) > 0 or previous_status == "delivering"
        configured = integrations.target_for(
            integration,
            timeout_s=settings.WEBHOOK_TIMEOUT_S,
            allow_private=settings.ALLOW_PRIVATE_WEBHOOKS,
        )
        url, integration_id = integration.url, integration.id
        ticket_ref, markdown = note.ticket_ref, note.markdown or ""
        payload = delivery.build_payload(
            note_id=str(note.id),
            session_id=str(note.session_id),
            ticket_ref=note.ticket_ref,
            state_version=note.state_version,
            markdown=note.markdown or "",
            generated_at=note.generated_at or note.created_at,
        )

    # No transaction is held across the HTTP call.
    with heartbeat(max(0.2, lease_s / 3), lambda: extend_lease(note_id, owner, lease_s)):
        result = ticketing.attempt(
            configured.adapter,
            configured.target,
            note_id=str(note_id),
            ticket_ref=ticket_ref,
            markdown=markdown,
            webhook_payload=payload,
            look_first=look_first,
        )
    WEBHOOK_DELIVERIES.labels(outcome=result.outcome.value).inc()

    values: dict[str, Any] = {
        "attempts": attempt_number,
        "lease_owner": None,
        "lease_expires_at": None,
    }
    outcome = result.outcome.value
    countdown: float | None = None
    if result.outcome is delivery.Outcome.DELIVERED:
        posted = result.posted
        values.update(
            delivery_status="delivered",
            delivered_at=func.now(),
            last_error=None,
            last_error_detail=None,
            next_attempt_at=None,
            delivery_kind=configured.kind,
            delivered_ticket=(posted.ticket or None) if posted else None,
            delivered_ref=posted.external_id if posted else None,
            delivered_link=posted.link if posted else None,
        )
    elif result.outcome is delivery.Outcome.RETRY:
        delay = delivery.next_delay(
            run_attempts + 1, settings.WEBHOOK_RETRY_SCHEDULE_S, result.retry_after
        )
        if delay is None:
            outcome = "failed"
            values.update(
                delivery_status="failed",
                last_error=f"gave up after {run_attempts + 1} attempts: {result.error}",
                last_error_detail=result.detail,
                next_attempt_at=None,
            )
        else:
            values.update(
                delivery_status="retrying",
                last_error=result.error,
                last_error_detail=result.detail,
                next_attempt_at=func.now() + timedelta(seconds=delay),
            )
            countdown = delay if delay <= MAX_COUNTDOWN_S else None
    elif result.outcome is delivery.Outcome.DISABLED:
        values.update(
            delivery_status="disabled",
            last_error=result.error,
            last_error_detail=result.detail,
            next_attempt_at=None,
        )
    else:
        values.update(
            delivery_status="failed",
            last_error=result.error,
            last_error_detail=result.detail,
            next_attempt_at=None,
        )

    try:
        with db.transaction() as session:
            updated = session.execute(
                update(ResolutionNote)
                .where(ResolutionNote.id == note_id, ResolutionNote.lease_owner == owner)
                .values(**values)
                .returning(ResolutionNote.id)
            ).one_or_none()
            if updated is None:
                raise LeaseLost(str(note_id))
            session.execute(
                insert(WebhookAttempt).values(
                    id=uuid.uuid4(),
                    note_id=note_id,
                    attempt_number=attempt_number,
                    url=outbound.origin(url),
                    outcome=outcome,
                    status_code=result.status_code,
                    error=result.error,
                    detail=result.detail,
                    kind=configured.kind,
                    request_id=result.request_id,
                    duration_ms=result.duration_ms,
                )
            )
            if result.outcome is delivery.Outcome.DISABLED:
                session.execute(
                    update(TicketingIntegration)
                    .where(TicketingIntegration.id == integration_id)
                    .values(
                        status="disabled",
                        disabled_reason="endpoint answered 410 Gone",
                    )
                )
    except LeaseLost:
        # Our lease ran out during the call and another worker owns the delivery now; it will
        # deliver again with the same webhook-id, which the receiver deduplicates on.
        log.warning("delivery lease lost; result discarded", note_id=str(note_id))
        return DeliveryStep("skipped")
    except Exception:
        # The outcome could not be recorded (PostgreSQL went away): give the job back rather
        # than leave it to the lease's expiry. Still "delivering", so the next attempt looks
        # for the note on the ticket first.
        try:
            release_lease(note_id, owner)
        except Exception:  # noqa: BLE001 - then the lease expires, as before
            log.warning("could not release the delivery lease", note_id=str(note_id))
        raise
    log.info(
        "webhook attempt",
        note_id=str(note_id),
        attempt=attempt_number,
        outcome=outcome,
        status_code=result.status_code,
    )
    return DeliveryStep(str(values["delivery_status"]), countdown)


def request_redelivery(
    *, account_id: uuid.UUID, session_id: uuid.UUID, kind: str
) -> tuple[uuid.UUID, str]:
    """Queue another delivery of the session's final note (a new run of the schedule).
    Returns (note id, delivery status); the caller enqueues the delivery after the commit."""
    with db.transaction() as session:
        note = find_final_note(session, account_id=account_id, session_id=session_id, kind=kind)
        if note.markdown is None:
            raise Conflict("the note is still being generated")
        if note.delivery_status in ("pending", "delivering"):
            raise Conflict("a delivery of this note is already under way")
        session.execute(
            update(ResolutionNote)
            .where(ResolutionNote.id == note.id)
            .values(delivery_status="pending", next_attempt_at=func.now())
        )
        return note.id, "pending"
