"""Reading a resolved session's final note with its delivery state and attempts."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.notes.adapters import ADAPTERS
from shared.db import db
from shared.errors import AI_SESSION_NOT_FOUND, NotFound
from shared.models import ResolutionNote, WebhookAttempt
from shared.models.exposed import PilotSession


def find_final_note(
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
        note = find_final_note(
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
