"""FlowPilot session facts: list, add, edit, delete. No Flask; the caller owns the transaction
(see `services.pilot.sessions`), every query is scoped to the principal's account, and every
write bumps the session first."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.pilot.sessions import (
    CAUSE_FACT_CREATED,
    CAUSE_FACT_DELETED,
    CAUSE_FACT_UPDATED,
    Versioned,
    bump,
    get_session,
    require_writer,
)
from shared.errors import (
    FACT_NOT_FOUND,
    NotFound,
)
from shared.models import (
    SessionFact,
)
from shared.principal import Principal


def list_facts(session: Session, principal: Principal, session_id: uuid.UUID) -> list[SessionFact]:
    get_session(session, principal, session_id)
    return list(
        session.scalars(
            select(SessionFact)
            .where(
                SessionFact.session_id == session_id,
                SessionFact.account_id == principal.account_id,
            )
            .order_by(SessionFact.created_at, SessionFact.id)
        )
    )


def add_fact(
    session: Session, principal: Principal, session_id: uuid.UUID, *, text: str, kind: str
) -> Versioned:
    require_writer(session, principal, session_id)
    version = bump(session, principal, session_id, CAUSE_FACT_CREATED)
    fact = SessionFact(
        session_id=session_id,
        account_id=principal.account_id,
        kind=kind,
        text=text,
        source="engineer",
        created_by=principal.id,
    )
    session.add(fact)
    session.flush()
    return Versioned(fact, version)


def _get_fact(
    session: Session, principal: Principal, session_id: uuid.UUID, fact_id: uuid.UUID
) -> SessionFact:
    fact = session.scalars(
        select(SessionFact).where(
            SessionFact.id == fact_id,
            SessionFact.session_id == session_id,
            SessionFact.account_id == principal.account_id,
        )
    ).one_or_none()
    if fact is None:
        raise NotFound(FACT_NOT_FOUND)
    return fact


def update_fact(
    session: Session,
    principal: Principal,
    session_id: uuid.UUID,
    fact_id: uuid.UUID,
    changes: dict[str, Any],
) -> Versioned:
    require_writer(session, principal, session_id)
    version = bump(session, principal, session_id, CAUSE_FACT_UPDATED)
    fact = _get_fact(session, principal, session_id, fact_id)
    for key in ("text", "kind"):
        if key in changes:
            setattr(fact, key, changes[key])
    session.flush()
    return Versioned(fact, version)


def delete_fact(
    session: Session, principal: Principal, session_id: uuid.UUID, fact_id: uuid.UUID
) -> Versioned:
    require_writer(session, principal, session_id)
    version = bump(session, principal, session_id, CAUSE_FACT_DELETED)
    fact = _get_fact(session, principal, session_id, fact_id)
    session.delete(fact)
    session.flush()
    return Versioned(fact, version)


def facts_by_kind(facts: Sequence[SessionFact]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for fact in facts:
        grouped.setdefault(fact.kind, []).append(fact.text)
    return grouped
