"""SIGTERM to a notes worker mid-generation: Celery's warm shutdown finishes the running task
(the note reaches the cache, one LLM call), leaves a queued one in the broker for the next
worker, and the process exits on its own.

One real worker (threads pool, concurrency 1, prefetch 1, as deployed per thread) against the
stub Messages API, made slow so that a generation is in flight when the signal arrives.
"""

from __future__ import annotations

import signal
import time
import uuid
from typing import Any

import pytest
from sqlalchemy import select

from shared.db import db
from shared.models import LLMUsageRecord
from tests.support import workers
from tests.support.workers import add_fact, create_session, stub_calls_mentioning, wait_until

LLM_LATENCY_S = 3.0
# Warm shutdown waits for the running generation (at most LLM_LATENCY_S more), then exits.
EXIT_BOUND_S = LLM_LATENCY_S + 15.0


@pytest.fixture(scope="module")
def notes_overrides() -> dict[str, Any]:
    # One thread: a second generation cannot start while the first runs, so it is still in the
    # broker's queue when the worker is told to stop.
    return {"_concurrency": 1, "NOTES_PREWARM": False, "NOTES_LOCK_TTL_S": 5.0}


def _live_worker(stack: Any) -> Any:
    """The module's worker, replaced if an earlier test stopped it."""
    if not stack.worker.alive:
        stack.worker = stack.worker.replacement().start()
    return stack.worker


def _cache_key(stack: Any, sid: uuid.UUID, version: int) -> str:
    return f"{stack.settings.REDIS_KEY_PREFIX}:note:resolution_note:{sid}:{version}"


def _cached(stack: Any, sid: uuid.UUID, version: int) -> bool:
    from shared.redis_client import get_redis

    return bool(get_redis(stack.settings.cache_redis_url).exists(_cache_key(stack, sid, version)))


def _session_with_fact(user: Any, marker: str) -> tuple[uuid.UUID, int]:
    sid = create_session(user.account_id, problem=f"Shutdown {marker}")
    version = add_fact(sid, user.account_id, f"Confirmed: {marker} is the culprit")
    return sid, version


def _request_preview(stack: Any, user: Any, sid: uuid.UUID, version: int) -> None:
    """A preview that answers at once and leaves one `notes.generate` on the queue."""
    response = stack.client().get(
        f"/api/v1/ai-sessions/{sid}/resolution-note/preview?wait=0", headers=user.headers
    )
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["state_version"] == version


def _calls(stack: Any, marker: str) -> int:
    return stub_calls_mentioning(stack.stub_client.calls(), marker)


def _usage_calls(sid: uuid.UUID) -> list[int]:
    with db.session() as session:
        rows = session.scalars(
            select(LLMUsageRecord).where(LLMUsageRecord.ai_session_id == sid)
        ).all()
        return [row.llm_calls for row in rows]


def _terminate_and_wait(worker: Any) -> tuple[int, float]:
    """SIGTERM to the worker's main process; its exit code and how long it took to exit."""
    assert worker.proc is not None
    sent = time.monotonic()
    worker.proc.send_signal(signal.SIGTERM)
    wait_until(
        lambda: worker.proc.poll() is not None,
        EXIT_BOUND_S,
        message="the worker to exit after SIGTERM",
    )
    returncode = int(worker.proc.returncode)
    return returncode, time.monotonic() - sent


def _queued(stack: Any, *queues: str) -> int:
    """Messages waiting in these broker queues (Redis lists named after the queues)."""
    import redis

    client = redis.Redis.from_url(stack.settings.REDIS_URL)
    try:
        return sum(int(client.llen(queue)) for queue in queues)
    finally:
        client.close()


def _broker_idle(stack: Any, worker: Any) -> bool:
    return _queued(stack, *workers.BROKER_QUEUES) == 0 and worker.inspect_busy() == 0


def test_sigterm_mid_generation_finishes_the_note_before_exiting(
    notes_stack: Any, make_user: Any
) -> None:
    worker = _live_worker(notes_stack)
    user = make_user("engineer")
    marker = f"term-{uuid.uuid4().hex[:8]}"
    sid, version = _session_with_fact(user, marker)
    notes_stack.stub_client.latency(LLM_LATENCY_S)

    _request_preview(notes_stack, user, sid, version)
    wait_until(
        lambda: _calls(notes_stack, marker) == 1, 15, message="the generation to reach the LLM"
    )
    # Mid-flight: the LLM has the request and has not answered.
    assert not _cached(notes_stack, sid, version)
    returncode, took = _terminate_and_wait(worker)

    # Warm shutdown: the process waited for the task, then exited cleanly by itself.
    assert returncode == 0, worker.log_tail()
    assert "Warm shutdown" in worker.log_tail(), worker.log_tail()
    assert _cached(notes_stack, sid, version), "the running generation was dropped"
    assert _usage_calls(sid) == [1]
    assert took < EXIT_BOUND_S

    # Nothing is left for another worker to redo: a fresh one finds no work for this version,
    # the preview is a cache hit, and the LLM was asked exactly once.
    fresh = _live_worker(notes_stack)
    wait_until(lambda: _broker_idle(notes_stack, fresh), 15, message="a drained broker")
    preview = notes_stack.client().get(
        f"/api/v1/ai-sessions/{sid}/resolution-note/preview?wait=0", headers=user.headers
    )
    assert preview.status_code == 200, preview.get_json()
    assert preview.get_json()["from_cache"] is True
    assert preview.get_json()["state_version"] == version
    assert marker in preview.get_json()["markdown"]
    assert _calls(notes_stack, marker) == 1
    assert _usage_calls(sid) == [1]


def test_a_generation_still_queued_at_sigterm_is_done_by_the_next_worker(
    notes_stack: Any, make_user: Any
) -> None:
    worker = _live_worker(notes_stack)
    user = make_user("engineer")
    running_marker = f"run-{uuid.uuid4().hex[:8]}"
    queued_marker = f"queued-{uuid.uuid4().hex[:8]}"
    running_sid, running_version = _session_with_fact(user, running_marker)
    queued_sid, queued_version = _session_with_fact(user, queued_marker)
    notes_stack.stub_client.latency(LLM_LATENCY_S)

    _request_preview(notes_stack, user, running_sid, running_version)
    wait_until(
        lambda: _calls(notes_stack, running_marker) == 1,
        15,
        message="the first generation to reach the LLM",
    )
    # The worker's only thread is busy: this one waits in the broker.
    _request_preview(notes_stack, user, queued_sid, queued_version)
    returncode, _took = _terminate_and_wait(worker)
    assert returncode == 0, worker.log_tail()
    assert _cached(notes_stack, running_sid, running_version)

    # The stopping worker took no new task (its consumer stops first; prefetch 1 held nothing
    # beyond the running one), so the queued generation never started...
    assert not _cached(notes_stack, queued_sid, queued_version)
    assert _calls(notes_stack, queued_marker) == 0
    assert _usage_calls(queued_sid) == []
    # ...and it is still in the broker, not acknowledged and lost: the next worker does it, once.
    assert _queued(notes_stack, "notes") == 1
    notes_stack.stub_client.latency(0.0)
    _live_worker(notes_stack)
    wait_until(
        lambda: _cached(notes_stack, queued_sid, queued_version),
        20,
        message="the queued generation, done by the next worker",
    )
    assert _calls(notes_stack, running_marker) == 1
    assert _calls(notes_stack, queued_marker) == 1
    assert _usage_calls(running_sid) == [1]
    assert _usage_calls(queued_sid) == [1]
