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
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from services.notes import delivery
from services.notes.generator import NOTE_KINDS
from services.notes.preview import (
    TASK_DELIVER,
    TASK_MATERIALISE,
    NotesContext,
    heartbeat,
    obtain_note,
)
from shared.db import db
from shared.errors import Conflict, NotFound
from shared.models import AISession, ResolutionNote, TicketingIntegration, WebhookAttempt
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


def record_resolution(
    session: Session,
    *,
    session_id: uuid.UUID,
    account_id: uuid.UUID,
    state_version: int,
    ticket_ref: str | None,
    kind: str = NOTE_KINDS[0],
) -> uuid.UUID:
    """The note row for (session, kind, version): created once, whoever asks (insert ... on
    conflict do nothing), so a duplicated event or a sweep creates nothing twice."""
    session.execute(
        pg_insert(ResolutionNote)
        .values(
            id=uuid.uuid4(),
            session_id=session_id,
            account_id=account_id,
            kind=kind,
            state_version=state_version,
            ticket_ref=ticket_ref,
            delivery_status="pending",
            attempts=0,
        )
        .on_conflict_do_nothing(constraint="uq_resolution_notes_version")
    )
    note_id = session.scalars(
        select(ResolutionNote.id).where(
            ResolutionNote.session_id == session_id,
            ResolutionNote.kind == kind,
            ResolutionNote.state_version == state_version,
        )
    ).one()
    return note_id


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
            select(AISession.id).where(
                AISession.id == session_id, AISession.account_id == account_id
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
            .returning(ResolutionNote.session_id, ResolutionNote.kind, ResolutionNote.state_version)
        ).one_or_none()
    if claimed is None:
        return "skipped"
    session_id, kind, version = claimed
    try:
        with heartbeat(max(0.2, lease_s / 3), lambda: _extend_lease(note_id, owner, lease_s)):
            payload = ctx.cache.get(kind, str(session_id), version)
            rounds = 0
            while payload is None:
                # The session is read-only once resolved, so the version read here is normally
                # the resolved one. If it was reopened and changed since, the note is made from
                # the newest data (the resolved version's data no longer exists).
                got = obtain_note(ctx, kind, session_id, wait_s=ctx.lock_ttl_s, final=True)
                if got is not None:
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


def deliver_note(ctx: NotesContext, note_id: uuid.UUID, *, owner: str) -> DeliveryStep:
    """One delivery attempt of a due note, recorded with its outcome."""
    settings = ctx.settings
    lease_s = settings.JOB_LEASE_S
    with db.transaction() as session:
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
        url, secret, integration_id = integration.url, integration.secret, integration.id
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
        result = delivery.deliver(
            url,
            secret,
            payload,
            msg_id=str(note_id),
            timeout_s=settings.WEBHOOK_TIMEOUT_S,
            allow_private=settings.ALLOW_PRIVATE_WEBHOOKS,
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
        values.update(
            delivery_status="delivered",
            delivered_at=func.now(),
            last_error=None,
            next_attempt_at=None,
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
                next_attempt_at=None,
            )
        else:
            values.update(
                delivery_status="retrying",
                last_error=result.error,
                next_attempt_at=func.now() + timedelta(seconds=delay),
            )
            countdown = delay if delay <= MAX_COUNTDOWN_S else None
    elif result.outcome is delivery.Outcome.DISABLED:
        values.update(delivery_status="disabled", last_error=result.error, next_attempt_at=None)
    else:
        values.update(delivery_status="failed", last_error=result.error, next_attempt_at=None)

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
                    url=url,
                    outcome=outcome,
                    status_code=result.status_code,
                    error=result.error,
                    duration_ms=result.duration_ms,
                )
            )
            if result.outcome is delivery.Outcome.DISABLED:
                session.execute(
                    update(TicketingIntegration)
                    .where(TicketingIntegration.id == integration_id)
                    .values(
                        status="disabled",
                        disabled_reason=f"endpoint answered 410 Gone: {result.error or ''}"[:500],
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
        .join(AISession, AISession.id == ResolutionNote.session_id)
        .where(
            ResolutionNote.session_id == session_id,
            ResolutionNote.kind == kind,
            AISession.account_id == account_id,
        )
        .order_by(ResolutionNote.state_version.desc())
        .limit(1)
    )
    if lock:
        query = query.with_for_update(of=ResolutionNote)
    note = session.scalars(query).first()
    if note is None:
        found = session.scalars(
            select(AISession.id).where(
                AISession.id == session_id, AISession.account_id == account_id
            )
        ).one_or_none()
        raise NotFound(
            "AI session not found"
            if found is None
            else "no resolution note yet: the session has not been resolved"
        )
    return note


def final_note(*, account_id: uuid.UUID, session_id: uuid.UUID, kind: str) -> dict[str, Any]:
    """The final note of a resolved session with its delivery state and attempts."""
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
            "generator": note.generator,
            "model": note.model,
            "generated_at": note.generated_at,
            "delivery_status": note.delivery_status,
            "attempts": note.attempts,
            "last_error": note.last_error,
            "delivered_at": note.delivered_at,
            "next_attempt_at": note.next_attempt_at,
            "delivery_attempts": [
                {
                    "attempt_number": a.attempt_number,
                    "outcome": a.outcome,
                    "status_code": a.status_code,
                    "error": a.error,
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
                AISession.id, AISession.account_id, AISession.resolved_version, AISession.ticket_ref
            )
            .where(
                AISession.status == "resolved",
                AISession.resolved_version.is_not(None),
                AISession.resolved_at < func.now() - grace,
                ~exists().where(
                    ResolutionNote.session_id == AISession.id,
                    ResolutionNote.kind == kind,
                    ResolutionNote.state_version == AISession.resolved_version,
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
