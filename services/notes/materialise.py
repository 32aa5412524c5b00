"""Resolve (journey 4): the durable note, its webhook deliveries, and the sweeper.

PostgreSQL holds the state of every job that must not be lost. A note row is a job in two
steps, each claimed with a lease (`lease_owner`, `lease_expires_at = now() + JOB_LEASE_S`)
taken by one conditional `UPDATE ... RETURNING`:

1. materialise: `markdown IS NULL` until the note is generated (or reused from the cache);
2. deliver: `delivery_status` pending/retrying/delivering with `next_attempt_at <= now()`.

A worker keeps its lease alive with a heartbeat while it works, and gives it up when it
finishes. A worker that dies (SIGKILL included) stops beating; once the lease has expired the
sweeper (Celery beat, every SWEEP_INTERVAL_S) enqueues the job again. So a killed worker delays
a job by at most JOB_LEASE_S + SWEEP_INTERVAL_S (45 s + 10 s by default). The broker only makes
the work fast; it is never what makes it happen.

Retry schedule: `WEBHOOK_RETRY_SCHEDULE_S[i]` is the delay before attempt i + 1 of a run; a run
starts when the note is materialised and again on each redelivery (the attempts after the last
final attempt: delivered, failed or disabled).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, func, insert, or_, select, update
from sqlalchemy.orm import Session

from services.notes import delivery, integrations, ticketing
from services.notes.adapters import ADAPTERS
from services.notes.bundle import loaded_from_snapshot, read_session_state, record_resolution
from services.notes.generator import NOTE_KINDS
from services.notes.preview import (
    TASK_DELIVER,
    TASK_MATERIALISE,
    NotesContext,
    heartbeat,
    obtain_note,
)
from shared import outbound
from shared.db import db
from shared.errors import (
    AI_SESSION_NOT_FOUND,
    Conflict,
    NotFound,
)
from shared.models import ResolutionNote, TicketingIntegration, WebhookAttempt
from shared.models.exposed import PilotSession
from shared.observability import WEBHOOK_DELIVERIES, get_logger

log = get_logger(__name__)

# Statuses in which a delivery is still owed.
OPEN_STATUSES = ("pending", "retrying", "delivering")
# Attempt outcomes that end a run of the retry schedule.
FINAL_OUTCOMES = ("delivered", "failed", "disabled")
# Retries further out than this are left to the sweeper: the Redis broker redelivers an
# unacknowledged countdown task after its visibility timeout, so long countdowns are not kept
# in the broker at all.
MAX_COUNTDOWN_S = 300.0
# Rounds of waiting for another process's generation of the same version before giving up (the
# task then fails visibly and the sweeper hands it out again once the lease expires).
MAX_GENERATION_ROUNDS = 5


class LeaseLost(RuntimeError):
    """Our lease expired and another worker claimed the job: our result is discarded."""


def _lease_free() -> Any:
    return or_(
        ResolutionNote.lease_expires_at.is_(None), ResolutionNote.lease_expires_at < func.now()
    )


def new_lease_owner(task_id: str | None = None) -> str:
    return f"{task_id or 'direct'}:{uuid.uuid4().hex[:12]}"


def _extend_lease(note_id: uuid.UUID, owner: str, lease_s: int) -> None:
    with db.transaction() as session:
        session.execute(
            update(ResolutionNote)
            .where(ResolutionNote.id == note_id, ResolutionNote.lease_owner == owner)
            .values(lease_expires_at=func.now() + timedelta(seconds=lease_s))
        )


def _release_lease(note_id: uuid.UUID, owner: str) -> None:
    with db.transaction() as session:
        session.execute(
            update(ResolutionNote)
            .where(ResolutionNote.id == note_id, ResolutionNote.lease_owner == owner)
            .values(lease_owner=None, lease_expires_at=None)
        )


# ── Resolve → note row ────────────────────────────────────────────────────────────────────────


def on_resolved(
    ctx: NotesContext,
    *,
    session_id: uuid.UUID,
    account_id: uuid.UUID,
    state_version: int,
    ticket_ref: str | None,
) -> list[uuid.UUID]:
    """Create the note rows of a resolved version, then (after the commit) enqueue their
    materialisation."""
    with db.transaction() as session:
        exists_row = session.scalars(
            select(PilotSession.id).where(
                PilotSession.id == session_id, PilotSession.account_id == account_id
            )
        ).one_or_none()
        if exists_row is None:
            return []
        note_ids = [
            record_resolution(
                session,
                session_id=session_id,
                account_id=account_id,
                state_version=state_version,
                ticket_ref=ticket_ref,
                kind=kind,
            )
            for kind in NOTE_KINDS
        ]
    for note_id in note_ids:
        ctx.enqueue(TASK_MATERIALISE, str(note_id))
    return note_ids


# ── Materialise ───────────────────────────────────────────────────────────────────────────────


def materialise_note(ctx: NotesContext, note_id: uuid.UUID, *, owner: str) -> str:
    """Claim the note, obtain its text (cache, fingerprint reuse or one generation), store it
    and enqueue the delivery. Returns what happened."""
    lease_s = ctx.settings.JOB_LEASE_S
    with db.transaction() as session:
        claimed = session.execute(
            update(ResolutionNote)
            .where(
                ResolutionNote.id == note_id,
                ResolutionNote.markdown.is_(None),
                _lease_free(),
            )
            .values(lease_owner=owner, lease_expires_at=func.now() + timedelta(seconds=lease_s))
            .returning(
                ResolutionNote.session_id,
                ResolutionNote.kind,
                ResolutionNote.state_version,
                ResolutionNote.bundle,
            )
        ).one_or_none()
        state = read_session_state(session, claimed[0]) if claimed is not None else None
    if claimed is None:
        return "skipped"
    session_id, kind, version, snapshot = claimed
    # The note is made from exactly the resolved version's data: the snapshot the Resolve
    # transaction took, whatever happened to the session since (reopened, edited...).
    resolved = (
        loaded_from_snapshot(snapshot, state)
        if snapshot is not None and state is not None
        else None
    )
    try:
        with heartbeat(max(0.2, lease_s / 3), lambda: _extend_lease(note_id, owner, lease_s)):
            payload = ctx.cache.get(kind, str(session_id), version)
            rounds = 0
            while payload is None:
                if resolved is None and (state is None or state.state_version != version):
                    # A row without a snapshot (created before snapshots existed) whose session
                    # has moved on: that version's data is gone, so it cannot be made honestly.
                    raise RuntimeError(
                        f"note {note_id}: version {version} has no snapshot and the session "
                        "has changed since"
                    )
                got = obtain_note(
                    ctx, kind, session_id, wait_s=ctx.lock_ttl_s, final=True, loaded=resolved
                )
                if got is not None and got.state_version == version:
                    payload = got.payload
                    break
                rounds += 1
                if rounds >= MAX_GENERATION_ROUNDS:
                    raise RuntimeError(
                        f"no note for session {session_id} after {rounds} rounds of waiting"
                    )
    except BaseException:
        _release_lease(note_id, owner)
        raise

    generated_at = _parse_time(payload.get("generated_at"))
    with db.transaction() as session:
        stored = session.execute(
            update(ResolutionNote)
            .where(ResolutionNote.id == note_id, ResolutionNote.lease_owner == owner)
            .values(
                markdown=payload["markdown"],
                citations=payload.get("citations"),
                generator=payload.get("generator"),
                model=payload.get("model"),
                fingerprint=payload.get("fingerprint"),
                generated_at=generated_at or func.now(),
                delivery_status="pending",
                next_attempt_at=func.now(),
                lease_owner=None,
                lease_expires_at=None,
            )
            .returning(ResolutionNote.id)
        ).one_or_none()
    if stored is None:
        return "lease_lost"
    ctx.enqueue(TASK_DELIVER, str(note_id))
    return "materialised"


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


# ── Deliver ───────────────────────────────────────────────────────────────────────────────────


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
                    _lease_free(),
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
                _lease_free(),
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
    with heartbeat(max(0.2, lease_s / 3), lambda: _extend_lease(note_id, owner, lease_s)):
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
        note = _final_note(session, account_id=account_id, session_id=session_id, kind=kind)
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


# ── Reading ───────────────────────────────────────────────────────────────────────────────────


def _final_note(
    session: Session, *, account_id: uuid.UUID, session_id: uuid.UUID, kind: str, lock: bool = True
) -> ResolutionNote:
    query = (
        select(ResolutionNote)
        .join(PilotSession, PilotSession.id == ResolutionNote.session_id)
        .where(
            ResolutionNote.session_id == session_id,
            ResolutionNote.kind == kind,
            PilotSession.account_id == account_id,
        )
        .order_by(ResolutionNote.state_version.desc())
        .limit(1)
    )
    if lock:
        query = query.with_for_update(of=ResolutionNote)
    note = session.scalars(query).first()
    if note is None:
        found = session.scalars(
            select(PilotSession.id).where(
                PilotSession.id == session_id, PilotSession.account_id == account_id
            )
        ).one_or_none()
        raise NotFound(
            AI_SESSION_NOT_FOUND
            if found is None
            else "no resolution note yet: the session has not been resolved"
        )
    return note


def _delivered_to(note: ResolutionNote) -> dict[str, Any] | None:
    """Where a delivered note landed, for "posted to Zendesk ticket 4711" with its link."""
    if note.delivery_status != "delivered" or not note.delivery_kind:
        return None
    adapter = ADAPTERS.get(note.delivery_kind)
    return {
        "kind": note.delivery_kind,
        "label": adapter.label if adapter is not None else note.delivery_kind,
        "ticket": note.delivered_ticket,
        "ref": note.delivered_ref,
        "link": note.delivered_link,
    }


def final_note(
    *, account_id: uuid.UUID, session_id: uuid.UUID, kind: str, show_errors: bool
) -> dict[str, Any]:
    """The final note of a resolved session with its delivery state and attempts.

    Delivery errors (our reason and the target's sanitised excerpt) only with `show_errors`
    (the account's owners): they describe the customer's endpoint."""
    with db.session() as session:
        note = _final_note(
            session, account_id=account_id, session_id=session_id, kind=kind, lock=False
        )
        attempts = session.scalars(
            select(WebhookAttempt)
            .where(WebhookAttempt.note_id == note.id)
            .order_by(WebhookAttempt.attempt_number)
        ).all()
        return {
            "id": note.id,
            "kind": note.kind,
            "session_id": note.session_id,
            "state_version": note.state_version,
            "ticket_ref": note.ticket_ref,
            "status": "ready" if note.markdown is not None else "generating",
            "markdown": note.markdown,
            "citations": note.citations,
            "generator": note.generator,
            "model": note.model,
            "generated_at": note.generated_at,
            "delivery_status": note.delivery_status,
            "attempts": note.attempts,
            "last_error": note.last_error if show_errors else None,
            "last_error_detail": note.last_error_detail if show_errors else None,
            "delivered_at": note.delivered_at,
            "delivered_to": _delivered_to(note),
            "next_attempt_at": note.next_attempt_at,
            "delivery_attempts": [
                {
                    "attempt_number": a.attempt_number,
                    "outcome": a.outcome,
                    "status_code": a.status_code,
                    "error": a.error if show_errors else None,
                    "detail": a.detail if show_errors else None,
                    "kind": a.kind,
                    "request_id": a.request_id,
                    "duration_ms": a.duration_ms,
                    "created_at": a.created_at,
                }
                for a in attempts
            ],
        }


# ── Sweeper ───────────────────────────────────────────────────────────────────────────────────


def sweep(ctx: NotesContext, *, limit: int = 500) -> dict[str, int]:
    """Hand out again every job whose worker went silent, and create the note rows of resolved
    sessions whose event was lost. Safe to run anywhere, any number of times: the claims
    deduplicate."""
    grace = timedelta(seconds=max(1.0, ctx.settings.SWEEP_INTERVAL_S))
    counts = {"notes_created": 0, "materialise": 0, "deliver": 0}
    with db.transaction() as session:
        kind = NOTE_KINDS[0]
        orphans = session.execute(
            select(
                PilotSession.id,
                PilotSession.account_id,
                PilotSession.resolved_version,
                PilotSession.ticket_ref,
            )
            .where(
                PilotSession.status == "resolved",
                PilotSession.resolved_version.is_not(None),
                PilotSession.resolved_at < func.now() - grace,
                ~exists().where(
                    ResolutionNote.session_id == PilotSession.id,
                    ResolutionNote.kind == kind,
                    ResolutionNote.state_version == PilotSession.resolved_version,
                ),
            )
            .limit(limit)
        ).all()
        created: list[uuid.UUID] = []
        for session_id, account_id, version, ticket_ref in orphans:
            created.append(
                record_resolution(
                    session,
                    session_id=session_id,
                    account_id=account_id,
                    state_version=int(version or 0),
                    ticket_ref=ticket_ref,
                    kind=kind,
                )
            )
        counts["notes_created"] = len(created)
        to_materialise = created + list(
            session.scalars(
                select(ResolutionNote.id)
                .where(
                    ResolutionNote.markdown.is_(None),
                    or_(
                        ResolutionNote.lease_expires_at < func.now(),
                        and_(
                            ResolutionNote.lease_expires_at.is_(None),
                            ResolutionNote.created_at < func.now() - grace,
                        ),
                    ),
                )
                .limit(limit)
            ).all()
        )
        to_deliver = session.scalars(
            select(ResolutionNote.id)
            .where(
                ResolutionNote.markdown.is_not(None),
                ResolutionNote.delivery_status.in_(OPEN_STATUSES),
                or_(
                    and_(
                        ResolutionNote.lease_expires_at < func.now(),
                        or_(
                            ResolutionNote.next_attempt_at.is_(None),
                            ResolutionNote.next_attempt_at <= func.now(),
                        ),
                    ),
                    and_(
                        ResolutionNote.lease_expires_at.is_(None),
                        or_(
                            ResolutionNote.next_attempt_at.is_(None),
                            ResolutionNote.next_attempt_at <= func.now() - grace,
                        ),
                    ),
                ),
            )
            .limit(limit)
        ).all()
    for note_id in to_materialise:
        ctx.enqueue(TASK_MATERIALISE, str(note_id))
    for note_id in to_deliver:
        ctx.enqueue(TASK_DELIVER, str(note_id))
    counts["materialise"] = len(to_materialise)
    counts["deliver"] = len(to_deliver)
    return counts
