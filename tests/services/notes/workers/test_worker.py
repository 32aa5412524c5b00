"""The notes worker: its configuration, event consumption, pre-warm, the outbox relay and
recovery after a SIGKILL mid-generation. Pre-warm is on here, with a 0.5 s quiet period."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from typing import Any

import pytest
from sqlalchemy import func, select

from shared.config import PROJECT_ROOT
from shared.db import db
from shared.event_payloads import SESSION_RESOLVED, InvalidEvent
from shared.events import bump
from shared.models import LLMUsageRecord, ResolutionNote, SessionFact
from tests.support.workers import (
    add_fact,
    create_session,
    outbox_payload,
    resolve_session,
    run_relay,
    run_sweeper,
    stub_calls_mentioning,
    wait_until,
)


@pytest.fixture(scope="module")
def notes_overrides() -> dict[str, Any]:
    return {
        "NOTES_PREWARM": True,
        "NOTES_PREWARM_QUIET_S": 0.5,
        "JOB_LEASE_S": 2,
        "SWEEP_INTERVAL_S": 1.0,
        "NOTES_LOCK_TTL_S": 2.0,
    }


def _key(stack: Any, sid: uuid.UUID, version: int) -> str:
    return f"{stack.settings.REDIS_KEY_PREFIX}:note:resolution_note:{sid}:{version}"


def _redis(stack: Any) -> Any:
    from shared.redis_client import get_redis

    return get_redis(stack.settings.cache_redis_url)


def test_worker_module_is_configured_and_imports_without_connecting() -> None:
    # A broker nobody listens on: importing must still be instant and quiet.
    code = (
        "import json, time; t = time.monotonic();"
        "import services.notes.worker as w; c = w.app.conf;"
        "print(json.dumps({'s': time.monotonic() - t, 'acks_late': c.task_acks_late,"
        "'reject': c.task_reject_on_worker_lost, 'prefetch': c.worker_prefetch_multiplier,"
        "'vt': c.broker_transport_options['visibility_timeout'],"
        "'beat': sorted(c.beat_schedule), 'routes': c.task_routes,"
        "'limit': c.task_time_limit,"
        "'tasks': sorted(t for t in w.app.tasks if t.startswith('notes.'))}))"
    )
    env = {
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/x",
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(PROJECT_ROOT),
    }
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    conf = json.loads(result.stdout.strip().splitlines()[-1])
    assert conf["acks_late"] is True and conf["reject"] is True and conf["prefetch"] == 1
    assert conf["vt"] == 3600 and conf["limit"] > 0
    assert conf["beat"] == ["notes.batch_lane", "notes.relay_outbox", "notes.sweep"]
    assert conf["routes"]["notes.batch_lane"] == {"queue": "notes"}
    assert conf["routes"]["notes.generate"] == {"queue": "notes"}
    assert conf["routes"]["notes.handle_event"] == {"queue": "events"}
    assert conf["routes"]["notes.deliver"] == {"queue": "webhooks"}
    assert conf["tasks"] == sorted(
        [
            "notes.batch_lane",
            "notes.deliver",
            "notes.generate",
            "notes.handle_event",
            "notes.materialise",
            "notes.prewarm_check",
            "notes.relay_outbox",
            "notes.sweep",
        ]
    )


def test_a_burst_of_writes_is_prewarmed_once(notes_stack: Any, make_user: Any) -> None:
    user = make_user("engineer")
    marker = f"burst-{uuid.uuid4().hex[:8]}"
    sid = create_session(user.account_id, problem=f"Burst {marker}")
    version = 0
    for i in range(20):
        version = add_fact(sid, user.account_id, f"Confirmed: {marker} step {i}")
    redis = _redis(notes_stack)
    wait_until(lambda: redis.exists(_key(notes_stack, sid, version)), 15, message="pre-warm")
    assert stub_calls_mentioning(notes_stack.stub_client.calls(), marker) <= 2
    calls_before = notes_stack.stub_client.call_count
    preview = notes_stack.client().get(
        f"/api/v1/ai-sessions/{sid}/resolution-note/preview?wait=0", headers=user.headers
    )
    assert preview.status_code == 200
    assert preview.get_json()["from_cache"] is True
    assert preview.get_json()["state_version"] == version
    assert f"{marker} step 19" in preview.get_json()["markdown"]
    assert notes_stack.stub_client.call_count == calls_before


def test_duplicate_events_are_handled_once(notes_stack: Any, make_user: Any) -> None:
    from services.notes import tasks

    user = make_user("owner")
    sid = create_session(user.account_id)
    version = resolve_session(sid, user.account_id)
    wait_until(lambda: _note_count(sid) == 1, 15)
    # The event pilot's Resolve wrote, as the broker delivers it.
    event = outbox_payload(sid, SESSION_RESOLVED)
    assert event["resolved_version"] == version
    # Calling the task function directly, twice (a copy under an id of its own, so the
    # worker's handling of the original does not race with it): the second is recognised by
    # its event id.
    replayed = {**event, "event_id": str(uuid.uuid4())}
    assert tasks.handle_event(replayed) == "resolved"
    assert tasks.handle_event(replayed) == "duplicate"
    assert _note_count(sid) == 1  # the note row is unique per (session, kind, version)


def test_an_event_missing_a_required_field_is_refused(notes_stack: Any, make_user: Any) -> None:
    from services.notes import tasks

    user = make_user("owner")
    sid = create_session(user.account_id)
    resolve_session(sid, user.account_id)
    wait_until(lambda: _note_count(sid) == 1, 15)
    event = {**outbox_payload(sid, SESSION_RESOLVED), "event_id": str(uuid.uuid4())}
    del event["resolved_version"]
    with pytest.raises(InvalidEvent) as refused:
        tasks.handle_event(event)
    assert "resolved_version" in refused.value.errors
    # Refused before anything was written: not even marked as seen.
    ctx = tasks.context()
    assert not ctx.redis.exists(f"{ctx.settings.REDIS_KEY_PREFIX}:event:{event['event_id']}")
    wrong_type = {**outbox_payload(sid, SESSION_RESOLVED), "event_id": str(uuid.uuid4())}
    wrong_type["session_id"] = "not-a-uuid"
    with pytest.raises(InvalidEvent) as refused:
        tasks.handle_event(wrong_type)
    assert "session_id" in refused.value.errors


def _note_count(sid: uuid.UUID) -> int:
    with db.session() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(ResolutionNote)
                .where(ResolutionNote.session_id == sid)
            )
            or 0
        )


def test_an_unpublished_event_arrives_through_the_relay(notes_stack: Any, make_user: Any) -> None:
    user = make_user("engineer")
    marker = f"relay-{uuid.uuid4().hex[:8]}"
    sid = create_session(user.account_id, problem=f"Relay {marker}")
    # A write whose event was not published (the broker was down at commit time).
    with db.transaction() as session:
        session.add(
            SessionFact(
                session_id=sid,
                account_id=user.account_id,
                kind="confirmed",
                text=f"Confirmed: {marker}",
            )
        )
        version = bump(session, session_id=sid, account_id=user.account_id, cause="fact_created")
    assert run_relay(notes_stack.settings) >= 1
    # The worker consumed it and pre-warmed the note of that version.
    wait_until(lambda: _redis(notes_stack).exists(_key(notes_stack, sid, version)), 15)


def test_a_worker_killed_mid_generation_still_materialises_the_note(
    notes_stack: Any, make_user: Any
) -> None:
    user = make_user("owner")
    marker = f"kill-{uuid.uuid4().hex[:8]}"
    sid = create_session(user.account_id, problem=f"Kill {marker}")
    # Resolve with pre-warm racing nothing: the first LLM call hangs until the worker is gone.
    with db.transaction() as session:
        session.add(
            SessionFact(
                session_id=sid,
                account_id=user.account_id,
                kind="confirmed",
                text=f"Confirmed: {marker}",
            )
        )
        bump(session, session_id=sid, account_id=user.account_id, cause="fact_created")
    notes_stack.stub_client.delay(30.0)
    version = resolve_session(sid, user.account_id)
    wait_until(
        lambda: stub_calls_mentioning(notes_stack.stub_client.calls(), marker) >= 1,
        15,
        message="the generation to reach the LLM",
    )
    notes_stack.worker.kill()
    notes_stack.replace_worker()

    def recovered() -> bool:
        run_sweeper(notes_stack.settings)
        with db.session() as session:
            note = session.scalars(
                select(ResolutionNote).where(ResolutionNote.session_id == sid)
            ).one()
            return note.markdown is not None

    wait_until(recovered, 30, interval_s=0.3, message="the note materialised after the kill")
    with db.session() as session:
        note = session.scalars(select(ResolutionNote).where(ResolutionNote.session_id == sid)).one()
        assert note.state_version == version
        assert marker in (note.markdown or "")
        usage = session.scalars(
            select(LLMUsageRecord).where(LLMUsageRecord.ai_session_id == sid)
        ).all()
    # The killed attempt recorded nothing; the one that finished did.
    assert [u.llm_calls for u in usage] == [1]
