"""State versions and state-change messages: one bump per write, the outbox row in the write's
transaction, the Celery message on the broker after commit, and the relay after an outage."""

from __future__ import annotations

import base64
import json
import socket
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import redis
from flask import Flask
from sqlalchemy import select

from services.pilot.fixes import persist_fix
from shared.config import Settings
from shared.db import db
from shared.event_payloads import FIX_DECIDED, SESSION_RESOLVED, STATE_CHANGED
from shared.events import relay_outbox
from shared.models import OutboxEvent
from shared.tasks import QUEUE_EVENTS, TASK_HANDLE_EVENT


def _outbox(session_id: str) -> list[OutboxEvent]:
    with db.session() as session:
        return list(
            session.scalars(
                select(OutboxEvent)
                .where(OutboxEvent.session_id == uuid.UUID(session_id))
                .order_by(OutboxEvent.seq)
            )
        )


def _queued(client: redis.Redis) -> list[dict[str, Any]]:
    """The Celery messages waiting in the `events` queue, oldest first, decoded."""
    messages = []
    # kombu's Redis transport LPUSHes and BRPOPs: the tail of the list is the oldest.
    for raw in reversed(client.lrange(QUEUE_EVENTS, 0, -1)):
        envelope = json.loads(raw)
        body = envelope["body"]
        if envelope["properties"].get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args, _kwargs, _embed = json.loads(body)
        messages.append({"task": envelope["headers"]["task"], "event": args[0]})
    return messages


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _store_fix(session_id: str, account_id: uuid.UUID, title: str) -> str:
    with db.transaction() as session:
        fix = persist_fix(
            session,
            account_id=account_id,
            session_id=uuid.UUID(session_id),
            values={"title": title, "steps": ["do it"]},
        )
        return str(fix.id)


def test_every_write_leaves_one_state_change_in_the_outbox_and_on_the_broker(
    pilot_client: Any, engineer: Any, helpers: SimpleNamespace, redis_client: redis.Redis
) -> None:
    created = helpers.create_session(pilot_client, engineer, ticket_ref="INC-1")
    sid = created["id"]
    base = f"{helpers.base}/{sid}"
    versions = [created["state_version"]]

    def write(method: str, url: str, payload: Any = None, status: int = 200) -> dict[str, Any]:
        response = getattr(pilot_client, method)(url, json=payload, headers=engineer.headers)
        assert response.status_code == status, response.get_json()
        body: dict[str, Any] = response.get_json()
        versions.append(body["state_version"])
        return body

    write("patch", base, {"title": "Renamed"})
    fact = write("post", f"{base}/facts", {"text": "Printer spooler stopped"}, 201)
    write("patch", f"{base}/facts/{fact['id']}", {"kind": "confirmed"})
    write("delete", f"{base}/facts/{fact['id']}")
    write("post", f"{base}/messages", {"content": "What next?"}, 201)
    fix_id = _store_fix(sid, engineer.account_id, "Restart the spooler")
    write("post", f"{base}/suggested-fixes/{fix_id}/decision", {"decision": "one_off"})
    write("post", f"{base}/resolve", {"ticket_ref": "INC-2", "force": True}, 202)
    write("post", f"{base}/reopen")

    # The chat turn is two writes; its response carries the final version.
    assert versions == [1, 2, 3, 4, 5, 7, 8, 9, 10]

    rows = _outbox(sid)
    summary = [(r.topic, r.payload["state_version"], r.payload.get("cause")) for r in rows]
    assert summary == [
        (STATE_CHANGED, 1, "session_created"),
        (STATE_CHANGED, 2, "session_updated"),
        (STATE_CHANGED, 3, "fact_created"),
        (STATE_CHANGED, 4, "fact_updated"),
        (STATE_CHANGED, 5, "fact_deleted"),
        (STATE_CHANGED, 6, "chat_message"),
        (STATE_CHANGED, 7, "assistant_reply"),
        (STATE_CHANGED, 8, "fix_decided"),
        (FIX_DECIDED, 8, None),
        (STATE_CHANGED, 9, "session_resolved"),
        (SESSION_RESOLVED, 9, None),
        (STATE_CHANGED, 10, "session_reopened"),
    ]
    for row in rows:
        assert row.payload["session_id"] == sid
        assert row.payload["account_id"] == str(engineer.account_id)
        assert row.published_at is not None, row.topic
    decided = next(r for r in rows if r.topic == FIX_DECIDED)
    assert decided.payload["fix_id"] == fix_id
    assert decided.payload["decision"] == "one_off"
    resolved = next(r for r in rows if r.topic == SESSION_RESOLVED)
    assert resolved.payload["resolved_version"] == 9
    assert resolved.payload["ticket_ref"] == "INC-2"

    queued = _queued(redis_client)
    assert [m["task"] for m in queued] == [TASK_HANDLE_EVENT] * len(rows)
    assert [m["event"]["event_id"] for m in queued] == [str(r.id) for r in rows]
    assert [m["event"]["state_version"] for m in queued] == [s[1] for s in summary]


