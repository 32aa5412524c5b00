"""Worker liveness: every notes worker process says, in PostgreSQL, that it is alive, so the
jobs of a process that died are handed on within seconds instead of when their leases run out.

One row per process (`notes.worker_processes`), its `beat_at` written every WORKER_BEAT_S by a
thread of the process on a connection of its own: one write per process, however many jobs it
holds, and never stuck behind the pool (a worker whose threads hold every pooled connection is
still alive). A lease owner and a single-flight lock token start with the process's id
(:func:`owner_tag`), so a job names the process that holds it.

Every WORKER_BEAT_S each worker process also looks for processes silent for
WORKER_DEAD_AFTER_S (:func:`reclaim_dead`): their leases are expired at once and their jobs
enqueued again; the claims deduplicate, so two processes doing it at once is harmless. A
materialisation waiting on a generation lock whose holder is dead takes the lock over
(:func:`holder_is_dead`). So a SIGKILLed worker's job is back within WORKER_DEAD_AFTER_S +
WORKER_BEAT_S (5 s + 2 s by default), whatever JOB_LEASE_S is.

What is never taken for death:

* a live but slow process (GIL-starved on a busy machine, or waiting 30 s on the LLM): its beat
  thread still runs every WORKER_BEAT_S; it would have to miss two and a half beats in a row;
* the broker restarting: the beat writes to PostgreSQL only, on its own thread;
* PostgreSQL restarting: silence is counted from the later of the last beat and the server's
  start (`pg_postmaster_start_time()`), so every process has WORKER_DEAD_AFTER_S after a restart
  to beat again;
* a process that cannot reach PostgreSQL itself does not judge: after one of its own beats
  failed, it reclaims nothing for WORKER_DEAD_AFTER_S (the others were cut off too, most likely).

A process declared dead that was in fact alive (stopped by a debugger, say) loses nothing but
the work in progress: its lease extension or its final write finds another owner, and its
result is discarded (`lease_lost`), as after an expired lease. A process that never beats (the
API, the CLI, a test calling the notes code directly) leaves ordinary leases that only expire.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert

from shared.config import Settings
from shared.db import db
from shared.models import ResolutionNote, WorkerProcess
from shared.observability import get_logger

log = get_logger(__name__)

# Between a process id and the rest of a lease owner or a lock token.
SEPARATOR = "/"
# A process's row is deleted this long after its last beat (its leases expired long before).
KEEP_ROWS_S = 3600


@dataclass(frozen=True)
class Reclaimed:
    note_id: uuid.UUID
    materialise: bool  # True: the note has no text yet; False: a delivery was in flight
    owner: str


def owner_process(owner: str | None) -> str | None:
    """The process id a lease owner or a lock token starts with, or None (an untagged one)."""
    if not owner or SEPARATOR not in owner:
        return None
    return owner.split(SEPARATOR, 1)[0] or None


def owner_tag(rest: str) -> str:
    """`rest` prefixed with this process's id when this process beats; else `rest` alone."""
    beat = _beat
    return f"{beat.process_id}{SEPARATOR}{rest}" if beat is not None else rest


def _dead_since(dead_after_s: float) -> Any:
    # Silence is counted from the later of the last beat and the server's start, so a
    # PostgreSQL restart does not make every process look dead.
    return func.greatest(WorkerProcess.beat_at, func.pg_postmaster_start_time()) < (
        func.now() - timedelta(seconds=dead_after_s)
    )


def reclaim_dead(dead_after_s: float, *, exclude: str | None = None) -> list[Reclaimed]:
    """Expire every lease held by a process silent for `dead_after_s`, mark those processes
    reclaimed, and forget rows an hour old. Returns the jobs to enqueue again (after this
    transaction committed)."""
    with db.transaction() as session:
        query = (
            select(WorkerProcess.id)
            .where(WorkerProcess.reclaimed_at.is_(None), _dead_since(dead_after_s))
            .with_for_update(skip_locked=True)
        )
        if exclude is not None:
            query = query.where(WorkerProcess.id != exclude)
        dead = list(session.scalars(query).all())
        session.execute(
            delete(WorkerProcess).where(
                WorkerProcess.beat_at < func.now() - timedelta(seconds=KEEP_ROWS_S)
            )
        )
        if not dead:
            return []
        rows = session.execute(
            update(ResolutionNote)
            .where(
                ResolutionNote.lease_owner.is_not(None),
                func.split_part(ResolutionNote.lease_owner, SEPARATOR, 1).in_(dead),
                ResolutionNote.lease_expires_at > func.now(),
            )
            # Expired, not cleared: the owner is still named, so a process wrongly taken for
            # dead that beats again finds its lease (and renews it) unless another took it.
            .values(lease_expires_at=func.now())
            .returning(
                ResolutionNote.id, ResolutionNote.markdown.is_(None), ResolutionNote.lease_owner
            )
        ).all()
        session.execute(
            update(WorkerProcess).where(WorkerProcess.id.in_(dead)).values(reclaimed_at=func.now())
        )
    reclaimed = [Reclaimed(row[0], bool(row[1]), str(row[2])) for row in rows]
    log.warning(
        "worker processes stopped beating; their jobs are handed on",
        processes=dead,
        jobs=len(reclaimed),
    )
    return reclaimed


