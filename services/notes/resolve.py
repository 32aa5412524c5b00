"""Resolve (journey 4): the note rows of a resolved version, and materialising each note (its
text obtained once, stored durably, its delivery enqueued). Jobs are claimed with leases
(see :mod:`services.notes.leases`)."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update

from services.notes import liveness
from services.notes.bundle import (
    SessionState,
    loaded_from_snapshot,
    read_session_state,
    record_resolution,
)
from services.notes.cache import FlightLock
from services.notes.context import NotesContext
from services.notes.generation import obtain_note
from services.notes.heartbeat import heartbeat
from services.notes.leases import OPEN_STATUSES, extend_lease, lease_free, release_lease
from services.notes.vocabulary import NOTE_KINDS
from shared.db import db
from shared.models import ResolutionNote
from shared.observability import get_logger
from shared.tasks import TASK_DELIVER, TASK_MATERIALISE

log = get_logger(__name__)

# How long (in NOTES_LOCK_TTL_S) to wait for another process's generation of the same version
# before giving up (the task then fails visibly and is retried, or swept again).
MAX_GENERATION_ROUNDS = 5


def on_resolved(
    ctx: NotesContext,
    *,
    session_id: uuid.UUID,
    account_id: uuid.UUID,
    state_version: int,
    ticket_ref: str | None,
) -> list[uuid.UUID]:
    """Make sure the note rows of a resolved version exist, then (after the commit) enqueue
    their materialisation.

    The Resolve transaction created them already (with their snapshot); a row missing is
    created only if the session is resolved at that version now. An event for a version the
    session was never resolved at (its commit did not survive a crash) creates nothing: its
    note could never be made, and its materialisation would fail for ever."""
    with db.transaction() as session:
        state = read_session_state(session, session_id, account_id=account_id)
        if state is None:
            return []
        existing = set(
            session.scalars(
                select(ResolutionNote.kind).where(
                    ResolutionNote.session_id == session_id,
                    ResolutionNote.state_version == state_version,
                )
            ).all()
        )
        note_ids: list[uuid.UUID] = []
        for kind in NOTE_KINDS:
            if kind not in existing and not _resolved_at(state, state_version):
                log.warning(
                    "resolved event for a version the session is not resolved at; no note",
                    session_id=str(session_id),
                    state_version=state_version,
                    status=state.status,
                    resolved_version=state.resolved_version,
                    kind=kind,
                )
                continue
            note_ids.append(
                record_resolution(
                    session,
                    session_id=session_id,
                    account_id=account_id,
                    state_version=state_version,
                    ticket_ref=ticket_ref,
                    kind=kind,
                )
            )
    for note_id in note_ids:
        ctx.enqueue(TASK_MATERIALISE, str(note_id))
    return note_ids


def _resolved_at(state: SessionState | None, version: int) -> bool:
    return state is not None and state.status == "resolved" and state.resolved_version == version


# ── Materialise ───────────────────────────────────────────────────────────────────────────────


def materialise_note(ctx: NotesContext, note_id: uuid.UUID, *, owner: str) -> str:
    """Claim the note, obtain its text (cache, fingerprint reuse or one generation), store it
    and enqueue the delivery. Returns what happened.

    A note without a snapshot is made from the session's current data, so only while the
    session is resolved at the note's version; otherwise that version's data is gone (the
    session was reopened, or the version's commit was lost in a crash) and the note is closed
    out (`failed`, with the reason, never claimed again) instead of failing for ever.

    While another process holds the version's generation lock, this waits for its note; a
    holder whose process stopped beating is dead, and its lock is taken over
    (services.notes.liveness), so a generation killed with its worker delays the note by the
    liveness bound, not the lock's expiry."""
    lease_s = ctx.settings.JOB_LEASE_S
    with db.transaction() as session:
        claimed = session.execute(
            update(ResolutionNote)
            .where(
                ResolutionNote.id == note_id,
                ResolutionNote.markdown.is_(None),
                ResolutionNote.delivery_status.in_(OPEN_STATUSES),
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
    if resolved is None and not _resolved_at(state, version):
        _close_out(note_id, owner, state, version)
        return "closed"
    try:
        with heartbeat(max(0.2, lease_s / 3), lambda: extend_lease(note_id, owner, lease_s)):
            payload = ctx.cache.get(kind, str(session_id), version)
            # Waited in slices of a beat, so a dead holder's lock is noticed within one.
            slice_s = max(0.2, min(ctx.lock_ttl_s, ctx.settings.WORKER_BEAT_S))
            deadline = time.monotonic() + MAX_GENERATION_ROUNDS * ctx.lock_ttl_s
            while payload is None:
                got = obtain_note(
                    ctx, kind, session_id, wait_s=slice_s, final=True, loaded=resolved
                )
                if got is not None and got.state_version == version:
                    payload = got.payload
                    break
                if got is None:
                    _take_over_from_the_dead(ctx, kind, session_id, version)
                if time.monotonic() >= deadline:
                    raise RuntimeError(
                        f"no note for session {session_id} after "
                        f"{MAX_GENERATION_ROUNDS * ctx.lock_ttl_s:g} s of waiting"
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


def _close_out(note_id: uuid.UUID, owner: str, state: SessionState | None, version: int) -> None:
    """A note that can never be made: failed, with why, never claimed or swept again."""
    if state is None:
        reason = "the session no longer exists"
    elif state.status == "resolved":
        reason = f"the session is resolved at version {state.resolved_version}, not {version}"
    else:
        reason = f"the session is {state.status} at version {state.state_version}"
    with db.transaction() as session:
        session.execute(
            update(ResolutionNote)
            .where(ResolutionNote.id == note_id, ResolutionNote.lease_owner == owner)
            .values(
                delivery_status="failed",
                last_error=f"not made: version {version} has no snapshot and {reason}",
                next_attempt_at=None,
                lease_owner=None,
                lease_expires_at=None,
            )
        )
    log.warning(
        "note closed out: its version's data is gone",
        note_id=str(note_id),
        state_version=version,
        reason=reason,
    )


def _take_over_from_the_dead(
    ctx: NotesContext, kind: str, session_id: uuid.UUID, version: int
) -> None:
    """Release the version's generation lock if the process holding it stopped beating."""
    holder = ctx.cache.lock_holder(kind, str(session_id), version)
    if holder is None or not liveness.holder_is_dead(holder, ctx.settings.WORKER_DEAD_AFTER_S):
        return
    lock = FlightLock(ctx.cache.lock_key(kind, str(session_id), version), holder)
    if ctx.cache.release(lock):
        log.warning(
            "generation lock of a dead worker taken over",
            session_id=str(session_id),
            state_version=version,
            holder=liveness.owner_process(holder),
        )


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
