"""Task names and the queue each is routed to, declared once, and the one decorator that
carries the house's task options.

The notes worker's routing table and beat schedule, every publisher (the outbox's event
publish, the notes API and tasks enqueueing work) and the task definitions read these names,
so a task cannot be published on one name or queue and consumed on another.

:func:`declared_task` is every task's decorator (as Sentry's `instrumented_task` is theirs):
the task's name from the table below (the worker routes it to its queue from the same
table), `acks_late` (every task is idempotent, so one whose worker died runs again), and
retries with exponential backoff and jitter on the transient infrastructure errors of
:data:`TRANSIENT_INFRA`, plus whatever the task names. Anything else fails the task visibly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kombu.exceptions
import redis.exceptions
import sqlalchemy.exc
from celery import shared_task

# Queues the notes worker consumes.
QUEUE_NOTES = "notes"
QUEUE_EVENTS = "events"
QUEUE_WEBHOOKS = "webhooks"
QUEUES = (QUEUE_NOTES, QUEUE_EVENTS, QUEUE_WEBHOOKS)

TASK_HANDLE_EVENT = "notes.handle_event"
TASK_GENERATE = "notes.generate"
TASK_PREWARM_CHECK = "notes.prewarm_check"
TASK_MATERIALISE = "notes.materialise"
TASK_DELIVER = "notes.deliver"
TASK_RELAY_OUTBOX = "notes.relay_outbox"
TASK_SWEEP = "notes.sweep"
TASK_BATCH_LANE = "notes.batch_lane"

TASK_QUEUES: dict[str, str] = {
    TASK_HANDLE_EVENT: QUEUE_EVENTS,
    TASK_GENERATE: QUEUE_NOTES,
    TASK_PREWARM_CHECK: QUEUE_NOTES,
    TASK_MATERIALISE: QUEUE_NOTES,
    TASK_DELIVER: QUEUE_WEBHOOKS,
    TASK_RELAY_OUTBOX: QUEUE_EVENTS,
    TASK_SWEEP: QUEUE_NOTES,
    TASK_BATCH_LANE: QUEUE_NOTES,
}


def queue_of(task_name: str) -> str:
    """The queue a task is published on (KeyError for a name not declared here)."""
    return TASK_QUEUES[task_name]


# Failures that pass by themselves: a database failover or restart, Redis (broker or cache)
# unreachable for a moment, the broker refusing a publish.
TRANSIENT_INFRA: tuple[type[Exception], ...] = (
    sqlalchemy.exc.OperationalError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    kombu.exceptions.OperationalError,
)
MAX_RETRIES = 6
RETRY_BACKOFF_MAX_S = 120


def declared_task(
    name: str,
    *,
    retry_on: tuple[type[Exception], ...] = (),
    retry_backoff: int | bool = True,
    retry_backoff_max: int = RETRY_BACKOFF_MAX_S,
    max_retries: int = MAX_RETRIES,
    bind: bool = False,
    **options: Any,
) -> Callable[[Callable[..., Any]], Any]:
    """Register a task under its declared name and queue with the house's options.

    `retry_on` adds the task's own transient errors (an LLM timeout, say) to
    :data:`TRANSIENT_INFRA`; `retry_backoff` is the first delay in seconds (True: 1 s),
    doubled per retry up to `retry_backoff_max`, with jitter. Raises KeyError at import for
    a name the table does not declare."""
    queue_of(name)  # an undeclared name fails here, at import

    def decorate(func: Callable[..., Any]) -> Any:
        return shared_task(
            name=name,
            bind=bind,
            acks_late=True,
            autoretry_for=(*TRANSIENT_INFRA, *retry_on),
            retry_backoff=retry_backoff,
            retry_backoff_max=retry_backoff_max,
            retry_jitter=True,
            max_retries=max_retries,
            **options,
        )(func)

    return decorate
