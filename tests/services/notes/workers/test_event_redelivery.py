"""An event is marked handled only after it is handled.

The attack (an operator's bad day more than an attacker's): the worker set the event's
"seen" key first and processed it after, so a worker killed in between left the key behind;
the broker redelivered the event (acks_late) and the next worker dropped it as a duplicate:
the resolved session never got its note."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from typing import Any

from sqlalchemy import delete, func, select, text

from shared.config import PROJECT_ROOT
from shared.db import db
from shared.event_payloads import SESSION_RESOLVED
from shared.models import ResolutionNote
from tests.support.workers import (
    child_env,
    create_session,
    outbox_payload,
    resolve_session,
    wait_until,
)


def _notes(sid: uuid.UUID) -> int:
    with db.session() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(ResolutionNote)
                .where(ResolutionNote.session_id == sid)
            )
            or 0
        )


def _waiting_on_locks() -> int:
    with db.engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database()"
                )
            ).scalar_one()
        )


def test_worker_killed_mid_event_does_not_drop_the_event(migrated: Any, make_user: Any) -> None:
    from services.notes import tasks

    user = make_user("owner")
    sid = create_session(user.account_id)
    resolve_session(sid, user.account_id)
    event = outbox_payload(sid, SESSION_RESOLVED)
    # The event as the broker would redeliver it to a fresh consumer. The rows Resolve made
    # are removed, so the handler's own (idempotent) creation of them is what blocks below
    # and what shows the event was handled.
    event["event_id"] = str(uuid.uuid4())
    with db.transaction() as session:
        session.execute(delete(ResolutionNote).where(ResolutionNote.session_id == sid))
    code = (
        "import json, sys\n"
        "from services.notes import tasks\n"
        "print(tasks.handle_event(json.loads(sys.argv[1])))\n"
    )
    # Hold the session row so the worker blocks half-way through handling the event.
    blocker = db.engine.connect()
    blocker_tx = blocker.begin()
    blocker.execute(text("SELECT id FROM ai_sessions WHERE id = :id FOR UPDATE"), {"id": sid})
    worker = subprocess.Popen(
        [sys.executable, "-c", code, json.dumps(event)],
        cwd=PROJECT_ROOT,
        env=child_env(migrated),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until(lambda: _waiting_on_locks() >= 1, 60, message="the worker to block")
        worker.send_signal(signal.SIGKILL)
        worker.wait(30)
    finally:
        blocker_tx.rollback()
        blocker.close()
    assert worker.returncode == -signal.SIGKILL
    assert _notes(sid) == 0

    # The broker redelivers the unacknowledged event: it is handled, not dropped.
    assert tasks.handle_event(event) == "resolved"
    assert _notes(sid) == 1
    assert tasks.handle_event(event) == "duplicate"  # and only once it is done
