"""The stored conversation of a session, as the API lists it."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.pilot import sessions
from shared.models import ChatMessage
from shared.principal import Principal


def list_messages(
    session: Session, principal: Principal, session_id: uuid.UUID, *, limit: int, offset: int
) -> tuple[list[ChatMessage], int]:
    """The session's messages, oldest first, and their unpaged total (404 for a session the
    principal's account does not have)."""
    sessions.get_session(session, principal, session_id)
    conditions = (
        ChatMessage.session_id == session_id,
        ChatMessage.account_id == principal.account_id,
    )
    total = session.execute(
        select(func.count()).select_from(ChatMessage).where(*conditions)
    ).scalar_one()
    rows = session.scalars(
        select(ChatMessage)
        .where(*conditions)
        .order_by(ChatMessage.created_at, ChatMessage.id)
        .limit(limit)
        .offset(offset)
    ).all()
    return list(rows), int(total)
