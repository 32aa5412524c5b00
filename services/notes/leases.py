"""Leases on note jobs.


PostgreSQL holds the state of every job that must not be lost. A note row is a job in two
steps, each claimed with a lease (`lease_owner`, `lease_expires_at = now() + JOB_LEASE_S`)
taken by one conditional `UPDATE ... RETURNING`:

1. materialise: `markdown IS NULL` until the note is generated (or reused from the cache);
2. deliver: `delivery_status` pending/retrying/delivering with `next_attempt_at <= now()`.

A worker keeps its lease alive with a heartbeat while it works, and gives it up when it
finishes. The lease owner starts with the id of the worker process that holds it
(:func:`new_lease_owner`), and every worker process beats in PostgreSQL every WORKER_BEAT_S
(:mod:`services.notes.liveness`). The bound after a worker dies (SIGKILL included):

* **its jobs are back within WORKER_DEAD_AFTER_S + WORKER_BEAT_S (5 s + 2 s = 7 s by
  default)**: another worker process sees it silent, expires its leases and enqueues the jobs
  again (a generation lock it held is taken over the same way), whatever JOB_LEASE_S is;
* a job whose task it had received but not yet claimed holds no lease: the sweeper (Celery
  beat, every SWEEP_INTERVAL_S) enqueues it again within 2 x SWEEP_INTERVAL_S;
* the backstop, should no worker process be left to notice: once a lease has expired
  (JOB_LEASE_S, 45 s) the sweeper enqueues the job again.

A live but slow worker keeps its leases: its beat and its lease heartbeat run on threads of
their own, and a PostgreSQL or broker restart is not taken for death (see liveness). The broker
only makes the work fast; it is never what makes it happen.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import func, or_, update

from services.notes import liveness
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
    """A lease owner unique to this claim, naming this worker process when it beats."""
    return liveness.owner_tag(f"{task_id or 'direct'}:{uuid.uuid4().hex[:12]}")


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
