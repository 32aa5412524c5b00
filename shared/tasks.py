"""Task names and the queue each is routed to, declared once.

The notes worker's routing table and beat schedule, every publisher (the outbox's event
publish, the notes API and tasks enqueueing work) and the task definitions read these names,
so a task cannot be published on one name or queue and consumed on another.
"""

from __future__ import annotations

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
