"""State changes and pre-warm: older versions' keys dropped on each `session.state_changed`,
and the latest version's note generated once the session has been quiet."""

from __future__ import annotations

import uuid

from services.notes.bundle import LoadedBundle
from services.notes.context import NotesContext
from services.notes.generation import backing_off, obtain_note
from services.notes.vocabulary import NOTE_KINDS


def on_state_changed(ctx: NotesContext, session_id: uuid.UUID, state_version: int) -> bool:
    """Drop older versions' keys and record the event for the quiet timer. Returns whether a
    pre-warm check should be scheduled."""
    sid = str(session_id)
    ctx.cache.delete_older(sid, state_version)
    ctx.cache.note_event(sid, state_version, ctx.settings.NOTES_PREWARM_QUIET_S)
    return ctx.settings.NOTES_PREWARM


def prewarm(
    ctx: NotesContext, session_id: uuid.UUID, state_version: int, kind: str = NOTE_KINDS[0]
) -> tuple[str, float | None]:
    """Generate the version's note if it is still the latest, the session is active and it has
    been quiet. Returns (what happened, countdown to check again or None)."""
    if not ctx.settings.NOTES_PREWARM:
        return "disabled", None
    left = ctx.cache.quiet_remaining(
        str(session_id), state_version, ctx.settings.NOTES_PREWARM_QUIET_S
    )
    if left is None:
        return "superseded", None
    if left > 0:
        return "not_quiet", left
    if backing_off(ctx, str(session_id)):
        # The LLM failed for this session moments ago: the next state change or preview
        # tries again, not this background check.
        return "backoff", None

    def still_current(loaded: LoadedBundle) -> bool:
        return loaded.session.status == "active" and loaded.state_version == state_version

    got = obtain_note(ctx, kind, session_id, only_if=still_current)
    return (got.source if got is not None else "skipped"), None