def test_a_failed_write_leaves_no_outbox_row(
    pilot_client: Any, engineer: Any, helpers: SimpleNamespace
) -> None:
    sid = helpers.create_session(pilot_client, engineer)["id"]
    missing = pilot_client.patch(
        f"{helpers.base}/{sid}/facts/{uuid.uuid4()}", json={"text": "x"}, headers=engineer.headers
    )
    assert missing.status_code == 404
    assert [r.payload["cause"] for r in _outbox(sid)] == ["session_created"]
    assert helpers.session_version(sid) == 1


def test_broker_outage_loses_no_event(
    make_pilot_app: Callable[..., Flask],
    engineer: Any,
    helpers: SimpleNamespace,
    migrated: Settings,
    redis_client: redis.Redis,
) -> None:
    dead = make_pilot_app(REDIS_URL=f"redis://127.0.0.1:{_closed_port()}/0")
    client = dead.test_client()
    created = helpers.create_session(client, engineer)
    fact = helpers.add_fact(client, engineer, created["id"], "Written while the broker is down")
    assert fact["state_version"] == 2

    rows = _outbox(created["id"])
    assert [r.payload["state_version"] for r in rows] == [1, 2]
    assert all(row.published_at is None for row in rows)
    assert rows[0].publish_attempts == 1 and rows[0].last_error
    # After a failure the next writes leave their events to the relay instead of waiting on the
    # dead broker again.
    assert rows[1].publish_attempts == 0
    assert redis_client.llen(QUEUE_EVENTS) == 0

    assert migrated.REDIS_URL is not None
    assert relay_outbox(migrated.REDIS_URL, min_age_s=0) == 2
    assert all(r.published_at is not None for r in _outbox(created["id"]))
    queued = _queued(redis_client)
    assert [m["event"]["event_id"] for m in queued] == [str(r.id) for r in rows]
    assert queued[1]["event"]["cause"] == "fact_created"
    # Nothing is left for a second pass.
    assert relay_outbox(migrated.REDIS_URL, min_age_s=0) == 0


def test_concurrent_fact_writes_each_get_their_own_version(
    pilot_app: Flask, engineer: Any, helpers: SimpleNamespace
) -> None:
    sid = helpers.create_session(pilot_app.test_client(), engineer)["id"]
    writes = 100

    def write(n: int) -> int:
        client = pilot_app.test_client()
        response = client.post(
            f"{helpers.base}/{sid}/facts",
            json={"text": f"observation {n}"},
            headers=engineer.headers,
        )
        assert response.status_code == 201, response.get_json()
        version: int = response.get_json()["state_version"]
        return version

    with ThreadPoolExecutor(max_workers=16) as pool:
        versions = list(pool.map(write, range(writes)))

    assert sorted(versions) == list(range(2, 2 + writes))
    assert helpers.session_version(sid) == 1 + writes
    rows = _outbox(sid)
    assert sorted(r.payload["state_version"] for r in rows) == list(range(1, 2 + writes))
    assert sum(1 for r in rows if r.payload["cause"] == "fact_created") == writes
    listed = pilot_app.test_client().get(f"{helpers.base}/{sid}/facts", headers=engineer.headers)
    assert len(listed.get_json()) == writes
