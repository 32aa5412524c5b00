"""FlowPilot sessions domain: sessions, their writes' bump, fix decisions, resolve and reopen.
Facts live in `facts`, suggested fixes in `fixes`.

No Flask. Every function takes an open SQLAlchemy session (the caller owns the transaction,
normally `shared.events.write_transaction()`) and the acting principal. Every query is scoped
to the principal's account, so another account's session, fact or fix reads as missing (404).

Every write calls `bump()` exactly once, and first: the bump's `UPDATE ... RETURNING` takes the
session's row lock, so concurrent writes to one session are serialised from that point and each
gets its own version. A check that fails after the bump raises, and the transaction (bump and
outbox row included) rolls back.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from services.pilot.search_document import store_search_document
from shared import events, resolution_snapshot
from shared.errors import (
    AI_SESSION_NOT_FOUND,
    SUGGESTED_FIX_NOT_FOUND,
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
)
from shared.event_payloads import FixDecided, SessionEvent, SessionResolved
from shared.models import (
    AISession,
    SessionFact,
    SuggestedFix,
)
from shared.models.exposed import NotesIntegration
from shared.permissions import can_create_content
from shared.principal import Principal
from shared.session_errors import session_write_errors

# Causes written into `session.state_changed` events.
CAUSE_SESSION_CREATED = "session_created"
CAUSE_SESSION_UPDATED = "session_updated"
CAUSE_FACT_CREATED = "fact_created"
CAUSE_FACT_UPDATED = "fact_updated"
CAUSE_FACT_DELETED = "fact_deleted"
CAUSE_FIX_DECIDED = "fix_decided"
CAUSE_RESOLVED = "session_resolved"
CAUSE_REOPENED = "session_reopened"


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Versioned:
    """A written object and the session's state_version its write produced."""

    obj: Any
    state_version: int


# ── Access ────────────────────────────────────────────────────────────────


def _scoped_session(session_id: uuid.UUID, principal: Principal) -> Any:
    return select(AISession).where(
        AISession.id == session_id, AISession.account_id == principal.account_id
    )


def get_session(session: Session, principal: Principal, session_id: uuid.UUID) -> AISession:
    row: AISession | None = session.scalars(_scoped_session(session_id, principal)).one_or_none()
    if row is None:
        raise NotFound(AI_SESSION_NOT_FOUND)
    return row


def require_writer(session: Session, principal: Principal, session_id: uuid.UUID | None) -> None:
    """Viewers read only. Another account's session stays a 404, even for a viewer."""
    if can_create_content(principal):
        return
    if session_id is not None:
        get_session(session, principal, session_id)
    raise PermissionDenied("Engineer access required to change sessions")


def bump(
    session: Session,
    principal: Principal,
    session_id: uuid.UUID,
    cause: str,
    *,
    require_active: bool = True,
    extra_events: Iterable[Callable[..., SessionEvent]] = (),
) -> int:
    """`shared.events.bump` with its errors turned into the API's 404 and 409."""
    with session_write_errors():
        return events.bump(
            session,
            session_id=session_id,
            account_id=principal.account_id,
            cause=cause,
            require_active=require_active,
            extra_events=extra_events,
        )


def _locked_session(session: Session, principal: Principal, session_id: uuid.UUID) -> AISession:
    """The session row after a bump in this transaction, read fresh (the bump changed it)."""
    row: AISession | None = session.scalars(
        _scoped_session(session_id, principal).execution_options(populate_existing=True)
    ).one_or_none()
    if row is None:  # pragma: no cover - the bump just found it under its row lock
        raise NotFound(AI_SESSION_NOT_FOUND)
    return row


# ── Sessions ──────────────────────────────────────────────────────────────


def create_session(
    session: Session,
    principal: Principal,
    *,
    title: str,
    ticket_ref: str | None = None,
    problem: str | None = None,
) -> Versioned:
    """A new active session. Its creation is its first write: state_version 1."""
    require_writer(session, principal, None)
    row = AISession(
        account_id=principal.account_id,
        created_by=principal.id,
        title=title,
        ticket_ref=ticket_ref,
        problem=problem,
        status="active",
        state_version=0,
    )
    session.add(row)
    session.flush()
    version = bump(session, principal, row.id, CAUSE_SESSION_CREATED)
    return Versioned(_locked_session(session, principal, row.id), version)


