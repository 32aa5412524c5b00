"""Resolving a session, notes side: the note rows of a resolved version, and materialising each
note (its text obtained once, stored durably, its delivery enqueued). Jobs are claimed with
leases (see :mod:`services.notes.leases`)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update

from services.notes.bundle import (
    loaded_from_snapshot,
    read_session_state,
    record_resolution,
)
from services.notes.context import NotesContext
from services.notes.generation import obtain_note
from services.notes.heartbeat import heartbeat
from services.notes.leases import extend_lease, lease_free, release_lease
from services.notes.vocabulary import NOTE_KINDS
from shared.db import db
from shared.models import ResolutionNote
from shared.models.exposed import PilotSession
from shared.tasks import TASK_DELIVER, TASK_MATERIALISE

# Rounds of waiting for another process's generation of the same version before giving up (the
# task then fails visibly and the sweeper hands it out again once the lease expires).
MAX_GENERATION_ROUNDS = 5


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
                lease_free(),
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
        with heartbeat(max(0.2, lease_s / 3), lambda: extend_lease(note_id, owner, lease_s)):
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
        release_lease(note_id, owner)
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
