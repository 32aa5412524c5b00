"""The lock a preview hands to a queued generation outlives a queue backlog; the worker that
starts the task shortens it to NOTES_LOCK_TTL_S (kept alive by its heartbeat), so a kill during
generation still frees it fast."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import redis

from shared.config import Settings
from tests.support.workers import add_fact, create_session


def test_a_queued_generation_keeps_its_lock_longer_than_a_running_one(
    migrated: Settings, make_user: Any
) -> None:
    from services.notes import create_app
    from services.notes.context import HANDOVER_LOCK_FACTOR, context_for
    from shared import runtime

    settings = replace(migrated, NOTES_LOCK_TTL_S=2.0, NOTES_PREWARM=False)
    user = make_user("engineer")
    sid = create_session(user.account_id, problem="Outlook keeps asking for a password")
    version = add_fact(sid, user.account_id, "Credential manager holds a stale entry")
    try:
        # No worker consumes this Redis db: the generation stays queued.
        app = create_app(settings)
        answer = app.test_client().get(
            f"/api/v1/ai-sessions/{sid}/resolution-note/preview?wait=0", headers=user.headers
        )
        assert answer.status_code == 202, answer.get_json()
        key = context_for(settings).cache.lock_key("resolution_note", str(sid), version)
        assert settings.REDIS_URL is not None
        ttl_ms = redis.Redis.from_url(settings.REDIS_URL).pttl(key)
        assert 2000 < ttl_ms <= 2000 * HANDOVER_LOCK_FACTOR
    finally:
        runtime.configure(migrated)
