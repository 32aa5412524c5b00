"""The account and owner every bench that fills its own tables starts from, and the session
with a stored note the preview benches read."""

from __future__ import annotations

import uuid
from typing import Any

from shared.config import Settings


def bench_owner(settings: Settings, account_name: str) -> tuple[uuid.UUID, dict[str, Any]]:
    """A new account named `account_name` and its owner (the CLI's user record, with a token)."""
    from app.cli import create_account, create_user

    account = uuid.UUID(create_account(account_name)["id"])
    user = create_user(
        settings,
        account=str(account),
        email=f"bench-{uuid.uuid4().hex[:6]}@b.test",
        role="owner",
        team="Bench",
        super_admin=False,
        password=None,
    )
    return account, user


def session_with_stored_note(settings: Settings, user: Any, problem: str) -> uuid.UUID:
    """A session of `user`'s account whose current version's resolution note is in the cache,
    stored as a worker stores it, so no worker or LLM has to run beside a measurement."""
    from services.notes.context import context_for
    from tests.support.workers import add_fact, create_session

    sid = create_session(user.account_id, problem=problem)
    version = add_fact(sid, user.account_id, "Confirmed: bench fact")
    context_for(settings).cache.put(
        "resolution_note",
        str(sid),
        version,
        {
            "kind": "resolution_note",
            "markdown": "## Problem\nbench\n\n" + "A realistic paragraph of the note. " * 60,
            "generator": "offline",
            "model": "offline",
            "generated_at": "2026-12-01T00:00:00+00:00",
            "state_version": version,
            "usage": {},
            "fingerprint": "bench",
        },
    )
    return sid
