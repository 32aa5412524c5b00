"""Streamed chat turns are bounded per process.

The attack: each streamed turn started a non-daemon thread that outlives its request (so the
turn is stored if the client leaves), with no bound: a client opening and dropping streams
piled up threads, each holding an LLM call, until the process ran out."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import requests
from flask import Flask
from sqlalchemy import func, select

from services.pilot import chat
from shared.db import db
from shared.models import ChatMessage
from tests.support.stub_anthropic import StubAnthropic

SSE = {"Accept": "text/event-stream"}


def _message_count(session_id: str) -> int:
    with db.session() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(ChatMessage)
                .where(ChatMessage.session_id == uuid.UUID(session_id))
            )
            or 0
        )


def _first_event(response: requests.Response) -> str | None:
    event = None
    for raw in response.iter_lines():
        line = raw.decode()
        if line.startswith("event: "):
            event = line[len("event: ") :]
        if line.startswith("data: ") and event in ("delta", "done", "error"):
            return event
    return event


def test_streams_beyond_the_bound_answer_429_and_store_nothing(
    make_llm_app: Callable[..., Flask],
    stub: StubAnthropic,
    serve: Callable[[Flask], Any],
    engineer: Any,
    helpers: SimpleNamespace,
) -> None:
    app = make_llm_app(CHAT_STREAM_CONCURRENCY=1)
    sid = helpers.create_session(app.test_client(), engineer)["id"]
    live = serve(app)
    url = f"{live.url}/api/v1/ai-sessions/{sid}/messages"
    stub.stall_next(3.0, after_deltas=1)  # the first turn stays open for a while
    http = requests.Session()
    first = http.post(
        url,
        json={"content": "first"},
        headers={**engineer.headers, **SSE},
        stream=True,
        timeout=10,
    )
    assert first.status_code == 200 and _first_event(first) == "delta"
    first.close()  # the client leaves; the turn goes on in its thread, holding the slot
    assert _message_count(sid) == 1

    refused = http.post(
        url, json={"content": "second"}, headers={**engineer.headers, **SSE}, timeout=10
    )
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == str(chat.STREAM_RETRY_AFTER_S)
    assert refused.json()["code"] == 429
    assert _message_count(sid) == 1  # refused before the message was stored

    # Once the first turn is stored its slot is free again.
    assert chat.wait_for_background_turns(20)
    assert _message_count(sid) == 2
    again = http.post(
        url,
        json={"content": "third"},
        headers={**engineer.headers, **SSE},
        stream=True,
        timeout=10,
    )
    assert again.status_code == 200
    kinds = [
        raw.decode()[len("event: ") :]
        for raw in again.iter_lines()
        if raw.decode().startswith("event: ")
    ]
    assert kinds[-1] == "done", kinds
    http.close()
    assert chat.wait_for_background_turns(20)
    assert _message_count(sid) == 4


def test_a_refused_turn_for_another_accounts_session_still_frees_its_slot(
    make_llm_app: Callable[..., Flask], make_user: Any, engineer: Any, helpers: SimpleNamespace
) -> None:
    app = make_llm_app(CHAT_STREAM_CONCURRENCY=1)
    client = app.test_client()
    foreign = helpers.create_session(client, make_user("engineer"))["id"]
    for _ in range(3):  # a 404 must not leak the only slot
        got = client.post(
            f"/api/v1/ai-sessions/{foreign}/messages",
            json={"content": "hi"},
            headers={**engineer.headers, **SSE},
        )
        assert got.status_code == 404
    own = helpers.create_session(client, engineer)["id"]
    ok = client.post(
        f"/api/v1/ai-sessions/{own}/messages",
        json={"content": "hi"},
        headers={**engineer.headers, **SSE},
    )
    assert ok.status_code == 200
    ok.get_data()
    assert chat.wait_for_background_turns(20)