def list_sessions(
    session: Session,
    principal: Principal,
    *,
    status: str | None = None,
    search: str | None = None,
    ticket_ref: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[AISession], int]:
    """The account's sessions, newest first, and their unpaged total. `search` matches text in
    the title, ticket ref or problem (case-insensitive, literally: `%` and `_` are not
    wildcards); `ticket_ref` matches the whole reference, case-insensitively."""
    conditions: list[Any] = [AISession.account_id == principal.account_id]
    if status is not None:
        conditions.append(AISession.status == status)
    if search:
        term = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        conditions.append(
            or_(
                AISession.title.ilike(term, escape="\\"),
                AISession.ticket_ref.ilike(term, escape="\\"),
                AISession.problem.ilike(term, escape="\\"),
            )
        )
    if ticket_ref:
        conditions.append(func.lower(AISession.ticket_ref) == ticket_ref.lower())
    total = session.execute(
        select(func.count()).select_from(AISession).where(*conditions)
    ).scalar_one()
    rows = session.scalars(
        select(AISession)
        .where(*conditions)
        .order_by(AISession.created_at.desc(), AISession.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return list(rows), int(total)


def update_session(
    session: Session, principal: Principal, session_id: uuid.UUID, changes: dict[str, Any]
) -> Versioned:
    require_writer(session, principal, session_id)
    version = bump(session, principal, session_id, CAUSE_SESSION_UPDATED)
    row = _locked_session(session, principal, session_id)
    for key in ("title", "ticket_ref", "problem"):
        if key in changes:
            setattr(row, key, changes[key])
    session.flush()
    return Versioned(row, version)


def resolve_session(
    session: Session,
    principal: Principal,
    session_id: uuid.UUID,
    *,
    ticket_ref: str | None,
    resolution: str | None = None,
    force: bool = False,
) -> Versioned:
    """Mark the session resolved at the version this write produces.

    Resolving a resolved session is a 409 (the bump requires an active session). `resolution`
    is recorded as a `resolution` fact in the same write. 422, writing nothing: the note would
    have no resolution (no `resolution` fact and no fix decided other than `dismissed`) and
    `force` is not set; or the account has a ticketing integration and there is no ticket
    reference (the receiver could not place the note). Besides the `session.state_changed`
    event, a `session.resolved` event carries `resolved_version` and `ticket_ref` for the
    notes service, and the note rows are created here with a snapshot of what the note is made
    from (the notes service's `shared.resolution_snapshot` implementation, in this transaction),
    so the final note comes from exactly this version's data.
    """
    require_writer(session, principal, session_id)
    with session_write_errors(read_only="Session is already resolved"):
        version = events.bump(
            session,
            session_id=session_id,
            account_id=principal.account_id,
            cause=CAUSE_RESOLVED,
        )
    row = _locked_session(session, principal, session_id)
    if resolution:
        session.add(
            SessionFact(
                session_id=session_id,
                account_id=principal.account_id,
                kind="resolution",
                text=resolution,
                source="engineer",
                created_by=principal.id,
            )
        )
    if ticket_ref is not None:
        row.ticket_ref = ticket_ref
    if row.ticket_ref is None and _has_ticketing(session, principal.account_id):
        raise InvalidInput(
            "a ticket reference is required: the account's ticketing system places the note by it",
            errors={
                "json": {"ticket_ref": ["required when the account has a ticketing integration"]}
            },
        )
    row.status = "resolved"
    row.resolved_at = _now()
    row.resolved_by = principal.id
    row.resolved_version = version
    session.flush()
    store_search_document(session, session_id, principal.account_id)
    has_resolution = resolution_snapshot.take_snapshot(session, session_id)
    if not force and not has_resolution:
        raise InvalidInput(
            "nothing says what fixed this: record a resolution (a `resolution` fact, or "
            "`resolution` here), decide the suggested fix, or resolve with force: true",
            errors={
                "json": {
                    "resolution": [
                        "missing: no resolution fact and no suggested fix decided other than "
                        "dismissed"
                    ]
                }
            },
        )
    # Written here rather than through bump(extra_events=...) because its payload names the
    # version the bump has just produced.
    events.enqueue_event(
        session,
        SessionResolved(
            account_id=principal.account_id,
            session_id=session_id,
            state_version=version,
            resolved_version=version,
            ticket_ref=row.ticket_ref,
            resolved_by=principal.id,
            forced=force and not has_resolution,
        ),
    )
    session.flush()
    return Versioned(row, version)


def _has_ticketing(session: Session, account_id: uuid.UUID) -> bool:
    return (
        session.scalars(
            select(NotesIntegration.kind).where(NotesIntegration.account_id == account_id)
        ).first()
        is not None
    )


def reopen_session(session: Session, principal: Principal, session_id: uuid.UUID) -> Versioned:
    """Make a resolved session writable again. Its resolution fields are cleared: the next
    resolve records new ones. Reopening an active session is a 409."""
    require_writer(session, principal, session_id)
    version = bump(session, principal, session_id, CAUSE_REOPENED, require_active=False)
    row = _locked_session(session, principal, session_id)
    if row.status != "resolved":
        raise Conflict("Session is not resolved")
    row.status = "active"
    row.resolved_at = None
    row.resolved_by = None
    row.resolved_version = None
    session.flush()
    return Versioned(row, version)


# ── Suggested fixes: decisions ───────────────────────────────────────────


def decide_fix(
    session: Session,
    principal: Principal,
    session_id: uuid.UUID,
    fix_id: uuid.UUID,
    decision: str,
) -> Versioned:
    """Record the engineer's decision on the active fix. `dismissed` also supersedes it.

    A superseded fix (dismissed, or replaced by a newer proposal) cannot be decided: 409. A
    fix already decided cannot be decided again (409), except `dismissed` after `one_off`,
    `draft_template` or `build_template`: it was tried and did not work, so it is superseded
    and explains nothing in the note any more. Every decision is kept in `decision_history`.
    """
    require_writer(session, principal, session_id)
    version = bump(
        session,
        principal,
        session_id,
        CAUSE_FIX_DECIDED,
        extra_events=[
            partial(FixDecided, fix_id=fix_id, decision=decision, decided_by=principal.id)
        ],
    )
    fix = session.scalars(
        select(SuggestedFix)
        .where(
            SuggestedFix.id == fix_id,
            SuggestedFix.session_id == session_id,
            SuggestedFix.account_id == principal.account_id,
        )
        .with_for_update()
    ).one_or_none()
    if fix is None:
        raise NotFound(SUGGESTED_FIX_NOT_FOUND)
    if fix.superseded_at is not None:
        raise Conflict("This fix has been superseded; decide on the active fix")
    if fix.decision is not None and decision != "dismissed":
        raise Conflict(f"A decision was already recorded on this fix ({fix.decision})")
    now = _now()
    fix.decision = decision
    fix.decided_by = principal.id
    fix.decided_at = now
    fix.decision_history = [
        *(fix.decision_history or []),
        {"decision": decision, "decided_by": str(principal.id), "decided_at": now.isoformat()},
    ]
    if decision == "dismissed":
        fix.superseded_at = now
    session.flush()
    return Versioned(fix, version)
