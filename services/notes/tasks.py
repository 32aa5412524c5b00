"""Celery tasks of the notes service. Thin: each passes ids to a plain function of
the notes modules (generation, prewarm, resolve, deliveries, sweeper), which owns the transaction.

Every task is idempotent, so all run with `acks_late` (a task whose worker died runs again):
events are deduplicated by event id, generations by the cache and the single-flight lock,
materialisations and deliveries by their PostgreSQL lease. Each is declared with
:func:`shared.tasks.declared_task`, which carries those options and the retries.
"""

from __future__ import annotations

import uuid
from typing import Any

from celery import Task

from services.notes import deliveries, generation, leases, liveness, prewarm, resolve, sweeper
from services.notes.context import NotesContext, context_for
from services.notes.vocabulary import NOTE_KINDS
from shared import runtime
from shared.event_payloads import SessionResolved, StateChanged, parse_event
from shared.events import outbox_backlog, relay_outbox
from shared.llm import LLMUnavailable
from shared.observability import OUTBOX_BACKLOG, get_logger
from shared.tasks import (
    TASK_BATCH_LANE,
    TASK_DELIVER,
    TASK_GENERATE,
    TASK_HANDLE_EVENT,
    TASK_MATERIALISE,
    TASK_PREWARM_CHECK,
    TASK_RELAY_OUTBOX,
    TASK_SWEEP,
    declared_task,
)

log = get_logger(__name__)

EVENT_SEEN_TTL_S = 7 * 24 * 3600


class RetryableLLMError(RuntimeError):
    """The LLM failed for a reason that may pass (timeout, 429, 529, 5xx): retry with backoff."""


# Tasks that call the LLM also retry its transient failures, starting 2 s apart.
_RETRY_LLM: dict[str, Any] = {"retry_on": (RetryableLLMError,), "retry_backoff": 2}


def context() -> NotesContext:
    """The process's notes context; configures the runtime on first use (once per process)."""
    settings = runtime.current_settings() or runtime.configure()
    return context_for(settings)