def holder_is_dead(token: str | None, dead_after_s: float) -> bool:
    """Whether the process named by a lock token (or lease owner) has stopped beating. False
    for an untagged token, an unknown process, or while this process's own beats are failing
    (then it cannot tell)."""
    process_id = owner_process(token)
    if process_id is None:
        return False
    beat = _beat
    if beat is not None and (process_id == beat.process_id or not beat.can_judge()):
        return False
    with db.session() as session:
        dead = session.scalar(
            select(or_(WorkerProcess.reclaimed_at.is_not(None), _dead_since(dead_after_s))).where(
                WorkerProcess.id == process_id
            )
        )
    return bool(dead)


class ProcessBeat:
    """This process's beat (one thread, its own connection) and its reclaim of dead
    processes' jobs (another thread, so a slow broker never delays a beat)."""

    def __init__(self, settings: Settings, enqueue: Callable[[Reclaimed], None]) -> None:
        self.settings = settings
        self.enqueue = enqueue
        hostname = socket.gethostname()[:80]
        self.hostname = hostname
        self.pid = os.getpid()
        self.process_id = f"{hostname}:{self.pid}:{secrets.token_hex(4)}"
        self._stop = threading.Event()
        self._beaten = threading.Event()
        self._threads: list[threading.Thread] = []
        self._engine: Engine | None = None
        self._failed_at: float | None = None
        self._beats = 0

    # -- the beat -------------------------------------------------------------------------

    def beat_once(self) -> bool:
        """One beat: insert or refresh this process's row. False (and logged) if it failed."""
        if self._engine is None:
            self._engine = db.dedicated_engine()
        statement = insert(WorkerProcess).values(
            id=self.process_id, hostname=self.hostname, pid=self.pid
        )
        statement = statement.on_conflict_do_update(
            index_elements=[WorkerProcess.id],
            set_={"beat_at": func.now(), "reclaimed_at": None},
        )
        try:
            with self._engine.begin() as conn:
                conn.execute(statement)
        except Exception as exc:  # noqa: BLE001 - a missed beat is retried at the next one
            self._failed_at = time.monotonic()
            log.warning(
                "worker beat failed",
                process=self.process_id,
                error=f"{type(exc).__name__}: {str(exc)[:200]}",
            )
            return False
        self._beats += 1
        self._beaten.set()
        return True

    def can_judge(self) -> bool:
        """This process beats, and none of its beats failed in the last WORKER_DEAD_AFTER_S:
        only then does it take another process's silence for death."""
        if self._beats == 0:
            return False
        failed = self._failed_at
        return failed is None or time.monotonic() - failed > self.settings.WORKER_DEAD_AFTER_S

    def reclaim_once(self) -> list[Reclaimed]:
        if not self.can_judge():
            return []
        reclaimed = reclaim_dead(self.settings.WORKER_DEAD_AFTER_S, exclude=self.process_id)
        for job in reclaimed:
            # A job not enqueued now (broker down) keeps its expired lease: the sweeper hands
            # it out once the broker is back.
            self.enqueue(job)
        return reclaimed

    # -- threads --------------------------------------------------------------------------

    def start(self) -> ProcessBeat:
        for name, loop in (("rf-beat", self._beat_loop), ("rf-reclaim", self._reclaim_loop)):
            thread = threading.Thread(target=loop, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _beat_loop(self) -> None:
        interval = self.settings.WORKER_BEAT_S
        while True:
            self.beat_once()
            if self._stop.wait(interval):
                return

    def _reclaim_loop(self) -> None:
        # The first look right after the first beat: a worker restarted in place of one that
        # was killed hands on its predecessor's jobs as soon as their silence is long enough.
        interval = self.settings.WORKER_BEAT_S
        while not self._stop.is_set():
            if self._beaten.wait(interval):
                try:
                    self.reclaim_once()
                except Exception as exc:  # noqa: BLE001 - tried again at the next beat
                    log.warning(
                        "reclaiming dead workers' jobs failed; tried again at the next beat",
                        error=f"{type(exc).__name__}: {str(exc)[:200]}",
                    )
            if self._stop.wait(interval):
                return

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop beating and delete this process's row: a clean exit hands nothing on (its
        running jobs finished) and leaves no row behind."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout_s)
        if self._engine is not None:
            try:
                with self._engine.begin() as conn:
                    conn.execute(delete(WorkerProcess).where(WorkerProcess.id == self.process_id))
            except Exception:  # noqa: BLE001 - the row is forgotten an hour later anyway
                log.warning("could not delete the worker's beat row", exc_info=True)
            self._engine.dispose()
            self._engine = None


_beat: ProcessBeat | None = None


def start(settings: Settings, enqueue: Callable[[Reclaimed], None]) -> ProcessBeat:
    """Start this process's beat (once); every lease and lock it takes from now on names it."""
    global _beat
    if _beat is None:
        _beat = ProcessBeat(settings, enqueue).start()
    return _beat


def stop() -> None:
    global _beat
    beat, _beat = _beat, None
    if beat is not None:
        beat.stop()


def current() -> ProcessBeat | None:
    return _beat


def _reset_after_fork() -> None:
    # A forked child has none of the parent's threads and is not the process that beats.
    global _beat
    _beat = None


os.register_at_fork(after_in_child=_reset_after_fork)
