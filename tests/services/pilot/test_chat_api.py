"""Chat turns: the offline assistant, the real anthropic SDK against the local stub (request
contents, prompt caching, usage ledger, retries, 503s), [SUGGEST_FIX] persistence, and
server-sent events (including a client that disconnects mid-stream)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
import requests
from flask import Flask
from sqlalchemy import select, text

from services.pilot import chat
from services.pilot.prompts import ASSISTANT_SYSTEM_PROMPT
from shared.db import db
from shared.errors import Conflict
from shared.llm import LLMResult, LLMUsage
from shared.models import Base, ChatMessage, LLMUsageRecord, ScriptCategory, SuggestedFix
from shared.principal import Principal
from tests.support.stub_anthropic import StubAnthropic

SSE = {"Accept": "text/event-stream"}


# ── helpers ───────────────────────────────────────────────────────────────


def _messages(session_id: str) -> list[ChatMessage]:
    with db.session() as session:
        return list(
            session.scalars(
                select(ChatMessage)
                .where(ChatMessage.session_id == uuid.UUID(session_id))
                .order_by(ChatMessage.created_at, ChatMessage.id)
            )
        )


def _usage_rows(session_id: str) -> list[LLMUsageRecord]:
    with db.session() as session:
        return list(
            session.scalars(
                select(LLMUsageRecord)
                .where(LLMUsageRecord.ai_session_id == uuid.UUID(session_id))
                .order_by(LLMUsageRecord.created_at)
            )
        )


def _fixes(session_id: str) -> list[SuggestedFix]:
    with db.session() as session:
        return list(
            session.scalars(
                select(SuggestedFix)
                .where(SuggestedFix.session_id == uuid.UUID(session_id))
                .order_by(SuggestedFix.created_at)
            )
        )


def parse_sse(payload: str) -> list[tuple[str, Any]]:
    events: list[tuple[str, Any]] = []
    for block in payload.split("\n\n"):
        lines = [line for line in block.splitlines() if line and not line.startswith(":")]
        if not lines:
            continue
        name = next(line[len("event: ") :] for line in lines if line.startswith("event: "))
        data = "\n".join(line[len("data: ") :] for line in lines if line.startswith("data: "))
        events.append((name, json.loads(data)))
    return events


def _say(client: Any, actor: Any, session_id: str, content: str, **headers: str) -> Any:
    return client.post(
        f"/api/v1/ai-sessions/{session_id}/messages",
        json={"content": content},
        headers={**actor.headers, **headers},
    )


def _make_template(scripts_client: Any, actor: Any, name: str) -> dict[str, Any]:
    with db.transaction() as session:
        category = session.scalars(select(ScriptCategory).where(ScriptCategory.slug == "acct"))
        found = category.one_or_none()
        if found is None:
            found = ScriptCategory(slug="acct", name="Accounts")
            session.add(found)
            session.flush()
        category_id = str(found.id)
    response = scripts_client.post(
        "/api/v1/scripts/templates",
        json={
            "category_id": category_id,
            "name": name,
            "script_body": (
                "Set-ADAccountPassword -Identity {{UserName}} -Reset -NewPassword "
                "(ConvertTo-SecureString {{Password}} -AsPlainText -Force)"
            ),
            "parameters_schema": {
                "parameters": [
                    {"key": "UserName", "label": "User", "type": "string", "required": True},
                    {"key": "Password", "label": "Password", "type": "password", "required": True},
                ]
            },
        },
        headers=actor.headers,
    )
    assert response.status_code == 201, response.get_json()
    body: dict[str, Any] = response.get_json()
    return body


# ── offline ───────────────────────────────────────────────────────────────


def test_offline_assistant_answers_from_the_facts(
    pilot_client: Any, engineer: Any, helpers: SimpleNamespace
) -> None:
    sid = helpers.create_session(pilot_client, engineer)["id"]
    helpers.add_fact(
        pilot_client, engineer, sid, "Outlook prompts for a password hourly", "symptom"
    )
    helpers.add_fact(
        pilot_client, engineer, sid, "Autodiscover points at the old server", "confirmed"
    )
    helpers.add_fact(pilot_client, engineer, sid, "Mailbox quota", "ruled_out")

    response = _say(pilot_client, engineer, sid, "  What should I do next?  ")
    assert response.status_code == 201
    body = response.get_json()
    assert body["generator"] == "offline" and body["model"] == "offline"
    assert body["state_version"] == 6
    assert body["suggested_fix"] is None
    assert body["user_message"]["content"] == "What should I do next?"
    assert body["user_message"]["role"] == "user"
    assert body["user_message"]["created_by"] == str(engineer.id)
    answer = body["assistant_message"]
    assert answer["role"] == "assistant" and answer["generator"] == "offline"
    content = answer["content"]
    assert "offline" in content
    assert "Autodiscover points at the old server" in content
    assert "Ruled out:\n- Mailbox quota" in content
    assert "Suggested next step: Apply a fix that addresses the confirmed cause" in content
    assert "environment fact" in content

    again = _say(pilot_client, engineer, sid, "And now?")
    assert again.get_json()["assistant_message"]["content"] == content
    assert again.get_json()["state_version"] == 8

    listed = pilot_client.get(f"{helpers.base}/{sid}/messages", headers=engineer.headers)
    assert listed.status_code == 200
    assert listed.headers["X-Total-Count"] == "4"
    assert [(m["role"], m["content"]) for m in listed.get_json()][:2] == [
        ("user", "What should I do next?"),
        ("assistant", content),
    ]
    usage = _usage_rows(sid)
    assert [(u.purpose, u.generator, u.model) for u in usage] == [
        ("chat", "offline", "offline")
    ] * 2
    assert [u.state_version for u in usage] == [6, 8]
    assert all(u.input_tokens == u.output_tokens == 0 for u in usage)


def test_offline_next_step_follows_the_kinds_recorded(
    pilot_client: Any, engineer: Any, helpers: SimpleNamespace
) -> None:
    sid = helpers.create_session(pilot_client, engineer)["id"]
    empty = _say(pilot_client, engineer, sid, "hi").get_json()["assistant_message"]["content"]
    assert "No facts are recorded yet." in empty
    assert "symptom fact" in empty
    helpers.add_fact(pilot_client, engineer, sid, "Event 4625 on DC01", "observation")
    observed = _say(pilot_client, engineer, sid, "hi").get_json()["assistant_message"]["content"]
    assert "Event 4625 on DC01" in observed
    assert "record the result as confirmed or ruled_out" in observed


def test_chat_rejects_bad_input_and_stores_nothing(
    pilot_client: Any, engineer: Any, helpers: SimpleNamespace
) -> None:
    sid = helpers.create_session(pilot_client, engineer)["id"]
    url = f"{helpers.base}/{sid}/messages"
    for payload in (
        {},
        {"content": ""},
        {"content": "   "},
        {"content": "x" * 20001},
        {"content": 1},
    ):
        response = pilot_client.post(url, json=payload, headers=engineer.headers)
        assert response.status_code == 422, payload
        assert "content" in response.get_json()["errors"]["json"]
    unknown = pilot_client.post(
        url, json={"content": "hi", "role": "assistant"}, headers=engineer.headers
    )
    assert unknown.status_code == 422
    assert "role" in unknown.get_json()["errors"]["json"]
    assert _messages(sid) == []
    assert helpers.session_version(sid) == 1


def test_viewer_reads_the_conversation_but_cannot_chat(
    pilot_client: Any, make_user: Callable[..., Any], helpers: SimpleNamespace
) -> None:
    engineer = make_user("engineer")
    viewer = make_user("viewer", account_id=engineer.account_id)
    sid = helpers.create_session(pilot_client, engineer)["id"]
    _say(pilot_client, engineer, sid, "hello")
    listed = pilot_client.get(f"{helpers.base}/{sid}/messages", headers=viewer.headers)
    assert listed.status_code == 200 and len(listed.get_json()) == 2
    assert _say(pilot_client, viewer, sid, "me too").status_code == 403
    assert _say(pilot_client, viewer, sid, "me too", **SSE).status_code == 403
    assert len(_messages(sid)) == 2


def test_messages_list_pages(pilot_client: Any, engineer: Any, helpers: SimpleNamespace) -> None:
    sid = helpers.create_session(pilot_client, engineer)["id"]
    _say(pilot_client, engineer, sid, "one")
    _say(pilot_client, engineer, sid, "two")
    page = pilot_client.get(
        f"{helpers.base}/{sid}/messages?limit=1&offset=2", headers=engineer.headers
    )
    assert [m["content"] for m in page.get_json()] == ["two"]
    assert page.headers["X-Total-Count"] == "4"
    bad = pilot_client.get(f"{helpers.base}/{sid}/messages?limit=0", headers=engineer.headers)
    assert bad.status_code == 422


# ── through the SDK and the stub ───────────────────────────────────────────


def test_request_carries_context_history_and_a_cached_system_prompt(
    llm_client: Any, llm_app: Flask, stub: StubAnthropic, engineer: Any, helpers: SimpleNamespace
) -> None:
    sid = helpers.create_session(llm_client, engineer)["id"]
    helpers.add_fact(llm_client, engineer, sid, "Teams calls drop after 30 seconds", "symptom")
    helpers.add_fact(llm_client, engineer, sid, "Happens only on the guest Wi-Fi", "confirmed")

    first = _say(llm_client, engineer, sid, "Where do I start?")
    assert first.status_code == 201
    body = first.get_json()
    assert body["generator"] == "anthropic"
    assert body["model"] == llm_app.config["SETTINGS"].ANTHROPIC_MODEL
    assert body["assistant_message"]["content"].startswith("Stub reply.")
    assert body["state_version"] == 5

    second = _say(llm_client, engineer, sid, "Done that.")
    assert second.status_code == 201

    assert stub.call_count == 2
    call = stub.calls[0]
    request = call["json"]
    headers = call["headers"]
    assert "test-key" in (headers.get("x-api-key"), headers.get("authorization", "")[7:])
    assert request["model"] == llm_app.config["SETTINGS"].ANTHROPIC_MODEL
    stable, context = request["system"]
    assert stable["text"] == ASSISTANT_SYSTEM_PROMPT
    assert stable["cache_control"] == {"type": "ephemeral"}
    assert "cache_control" not in context
    assert "Teams calls drop after 30 seconds" in context["text"]
    assert "Happens only on the guest Wi-Fi" in context["text"]
    assert request["messages"] == [{"role": "user", "content": "Where do I start?"}]

    followup = stub.calls[1]["json"]
    assert followup["system"][0] == stable
    assert [m["role"] for m in followup["messages"]] == ["user", "assistant", "user"]
    assert followup["messages"][1]["content"] == body["assistant_message"]["content"]
    assert followup["messages"][2]["content"] == "Done that."

    usage = _usage_rows(sid)
    assert [(u.purpose, u.generator) for u in usage] == [("chat", "anthropic")] * 2
    assert usage[0].cache_creation_input_tokens > 0 and usage[0].cache_read_input_tokens == 0
    assert usage[1].cache_read_input_tokens > 0 and usage[1].cache_creation_input_tokens == 0
    assert all(u.input_tokens > 0 and u.output_tokens > 0 for u in usage)
    assert [u.state_version for u in usage] == [5, 7]


def test_history_is_trimmed_to_the_token_budget(
    make_llm_app: Callable[..., Flask], stub: StubAnthropic, engineer: Any, helpers: SimpleNamespace
) -> None:
    client = make_llm_app(CHAT_HISTORY_TOKEN_BUDGET=120).test_client()
    sid = helpers.create_session(client, engineer)["id"]
    for n in range(3):
        assert _say(client, engineer, sid, f"message {n} " + "detail " * 40).status_code == 201
    sent = stub.calls[-1]["json"]["messages"]
    assert sent[-1]["content"].startswith("message 2")
    assert sent[0]["role"] == "user"
    assert len(sent) < 5
    assert len(_messages(sid)) == 6


def test_sensitive_values_never_reach_the_llm_or_the_database(
    client: Any, llm_client: Any, stub: StubAnthropic, engineer: Any, helpers: SimpleNamespace
) -> None:
    canary = f"Canary-{uuid.uuid4().hex}"
    sid = helpers.create_session(llm_client, engineer)["id"]
    template = _make_template(client, engineer, "Reset AD password")
    generated = client.post(
        "/api/v1/scripts/generate",
        json={
            "template_id": template["id"],
            "parameters": {"UserName": "jdoe", "Password": canary},
            "ai_session_id": sid,
        },
        headers=engineer.headers,
    )
    assert generated.status_code == 200
    assert canary in generated.get_json()["script"]
    assert generated.get_json()["state_version"] == 2
    helpers.add_fact(llm_client, engineer, sid, "Password reset did not sync to Entra", "symptom")

    answer = _say(llm_client, engineer, sid, "The reset script ran; what now?")
    assert answer.status_code == 201
    streamed = _say(llm_client, engineer, sid, "Anything else?", **SSE)
    assert streamed.status_code == 200
    assert parse_sse(streamed.get_data(as_text=True))[-1][0] == "done"

    context = stub.calls[0]["json"]["system"][1]["text"]
    assert "Reset AD password" in context
    assert "UserName=jdoe" in context
    assert "Password=[REDACTED]" in context
    assert stub.call_count == 2
    for call in stub.calls:
        assert canary not in json.dumps(call)

    with db.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            hits = conn.execute(
                text(f'SELECT count(*) FROM "{table.name}" t WHERE t::text LIKE :pattern'),
                {"pattern": f"%{canary}%"},
            ).scalar_one()
            assert hits == 0, table.name


def test_a_429_is_retried_by_the_sdk(
    llm_client: Any, stub: StubAnthropic, engineer: Any, helpers: SimpleNamespace
) -> None:
    sid = helpers.create_session(llm_client, engineer)["id"]
    stub.fail_next(status=429, times=1, retry_after=0.01)
    response = _say(llm_client, engineer, sid, "hello")
    assert response.status_code == 201
    assert response.get_json()["generator"] == "anthropic"
    assert stub.call_count == 2
    assert len(_usage_rows(sid)) == 1


def test_persistent_overload_answers_503_and_keeps_the_message(
    llm_client: Any, stub: StubAnthropic, engineer: Any, helpers: SimpleNamespace
) -> None:
    sid = helpers.create_session(llm_client, engineer)["id"]
    stub.fail_next(status=529, times=2, retry_after=0.01)
    response = _say(llm_client, engineer, sid, "Is anyone there?")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    body = response.get_json()
    assert body["code"] == 503
    assert body["message"].startswith("The assistant is unavailable right now")
    assert body["reason"] == "overloaded" and body["retryable"] is True
    assert body["user_message"]["content"] == "Is anyone there?"
    assert body["state_version"] == 2
    assert stub.call_count == 2  # the first try and LLM_MAX_RETRIES=1 retry
    stored = _messages(sid)
    assert [(m.role, m.content) for m in stored] == [("user", "Is anyone there?")]
    assert str(stored[0].id) == body["user_message"]["id"]
    assert helpers.session_version(sid) == 2
    assert _usage_rows(sid) == []

    # The next turn works and sees the unanswered message in its history.
    retry = _say(llm_client, engineer, sid, "Trying again")
    assert retry.status_code == 201
    assert stub.calls[-1]["json"]["messages"] == [
        {"role": "user", "content": "Is anyone there?\n\nTrying again"}
    ]


def test_a_timeout_answers_503(
    make_llm_app: Callable[..., Flask], stub: StubAnthropic, engineer: Any, helpers: SimpleNamespace
) -> None:
    client = make_llm_app(LLM_TIMEOUT_S=0.5, LLM_MAX_RETRIES=0).test_client()
    sid = helpers.create_session(client, engineer)["id"]
    stub.delay_next(3.0)
    response = _say(client, engineer, sid, "slow?")
    assert response.status_code == 503
    assert response.get_json()["reason"] == "timeout"
    assert stub.call_count == 1
    assert [m.role for m in _messages(sid)] == ["user"]


def test_a_refused_request_is_503_and_not_retryable(
    llm_client: Any, stub: StubAnthropic, engineer: Any, helpers: SimpleNamespace
) -> None:
    sid = helpers.create_session(llm_client, engineer)["id"]
    stub.fail_next(status=400, times=1)
    response = _say(llm_client, engineer, sid, "hello")
    assert response.status_code == 503
    body = response.get_json()
    assert body["retryable"] is False and body["reason"] == "invalid_request"
    assert "Retry-After" not in response.headers
    assert stub.call_count == 1


def test_a_session_resolved_while_the_llm_answers_keeps_the_ledger_row(
    pilot_client: Any, engineer: Any, helpers: SimpleNamespace
) -> None:
    sid = helpers.create_session(pilot_client, engineer)["id"]
    principal = Principal(
        id=engineer.id,
        account_id=engineer.account_id,
        team_id=engineer.team_id,
        role="engineer",
        is_super_admin=False,
        email=engineer.email,
    )
    prepared = chat.start_turn(principal, uuid.UUID(sid), "hello", history_budget=1000)
    assert prepared.state_version == 2
    resolved = pilot_client.post(
        f"{helpers.base}/{sid}/resolve", json={"force": True}, headers=engineer.headers
    )
    assert resolved.status_code == 202
    answer = LLMResult(
        text="Late answer", generator="anthropic", model="m", usage=LLMUsage(5, 7), latency_ms=9
    )
    with pytest.raises(Conflict):
        chat.finish_turn(prepared, answer)
    assert [m.role for m in _messages(sid)] == ["user"]
    assert helpers.session_version(sid) == 3
    usage = _usage_rows(sid)
    assert [(u.input_tokens, u.output_tokens, u.state_version) for u in usage] == [(5, 7, None)]


# ── [SUGGEST_FIX] ─────────────────────────────────────────────────────────


def test_a_suggest_fix_reply_persists_the_fix_and_strips_the_block(
    llm_client: Any,
    client: Any,
    stub: StubAnthropic,
    engineer: Any,
    outsider: Any,
    helpers: SimpleNamespace,
) -> None:
    sid = helpers.create_session(llm_client, engineer)["id"]
    mine = _make_template(client, engineer, "Reset password (mine)")
    theirs = _make_template(client, outsider, "Reset password (theirs)")
    first_block = helpers.fix_block(
        "Point Autodiscover at Exchange Online",
        summary="Stale SCP record.",
        steps=["Back up the SCP", "Remove it"],
        script="Get-ADObject -WhatIf",
        template_id=mine["id"],
        confidence=150,
    )
    stub.queue_responses(f"The SCP record is stale, so remove it.\n\n{first_block}")

    response = _say(llm_client, engineer, sid, "What is the fix?")
    assert response.status_code == 201
    body = response.get_json()
    assert body["assistant_message"]["content"] == "The SCP record is stale, so remove it."
    fix = body["suggested_fix"]
    assert fix["title"] == "Point Autodiscover at Exchange Online"
    assert fix["summary"] == "Stale SCP record."
    assert fix["steps"] == ["Back up the SCP", "Remove it"]
    assert fix["script"] == "Get-ADObject -WhatIf"
    assert fix["template_id"] == mine["id"]
    assert fix["confidence"] == 100
    assert fix["active"] is True and fix["superseded_at"] is None
    assert fix["source_message_id"] == body["assistant_message"]["id"]
    assert body["state_version"] == 3
    stored = _messages(sid)[-1]
    assert "SUGGEST_FIX" not in stored.content and "Autodiscover" not in stored.content

    second_block = helpers.fix_block("Re-create the Outlook profile", template_id=theirs["id"])
    stub.queue_responses(f"That did not help; the profile is corrupt.\n{second_block}")
    replaced = _say(llm_client, engineer, sid, "Still broken.").get_json()
    new_fix = replaced["suggested_fix"]
    assert new_fix["title"] == "Re-create the Outlook profile"
    assert new_fix["template_id"] is None  # another account's template is dropped
    assert new_fix["confidence"] is None

    fixes = _fixes(sid)
    assert [f.title for f in fixes] == [fix["title"], new_fix["title"]]
    assert fixes[0].superseded_at is not None and fixes[1].superseded_at is None

    active = llm_client.get(
        f"{helpers.base}/{sid}/suggested-fixes/active", headers=engineer.headers
    )
    assert active.status_code == 200 and active.get_json()["id"] == new_fix["id"]
    # The next request tells the assistant about the active fix, not the superseded one.
    _say(llm_client, engineer, sid, "ok")
    context = stub.calls[-1]["json"]["system"][1]["text"]
    assert "Re-create the Outlook profile" in context
    assert "Point Autodiscover at Exchange Online" not in context


def test_template_ids_that_are_not_visible_templates_are_dropped(
    llm_client: Any, stub: StubAnthropic, engineer: Any, helpers: SimpleNamespace
) -> None:
    sid = helpers.create_session(llm_client, engineer)["id"]
    for bogus in (str(uuid.uuid4()), "tpl-spooler", 42):
        stub.queue_responses(helpers.fix_block("Restart the spooler", template_id=bogus))
        body = _say(llm_client, engineer, sid, "fix?").get_json()
        assert body["suggested_fix"]["template_id"] is None, bogus
        assert body["assistant_message"]["content"] == "I've proposed a fix: Restart the spooler."
    assert len(_fixes(sid)) == 3
    assert sum(1 for f in _fixes(sid) if f.superseded_at is None) == 1


def test_malformed_blocks_store_no_fix(
    llm_client: Any, stub: StubAnthropic, engineer: Any, helpers: SimpleNamespace
) -> None:
    sid = helpers.create_session(llm_client, engineer)["id"]
    stub.queue_responses("Check DNS first.\n[SUGGEST_FIX]{not json}[/SUGGEST_FIX]")
    body = _say(llm_client, engineer, sid, "fix?").get_json()
    assert body["suggested_fix"] is None
    assert body["assistant_message"]["content"] == "Check DNS first."
    assert _fixes(sid) == []
    none = llm_client.get(f"{helpers.base}/{sid}/suggested-fixes/active", headers=engineer.headers)
    assert none.status_code == 404


# ── Server-sent events ────────────────────────────────────────────────────


def test_stream_sends_deltas_then_the_turn_and_never_the_fix_block(
    llm_client: Any, stub: StubAnthropic, engineer: Any, helpers: SimpleNamespace
) -> None:
    sid = helpers.create_session(llm_client, engineer)["id"]
    block = helpers.fix_block("Restart the print spooler", steps=["Restart-Service Spooler"])
    stub.queue_responses(f"The spooler has crashed; restart it and retry the job.\n{block}")

    response = _say(llm_client, engineer, sid, "Printing fails", **SSE)
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    raw = response.get_data(as_text=True)
    assert "SUGGEST_FIX" not in raw
    events = parse_sse(raw)
    names = [name for name, _ in events]
    assert names[-1] == "done" and set(names[:-1]) == {"delta"} and len(names) > 2
    streamed = "".join(data["text"] for name, data in events if name == "delta")
    assert "Restart-Service" not in streamed
    done = events[-1][1]
    assert streamed.strip() == done["assistant_message"]["content"]
    assert done["assistant_message"]["content"] == (
        "The spooler has crashed; restart it and retry the job."
    )
    assert done["suggested_fix"]["title"] == "Restart the print spooler"
    assert done["state_version"] == 3 == helpers.session_version(sid)
    assert done["generator"] == "anthropic"
    assert stub.calls[0]["json"]["stream"] is True
    assert [m.role for m in _messages(sid)] == ["user", "assistant"]
    assert len(_usage_rows(sid)) == 1


def test_stream_reports_an_unavailable_assistant_as_an_error_event(
    llm_client: Any, stub: StubAnthropic, engineer: Any, helpers: SimpleNamespace
) -> None:
    sid = helpers.create_session(llm_client, engineer)["id"]
    stub.fail_next(status=529, times=2, retry_after=0.01)
    response = _say(llm_client, engineer, sid, "anyone?", **SSE)
    assert response.status_code == 200
    events = parse_sse(response.get_data(as_text=True))
    assert [name for name, _ in events] == ["error"]
    error = events[0][1]
    assert error["code"] == 503 and error["reason"] == "overloaded"
    assert error["user_message"]["content"] == "anyone?"
    assert error["state_version"] == 2
    assert [m.role for m in _messages(sid)] == ["user"]


def test_stream_offline(pilot_client: Any, engineer: Any, helpers: SimpleNamespace) -> None:
    sid = helpers.create_session(pilot_client, engineer)["id"]
    helpers.add_fact(pilot_client, engineer, sid, "Scanner shows offline", "symptom")
    response = _say(pilot_client, engineer, sid, "help", **SSE)
    events = parse_sse(response.get_data(as_text=True))
    assert events[-1][0] == "done"
    done = events[-1][1]
    assert done["generator"] == "offline"
    streamed = "".join(data["text"] for name, data in events if name == "delta")
    assert streamed == done["assistant_message"]["content"]
    assert "Scanner shows offline" in streamed


def test_a_client_that_disconnects_mid_stream_still_gets_the_turn_stored(
    llm_app: Flask,
    stub: StubAnthropic,
    serve: Callable[[Flask], Any],
    engineer: Any,
    helpers: SimpleNamespace,
) -> None:
    sid = helpers.create_session(llm_app.test_client(), engineer)["id"]
    live = serve(llm_app)
    # The stub holds the stream after its first delta, so the client leaves mid-answer.
    stub.stall_next(1.5, after_deltas=1)
    http = requests.Session()
    response = http.post(
        f"{live.url}/api/v1/ai-sessions/{sid}/messages",
        json={"content": "Long answer please"},
        headers={**engineer.headers, **SSE},
        stream=True,
        timeout=10,
    )
    assert response.status_code == 200
    event = None
    for raw in response.iter_lines():
        line = raw.decode()
        if line.startswith("event: "):
            event = line[len("event: ") :]
        if line.startswith("data: ") and event == "delta":
            assert json.loads(line[len("data: ") :])["text"]
            break
    assert event == "delta"
    response.close()
    http.close()
    assert [m.role for m in _messages(sid)] == ["user"]

    assert chat.wait_for_background_turns(15)
    stored = _messages(sid)
    assert [m.role for m in stored] == ["user", "assistant"]
    assert stored[1].content.startswith("Stub reply.")
    assert helpers.session_version(sid) == 3
    assert len(_usage_rows(sid)) == 1
