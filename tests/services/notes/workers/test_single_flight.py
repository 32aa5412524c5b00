"""Exactly one LLM generation per (kind, session, version): concurrent previews, two worker
processes, and a session that moves on while its note is being generated."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import select

from services.notes import generation
from services.notes.context import context_for
from shared.db import db
from shared.models import LLMUsageRecord
from tests.support.workers import add_fact, create_session, stub_calls_mentioning


@pytest.fixture(scope="module")
def notes_overrides() -> dict[str, Any]:
    return {"NOTES_PREWARM": False, "NOTES_LOCK_TTL_S": 5.0, "_workers": 2}


def test_fifty_concurrent_previews_make_one_llm_call(notes_stack: Any, make_user: Any) -> None:
    user = make_user("engineer")
    marker = f"sf-{uuid.uuid4().hex[:8]}"
    sid = create_session(user.account_id, problem=f"Single flight {marker}")
    version = add_fact(sid, user.account_id, f"Confirmed: {marker}")
    # A slow LLM widens the window in which every request finds the key missing.
    notes_stack.stub_client.latency(0.5)
    url = f"/api/v1/ai-sessions/{sid}/resolution-note/preview?wait=20"
    try:
        with ThreadPoolExecutor(max_workers=50) as pool:
            responses = list(
                pool.map(lambda _: notes_stack.client().get(url, headers=user.headers), range(50))
            )
    finally:
        notes_stack.stub_client.latency(0.0)
    assert [r.status_code for r in responses] == [200] * 50
    bodies = [r.get_json() for r in responses]
    assert {b["state_version"] for b in bodies} == {version}
    assert len({b["markdown"] for b in bodies}) == 1
    assert sum(1 for b in bodies if b["from_cache"] is False) == 1
    assert stub_calls_mentioning(notes_stack.stub_client.calls(), marker) == 1
    with db.session() as session:
        usage = session.scalars(
            select(LLMUsageRecord).where(LLMUsageRecord.ai_session_id == sid)
        ).all()
    assert [(u.llm_calls, u.state_version) for u in usage] == [(1, version)]


def test_the_worker_stores_under_the_version_it_read(notes_stack: Any, make_user: Any) -> None:
    """A preview locked version v; the session moved to v+1 before the worker read it. The worker
    generates for v+1 (the data it read), stores under v+1, and hands back v's lock."""
    user = make_user("engineer")
    sid = create_session(user.account_id, problem="Moving target")
    v1 = add_fact(sid, user.account_id, "Confirmed: first fact")
    ctx = context_for(notes_stack.settings)
    lock = ctx.cache.acquire("resolution_note", str(sid), v1, 5.0)
    assert lock is not None
    v2 = add_fact(sid, user.account_id, "Confirmed: second fact")

    got = generation.obtain_note(
        ctx, "resolution_note", sid, requested_version=v1, lock_token=lock.token
    )
    assert got is not None and got.source == "generated" and got.state_version == v2
    assert ctx.cache.lock_holder("resolution_note", str(sid), v1) is None
    assert ctx.cache.get("resolution_note", str(sid), v1) is None
    stored = ctx.cache.get("resolution_note", str(sid), v2)
    assert stored is not None and "second fact" in stored["markdown"]
    assert stored["state_version"] == v2


def test_a_task_without_the_lock_does_not_generate(notes_stack: Any, make_user: Any) -> None:
    user = make_user("engineer")
    marker = f"held-{uuid.uuid4().hex[:8]}"
    sid = create_session(user.account_id, problem=marker)
    version = add_fact(sid, user.account_id, f"Confirmed: {marker}")
    ctx = context_for(notes_stack.settings)
    holder = ctx.cache.acquire("resolution_note", str(sid), version, 5.0)
    assert holder is not None
    # A stale token (say, a retried task whose lock expired and was taken by someone else).
    assert (
        generation.obtain_note(
            ctx, "resolution_note", sid, requested_version=version, lock_token="stale"
        )
        is None
    )
    assert stub_calls_mentioning(notes_stack.stub_client.calls(), marker) == 0
    assert ctx.cache.lock_holder("resolution_note", str(sid), version) == holder.token
    ctx.cache.release(holder)