def _llm_call(func: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return func(*args, **kwargs)
    except LLMUnavailable as exc:
        if exc.retryable:
            raise RetryableLLMError(str(exc)) from exc
        raise


def enqueue_reclaimed(job: liveness.Reclaimed) -> None:
    """Enqueue again a job handed on from a dead worker process (see services.notes.liveness)."""
    ctx = context()
    ctx.enqueue(TASK_MATERIALISE if job.materialise else TASK_DELIVER, str(job.note_id))


def _owner(task: Task) -> str:
    return leases.new_lease_owner(getattr(task.request, "id", None))


@declared_task(TASK_HANDLE_EVENT, bind=True)
def handle_event(self: Task, event: dict[str, Any]) -> str:
    """Consume one outbox event (at least once; duplicates are skipped by event id).

    The payload is parsed into its typed event (shared.event_payloads); one that lacks a
    required field or has a wrong type is refused (InvalidEvent: the task fails visibly and
    nothing is written). A topic the notes service does not handle is ignored."""
    received = parse_event(event)
    if received is None:
        return "ignored"
    ctx = context()
    seen_key = f"{ctx.settings.REDIS_KEY_PREFIX}:event:{received.event_id}"
    if ctx.redis.exists(seen_key):
        return "duplicate"
    # Marked handled only once handled: a worker killed in between leaves it unmarked, so the
    # broker's redelivery (acks_late) handles it again. Two copies running at once are safe:
    # both handlers are idempotent (cache deletes; note rows insert ... on conflict do nothing).
    typed = received.event
    outcome = "ignored"
    if isinstance(typed, StateChanged):
        if prewarm.on_state_changed(ctx, typed.session_id, typed.state_version):
            ctx.enqueue(
                TASK_PREWARM_CHECK,
                str(typed.session_id),
                typed.state_version,
                countdown=ctx.settings.NOTES_PREWARM_QUIET_S,
            )
        outcome = "state_changed"
    elif isinstance(typed, SessionResolved):
        resolve.on_resolved(
            ctx,
            session_id=typed.session_id,
            account_id=typed.account_id,
            state_version=typed.resolved_version,
            ticket_ref=typed.ticket_ref,
        )
        from services.notes import batch

        # The KB article of the resolved session, at the batch price: nobody waits on it.
        batch.queue_on_resolve(ctx, typed.account_id, typed.session_id)
        outcome = "resolved"
    ctx.redis.set(seen_key, 1, ex=EVENT_SEEN_TTL_S)
    return outcome


@declared_task(TASK_GENERATE, bind=True, **_RETRY_LLM)
def generate(
    self: Task, kind: str, session_id: str, state_version: int, lock_token: str | None = None
) -> str:
    """Generate (or reuse) the note of a session version a preview asked for."""
    ctx = context()
    # A retry must not reuse the lock token: the lock was released when the attempt failed.
    token = lock_token if not self.request.retries else None
    got = _llm_call(
        generation.obtain_note,
        ctx,
        kind,
        uuid.UUID(session_id),
        requested_version=int(state_version),
        lock_token=token,
    )
    return got.source if got is not None else "skipped"


@declared_task(TASK_PREWARM_CHECK, bind=True, **_RETRY_LLM)
def prewarm_check(self: Task, session_id: str, state_version: int) -> str:
    """Pre-warm the session's note once its state_changed events have gone quiet."""
    ctx = context()
    outcome, countdown = _llm_call(
        prewarm.prewarm, ctx, uuid.UUID(session_id), int(state_version), NOTE_KINDS[0]
    )
    if countdown is not None:
        ctx.enqueue(TASK_PREWARM_CHECK, session_id, state_version, countdown=countdown)
    return str(outcome)


@declared_task(TASK_MATERIALISE, bind=True, **_RETRY_LLM)
def materialise_note(self: Task, note_id: str) -> str:
    """Store a resolved session's note durably, then enqueue its delivery."""
    return str(
        _llm_call(resolve.materialise_note, context(), uuid.UUID(note_id), owner=_owner(self))
    )


@declared_task(TASK_DELIVER, bind=True)
def deliver(self: Task, note_id: str) -> str:
    """One webhook attempt; schedules the next one itself (the sweeper is the safety net)."""
    ctx = context()
    step = deliveries.deliver_note(ctx, uuid.UUID(note_id), owner=_owner(self))
    if step.countdown is not None:
        ctx.enqueue(TASK_DELIVER, note_id, countdown=step.countdown)
    return step.status


@declared_task(TASK_RELAY_OUTBOX)
def relay(batch: int = 500) -> int:
    """Publish outbox events the writers could not (broker down at commit time)."""
    ctx = context()
    assert ctx.settings.REDIS_URL is not None
    published = relay_outbox(ctx.settings.REDIS_URL, batch=batch)
    from shared.db import db

    with db.session() as session:
        OUTBOX_BACKLOG.set(outbox_backlog(session))
    return published


@declared_task(TASK_BATCH_LANE)
def batch_lane() -> dict[str, Any]:
    """Submit queued batch generations and collect the batches that have ended."""
    from services.notes import batch

    try:
        counts = batch.run_lane(context())
    except LLMUnavailable as exc:
        # The next tick tries again; queued and submitted rows stay as they are.
        log.warning("batch lane: LLM unavailable", reason=exc.reason, error=exc.error)
        return {"submitted": 0, "collected": 0, "errored": 0}
    if any(counts.values()):
        log.info("batch lane", **counts)
    return counts


@declared_task(TASK_SWEEP)
def sweep() -> dict[str, int]:
    """Re-enqueue notes and deliveries whose lease expired (their worker died)."""
    counts = sweeper.sweep(context())
    if any(counts.values()):
        log.info("sweep re-enqueued work", **counts)
    return counts
