"""Worker liveness (services.notes.liveness): the reclaim rules, in process (against real
workers that are killed or stall: tests/services/notes/workers/test_worker_liveness.py)."""

from __future__ import annotations

import time
import uuid
from dataclasses import replace
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update

from services.notes import liveness
from services.notes.bundle import record_resolution
from shared.config import Settings
from shared.db import db
from shared.models import ResolutionNote, WorkerProcess
from tests.support.workers import create_session

DEFAULTS = Settings()


# ── The rules, in this process ────────────────────────────────────────────────────────────────


def _process(process_id: str, *, silent_s: float) -> None:
    with db.transaction() as session:
        session.add(
            WorkerProcess(
                id=process_id,
                hostname="test",
                pid=1,
                beat_at=func.now() - timedelta(seconds=silent_s),
            )
        )


def _leased(account_id: uuid.UUID, owner: str, *, markdown: str | None = None) -> uuid.UUID:
    sid = create_session(account_id)
    with db.transaction() as session:
        note_id = record_resolution(
            session, session_id=sid, account_id=account_id, state_version=1, ticket_ref=None
        )
        session.execute(
            update(ResolutionNote)
            .where(ResolutionNote.id == note_id)
            .values(
                lease_owner=owner,
                lease_expires_at=func.now() + timedelta(seconds=45),
                markdown=markdown,
                delivery_status="delivering" if markdown else "pending",
            )
        )
    return note_id


def _lease_live(note_id: uuid.UUID) -> bool:
    with db.session() as session:
        return bool(
            session.scalar(
                select(ResolutionNote.lease_expires_at > func.now()).where(
                    ResolutionNote.id == note_id
                )
            )
        )


def test_only_the_leases_of_a_silent_process_are_expired(migrated: Any, make_user: Any) -> None:
    user = make_user("owner")
    dead, alive = f"dead:{uuid.uuid4().hex[:6]}", f"alive:{uuid.uuid4().hex[:6]}"
    _process(dead, silent_s=DEFAULTS.WORKER_DEAD_AFTER_S + 1)
    _process(alive, silent_s=1)
    generating = _leased(user.account_id, f"{dead}/task-1:abc")
    delivering = _leased(user.account_id, f"{dead}/task-2:abd", markdown="# Note")
    kept = _leased(user.account_id, f"{alive}/task-3:abe")
    # A lease of a process that never beats (an old owner, or the API's) only expires.
    untagged = _leased(user.account_id, "task-4:abf")

    reclaimed = liveness.reclaim_dead(DEFAULTS.WORKER_DEAD_AFTER_S)

    assert {(job.note_id, job.materialise) for job in reclaimed} == {
        (generating, True),
        (delivering, False),
    }
    assert not _lease_live(generating) and not _lease_live(delivering)
    assert _lease_live(kept) and _lease_live(untagged)
    with db.session() as session:
        assert session.get(WorkerProcess, dead).reclaimed_at is not None
        assert session.get(WorkerProcess, alive).reclaimed_at is None
        # The owner is still named: a process wrongly taken for dead can renew its lease.
        assert session.get(ResolutionNote, generating).lease_owner == f"{dead}/task-1:abc"
    assert liveness.holder_is_dead(f"{dead}/token", DEFAULTS.WORKER_DEAD_AFTER_S)
    assert not liveness.holder_is_dead(f"{alive}/token", DEFAULTS.WORKER_DEAD_AFTER_S)
    assert not liveness.holder_is_dead("untagged-token", DEFAULTS.WORKER_DEAD_AFTER_S)
    # Handed on once: a second look finds nothing more to do.
    assert liveness.reclaim_dead(DEFAULTS.WORKER_DEAD_AFTER_S) == []


def test_a_process_whose_own_beat_failed_takes_nobody_for_dead(
    migrated: Settings, make_user: Any
) -> None:
    user = make_user("owner")
    dead = f"dead:{uuid.uuid4().hex[:6]}"
    _process(dead, silent_s=DEFAULTS.WORKER_DEAD_AFTER_S + 1)
    note_id = _leased(user.account_id, f"{dead}/task:abc")
    enqueued: list[liveness.Reclaimed] = []
    beat = liveness.ProcessBeat(replace(migrated, WORKER_BEAT_S=2.0), enqueued.append)
    try:
        assert not beat.can_judge()  # no beat yet
        assert beat.beat_once()
        # PostgreSQL could not be reached a moment ago: the silence of others proves nothing.
        beat._failed_at = time.monotonic()
        assert beat.reclaim_once() == [] and _lease_live(note_id)
        beat._failed_at = time.monotonic() - DEFAULTS.WORKER_DEAD_AFTER_S - 1
        assert [job.note_id for job in beat.reclaim_once()] == [note_id]
        assert [job.note_id for job in enqueued] == [note_id]
        assert not _lease_live(note_id)
    finally:
        beat.stop()
    with db.session() as session:
        assert session.get(WorkerProcess, beat.process_id) is None  # a clean stop leaves no row


def test_a_restarted_postgres_gives_every_process_time_to_beat_again(migrated: Any) -> None:
    """Silence counts from the server's start: a row that beat before it is not dead until
    WORKER_DEAD_AFTER_S after the start."""
    with db.session() as session:
        up_for = float(
            session.scalar(
                select(func.extract("epoch", func.now() - func.pg_postmaster_start_time()))
            )
        )
    process_id = f"before-start:{uuid.uuid4().hex[:6]}"
    _process(process_id, silent_s=up_for + 60)
    token = f"{process_id}/token"
    assert liveness.holder_is_dead(token, DEFAULTS.WORKER_DEAD_AFTER_S) == (
        up_for > DEFAULTS.WORKER_DEAD_AFTER_S
    )
    # Judged against a longer silence than the server has been up: not dead yet.
    assert not liveness.holder_is_dead(token, up_for + 30)
