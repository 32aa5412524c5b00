"""FlowPilot suggested fixes: the active fix, the templates a fix may name, and persisting a
proposal (superseding the active one). No Flask; the caller owns the transaction. Decisions on
a fix are session writes and live in `services.pilot.sessions`."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.pilot.sessions import get_session
from shared.errors import (
    NotFound,
)
from shared.models import (
    SuggestedFix,
)
from shared.models.exposed import ScriptTemplateSummary
from shared.permissions import template_visibility
from shared.principal import Principal

# How often persisting a fix retries after losing a race on the one-active-fix index.
FIX_INSERT_ATTEMPTS = 3
ONE_ACTIVE_FIX_INDEX = "uq_suggested_fixes_one_active"


def list_fixes(session: Session, principal: Principal, session_id: uuid.UUID) -> list[SuggestedFix]:
    get_session(session, principal, session_id)
    return list(
        session.scalars(
            select(SuggestedFix)
            .where(
                SuggestedFix.session_id == session_id,
                SuggestedFix.account_id == principal.account_id,
            )
            .order_by(SuggestedFix.created_at.desc(), SuggestedFix.id.desc())
        )
    )


def active_fix(
    session: Session, account_id: uuid.UUID, session_id: uuid.UUID
) -> SuggestedFix | None:
    return session.scalars(
        select(SuggestedFix).where(
            SuggestedFix.session_id == session_id,
            SuggestedFix.account_id == account_id,
            SuggestedFix.superseded_at.is_(None),
        )
    ).one_or_none()


def get_active_fix(session: Session, principal: Principal, session_id: uuid.UUID) -> SuggestedFix:
    get_session(session, principal, session_id)
    fix = active_fix(session, principal.account_id, session_id)
    if fix is None:
        raise NotFound("No active suggested fix")
    return fix


def account_principal(account_id: uuid.UUID) -> Principal:
    """A stand-in for "the account as a whole": an owner of it sees every template the account
    can see (built-ins and all of its own), which is what a fix's template_id must be."""
    return Principal(
        id=uuid.UUID(int=0),
        account_id=account_id,
        team_id=None,
        role="owner",
        is_super_admin=False,
        email="",
    )


def visible_template_id(
    session: Session, account_id: uuid.UUID, template_id: str | None
) -> uuid.UUID | None:
    """The template id when it names a live template visible to the account, else None."""
    if not template_id:
        return None
    try:
        candidate = uuid.UUID(str(template_id))
    except ValueError:
        return None
    found = session.scalars(
        select(ScriptTemplateSummary.id).where(
            ScriptTemplateSummary.id == candidate,
            ScriptTemplateSummary.is_active.is_(True),
            template_visibility(account_principal(account_id), ScriptTemplateSummary),
        )
    ).one_or_none()
    return found


def persist_fix(
    session: Session,
    *,
    account_id: uuid.UUID,
    session_id: uuid.UUID,
    values: dict[str, Any],
    source_message_id: uuid.UUID | None = None,
) -> SuggestedFix:
    """Supersede the active fix and insert the new one, in the caller's transaction.

    Callers normally hold the session's row lock (they bumped first), which serialises this.
    A writer that did not, and inserted concurrently, makes our INSERT hit the partial unique
    index once it commits; the savepoint then rolls back and the supersede-and-insert runs
    again, now seeing (and superseding) the winner's row.
    """
    for attempt in range(1, FIX_INSERT_ATTEMPTS + 1):
        try:
            with session.begin_nested():
                session.execute(
                    update(SuggestedFix)
                    .where(
                        SuggestedFix.session_id == session_id,
                        SuggestedFix.superseded_at.is_(None),
                    )
                    .values(superseded_at=func.now())
                    .execution_options(synchronize_session=False)
                )
                fix = SuggestedFix(
                    session_id=session_id,
                    account_id=account_id,
                    source_message_id=source_message_id,
                    **values,
                )
                session.add(fix)
                session.flush()
            return fix
        except IntegrityError as exc:
            if ONE_ACTIVE_FIX_INDEX not in str(exc.orig) or attempt == FIX_INSERT_ATTEMPTS:
                raise
    raise AssertionError("unreachable")  # pragma: no cover
