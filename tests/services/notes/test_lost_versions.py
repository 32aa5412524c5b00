"""A note row for a version the session is not resolved at (the commit that resolved it did not
survive a crash, or the session moved on before a row without a snapshot was made) is closed
out once, with its reason, instead of failing and being swept again for ever."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select

from services.notes import resolve
from services.notes.bundle import record_resolution
from services.notes.context import context_for
from shared.config import Settings
from shared.db import db
from shared.models import ResolutionNote
from tests.support.workers import add_fact, create_session, run_sweeper


def _rows(sid: uuid.UUID) -> list[ResolutionNote]:
    with db.session() as session:
        return list(
            session.scalars(select(ResolutionNote).where(ResolutionNote.session_id == sid)).all()
        )


def test_an_event_for_a_version_never_resolved_creates_no_note(
    migrated: Settings, make_user: Any
) -> None:
    user = make_user("owner")
    sid = create_session(user.account_id)
    version = add_fact(sid, user.account_id, "Confirmed: the spooler was stopped")
    # The event says resolved at version + 1; that commit was lost, the session is active.
    created = resolve.on_resolved(
        context_for(migrated),
        session_id=sid,
        account_id=user.account_id,
        state_version=version + 1,
        ticket_ref=None,
    )
    assert created == []
    assert _rows(sid) == []


def test_a_row_without_snapshot_for_a_lost_version_is_closed_out_not_swept_again(
    migrated: Settings, make_user: Any
) -> None:
    user = make_user("owner")
    sid = create_session(user.account_id)
    version = add_fact(sid, user.account_id, "Confirmed: the spooler was stopped")
    # The row an event for a lost commit used to create: no snapshot, a version never resolved.
    with db.transaction() as session:
        note_id = record_resolution(
            session,
            session_id=sid,
            account_id=user.account_id,
            state_version=version + 1,
            ticket_ref=None,
        )
    ctx = context_for(migrated)

    assert resolve.materialise_note(ctx, note_id, owner="test:closer") == "closed"

    (row,) = _rows(sid)
    assert row.markdown is None
    assert row.delivery_status == "failed"
    assert row.lease_owner is None and row.lease_expires_at is None
    assert f"version {version + 1} has no snapshot" in (row.last_error or "")
    assert "active" in (row.last_error or "")
    # Never handed out again, and a second claim finds nothing to do.
    assert run_sweeper(migrated)["materialise"] == 0
    assert resolve.materialise_note(ctx, note_id, owner="test:again") == "skipped"
