"""GET /api/v1/ai-sessions/{id}/resolution-note/preview against a real worker, real Redis and
PostgreSQL, and the real anthropic SDK pointed at the stub Messages API. Pre-warm is off here
(NOTES_PREWARM=false), so every LLM call below was asked for by a preview."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import select

from shared.db import db
from shared.models import LLMUsageRecord
from tests.support.workers import (
    add_fact,
    chat_turn,
    create_session,
    stays_false,
    stub_calls_mentioning,
    wait_until,
)

# Fixtures: a module-wide worker, stub LLM and notes app; a clean-up that keeps the broker's keys.

HEADINGS = ("## Problem", "## What we confirmed", "## Root cause", "## Resolution")


@pytest.fixture(scope="module")
def notes_overrides() -> dict[str, Any]:
    return {"NOTES_PREWARM": False, "NOTES_PREWARM_QUIET_S": 0.3}


def _url(session_id: uuid.UUID, **query: Any) -> str:
    args = "&".join(f"{k}={v}" for k, v in query.items())
    return f"/api/v1/ai-sessions/{session_id}/resolution-note/preview" + (
        f"?{args}" if args else ""
    )


def _calls(stack: Any, marker: str) -> int:
    return stub_calls_mentioning(stack.stub_client.calls(), marker)


def test_preview_generates_once_then_serves_from_cache(notes_stack: Any, make_user: Any) -> None:
    user = make_user("engineer")
    marker = f"spooler-{uuid.uuid4().hex[:8]}"
    sid = create_session(user.account_id, problem=f"Printing fails ({marker})")
    add_fact(sid, user.account_id, f"Confirmed: the print spooler {marker} crashes on start")
    version = add_fact(sid, user.account_id, "Observed event 7031 in the system log", "environment")
    client = notes_stack.client()

    first = client.get(_url(sid, wait=15), headers=user.headers)
    assert first.status_code == 200, first.get_json()
    body = first.get_json()
    assert body["from_cache"] is False
    assert body["state_version"] == version
    assert body["generator"] == "anthropic"
    positions = [body["markdown"].index(h) for h in HEADINGS]
    assert positions == sorted(positions)
    assert marker in body["markdown"]
    assert _calls(notes_stack, marker) == 1
    # Each line of the note says which facts it rests on; the markdown carries no markers.
    cited = [c for c in body["citations"] if c["section"] == "What we confirmed"]
    assert cited and marker in cited[0]["text"] and cited[0]["cites"] == ["F1"]
    assert len(cited[0]["fact_ids"]) == 1
    assert "[F1]" not in body["markdown"] and "F1" not in body["markdown"]
    # The prompt carried the facts, grouped by the section that uses them.
    sent = notes_stack.stub_client.calls()[-1]["json"]["messages"][0]["content"]
    assert "Observed event 7031" in sent and marker in sent

    second = client.get(_url(sid, wait=15), headers=user.headers)
    assert second.status_code == 200
    assert second.get_json()["from_cache"] is True
    assert second.get_json()["markdown"] == body["markdown"]
    assert _calls(notes_stack, marker) == 1

    with db.session() as session:
        rows = session.scalars(
            select(LLMUsageRecord).where(LLMUsageRecord.ai_session_id == sid)
        ).all()
    assert [(r.purpose, r.llm_calls, r.state_version) for r in rows] == [
        ("resolution_note", 1, version)
    ]
    # The note prompt (~460 tokens) is below every model's minimum cacheable length, so the
    # API caches nothing and says so (see README, prompt caching).
    assert rows[0].cache_creation_input_tokens == rows[0].cache_read_input_tokens == 0
    assert rows[0].input_tokens > 0 and rows[0].cost_usd > 0


def test_fact_write_misses_the_cache_and_drops_the_old_key(
    notes_stack: Any, make_user: Any
) -> None:
    user = make_user("engineer")
    marker = f"dns-{uuid.uuid4().hex[:8]}"
    sid = create_session(user.account_id, problem=f"DNS lookups time out {marker}")
    v1 = add_fact(sid, user.account_id, f"Confirmed: resolver {marker} unreachable")
    client = notes_stack.client()
    assert client.get(_url(sid, wait=15), headers=user.headers).get_json()["from_cache"] is False
    cache = notes_stack.app.config["SETTINGS"]
    old_key = f"{cache.REDIS_KEY_PREFIX}:note:resolution_note:{sid}:{v1}"
    redis = _redis(notes_stack)
    assert redis.exists(old_key)

    v2 = add_fact(sid, user.account_id, "Confirmed: the DHCP scope hands out a dead DNS server")
    third = client.get(_url(sid, wait=15), headers=user.headers).get_json()
    assert third["from_cache"] is False
    assert third["state_version"] == v2
    assert "DHCP scope" in third["markdown"]
    assert _calls(notes_stack, marker) == 2
    # The worker consumed the state_changed event and deleted the older version's key.
    wait_until(lambda: not redis.exists(old_key), 10, message="old cache key deleted")


def test_chat_turn_reuses_the_note_without_an_llm_call(notes_stack: Any, make_user: Any) -> None:
    user = make_user("engineer")
    marker = f"vpn-{uuid.uuid4().hex[:8]}"
    sid = create_session(user.account_id, problem=f"VPN drops {marker}")
    add_fact(sid, user.account_id, f"Confirmed: {marker} tunnel idles out after 60 s")
    client = notes_stack.client()
    first = client.get(_url(sid, wait=15), headers=user.headers).get_json()
    assert first["from_cache"] is False

    version = chat_turn(sid, user.account_id, "Thanks, trying that now")
    again = client.get(_url(sid, wait=15), headers=user.headers).get_json()
    assert again["state_version"] == version == first["state_version"] + 1
    assert again["from_cache"] is True
    assert again["markdown"] == first["markdown"]
    assert _calls(notes_stack, marker) == 1


def test_wait_zero_answers_pending_and_the_next_call_gets_the_note(
    notes_stack: Any, make_user: Any
) -> None:
    user = make_user("engineer")
    marker = f"mail-{uuid.uuid4().hex[:8]}"
    sid = create_session(user.account_id, problem=f"Mailbox full {marker}")
    version = add_fact(sid, user.account_id, f"Confirmed: {marker} archive policy disabled")
    notes_stack.stub_client.delay(1.0)
    client = notes_stack.client()

    pending = client.get(_url(sid, wait=0), headers=user.headers)
    assert pending.status_code == 202
    assert pending.get_json() == {
        "status": "pending",
        "kind": "resolution_note",
        "session_id": str(sid),
        "state_version": version,
        "retry_after": 2,
    }
    assert pending.headers["Retry-After"] == "2"

    ready = client.get(_url(sid, wait=15), headers=user.headers)
    assert ready.status_code == 200
    # The generation was started by the first request, not this one.
    assert ready.get_json()["from_cache"] is True
    assert _calls(notes_stack, marker) == 1


def test_llm_overload_is_retried(notes_stack: Any, make_user: Any) -> None:
    user = make_user("engineer")
    marker = f"ovl-{uuid.uuid4().hex[:8]}"
    sid = create_session(user.account_id, problem=f"Overloaded {marker}")
    add_fact(sid, user.account_id, f"Confirmed: {marker} disk is full")
    notes_stack.stub_client.fail(status=529, times=1)

    response = notes_stack.client().get(_url(sid, wait=20), headers=user.headers)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["generator"] == "anthropic"
    assert _calls(notes_stack, marker) == 2  # the 529, then the answer


def test_another_accounts_session_is_404(notes_stack: Any, make_user: Any) -> None:
    owner = make_user("engineer")
    stranger = make_user("owner")
    sid = create_session(owner.account_id)
    client = notes_stack.client()
    assert client.get(_url(sid, wait=0), headers=stranger.headers).status_code == 404
    assert client.get(_url(uuid.uuid4(), wait=0), headers=owner.headers).status_code == 404
    assert client.get(_url(sid, wait=0)).status_code == 401
    bad_kind = client.get(_url(sid, kind="haiku", wait=0), headers=owner.headers)
    assert bad_kind.status_code == 422


def test_session_without_confirmed_facts_says_so(notes_stack: Any, make_user: Any) -> None:
    user = make_user("engineer")
    sid = create_session(user.account_id, problem="Laptop is slow")
    notes_stack.stub_client.responses(["no headings at all", "still not a note"])
    body = notes_stack.client().get(_url(sid, wait=15), headers=user.headers).get_json()
    # Two invalid answers: one corrective retry, then the offline note, flagged as such.
    assert body["generator"] == "offline-fallback"
    assert "No facts were confirmed during this session." in body["markdown"]


def test_prewarm_off_generates_nothing_in_the_background(notes_stack: Any, make_user: Any) -> None:
    user = make_user("engineer")
    marker = f"quiet-{uuid.uuid4().hex[:8]}"
    sid = create_session(user.account_id, problem=f"Nothing {marker}")
    version = add_fact(sid, user.account_id, f"Confirmed: {marker}")
    redis = _redis(notes_stack)
    quiet_key = f"{notes_stack.settings.REDIS_KEY_PREFIX}:notequiet:{sid}"
    # The worker handled the state_changed event ...
    wait_until(lambda: redis.hget(quiet_key, "version") == str(version).encode(), 10)
    # ... and, with pre-warm off, generated nothing well past the quiet period.
    assert stays_false(lambda: _calls(notes_stack, marker), 1.5)
    key = f"{notes_stack.settings.REDIS_KEY_PREFIX}:note:resolution_note:{sid}:{version}"
    assert not redis.exists(key)


def _redis(stack: Any) -> Any:
    from shared.redis_client import get_redis

    return get_redis(stack.settings.cache_redis_url)
