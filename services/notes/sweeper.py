"""The sweeper (Celery beat, every SWEEP_INTERVAL_S): hands out again every note job whose lease
expired or that nobody claimed, and creates the note rows of resolved sessions whose event was
lost. The broker only makes the work fast; the leases and this sweep make it happen.

A job held by a worker process that died is handed on sooner, by the other worker processes'
liveness check every WORKER_BEAT_S (services.notes.liveness), which expires its lease; this
sweep is what remains when no worker process is left to notice (see services.notes.leases)."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import and_, exists, func, or_, select

from services.notes.bundle import record_resolution
from services.notes.context import NotesContext
from services.notes.leases import OPEN_STATUSES
from services.notes.vocabulary import NOTE_KINDS
from shared.db import db
from shared.models import ResolutionNote
from shared.models.exposed import PilotSession
from shared.tasks import TASK_DELIVER, TASK_MATERIALISE


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
                    # A note closed out as impossible to make is never handed out again.
                    ResolutionNote.delivery_status.in_(OPEN_STATUSES),
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
