"""Leases on note jobs.


PostgreSQL holds the state of every job that must not be lost. A note row is a job in two
steps, each claimed with a lease (`lease_owner`, `lease_expires_at = now() + JOB_LEASE_S`)
taken by one conditional `UPDATE ... RETURNING`:

1. materialise: `markdown IS NULL` until the note is generated (or reused from the cache);
2. deliver: `delivery_status` pending/retrying/delivering with `next_attempt_at <= now()`.

A worker keeps its lease alive with a heartbeat while it works, and gives it up when it
finishes. A worker that dies (SIGKILL included) stops beating; once the lease has expired the
sweeper (Celery beat, every SWEEP_INTERVAL_S) enqueues the job again. So a killed worker delays
a job by at most JOB_LEASE_S + SWEEP_INTERVAL_S (45 s + 10 s by default). The broker only makes
the work fast; it is never what makes it happen.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import func, or_, update

from shared.db import db
from shared.models import ResolutionNote

# Statuses in which a delivery is still owed.
OPEN_STATUSES = ("pending", "retrying", "delivering")


class LeaseLost(RuntimeError):
    """Our lease expired and another worker claimed the job: our result is discarded."""


def lease_free() -> Any:
    return or_(
        ResolutionNote.lease_expires_at.is_(None), ResolutionNote.lease_expires_at < func.now()
    )


def new_lease_owner(task_id: str | None = None) -> str:
    return f"{task_id or 'direct'}:{uuid.uuid4().hex[:12]}"


def extend_lease(note_id: uuid.UUID, owner: str, lease_s: int) -> None:
    with db.transaction() as session:
        session.execute(
            update(ResolutionNote)
            .where(ResolutionNote.id == note_id, ResolutionNote.lease_owner == owner)
            .values(lease_expires_at=func.now() + timedelta(seconds=lease_s))
        )


def release_lease(note_id: uuid.UUID, owner: str) -> None:
    with db.transaction() as session:
        session.execute(
            update(ResolutionNote)
            .where(ResolutionNote.id == note_id, ResolutionNote.lease_owner == owner)
            .values(lease_owner=None, lease_expires_at=None)
        )
