"""Prompt caching proven at the stub, and the usage ledger over HTTP and the CLI: a scripted
session's report matches a hand computation from the stub's usage blocks to the cent; owners
only for the account report; budgets (402 for chat, the 80 % warning); a refusal reaches the
ledger with the API's error."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from services.pilot.prompts import ASSISTANT_SYSTEM_PROMPT, PROMPT_FILE
from shared.db import db
from shared.models import ChatMessage, LLMUsageRecord
from tests.support.stub_anthropic import StubAnthropic

# The price table, written out by hand (USD per MTok) for the hand computation: input,
# 5-minute cache write, cache read, output. Sonnet 5.5's cache reads cost $0.10 since
# 2026-10-07.
HAND_PRICES: dict[str, tuple[str, str, str, str]] = {
    "claude-sonnet-5-5": ("2", "2.50", "0.10", "10"),
    "claude-sonnet-4-6": ("3", "3.75", "0.30", "15"),
}
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
TIMESTAMP_RE = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")


def _say(client: Any, actor: Any, sid: str, content: str, stream: bool = False) -> Any:
    headers = {**actor.headers}
    if stream:
        headers["Accept"] = "text/event-stream"
    return client.post(
        f"/api/v1/ai-sessions/{sid}/messages", json={"content": content}, headers=headers
    )


def _cached_prefix(request: dict[str, Any]) -> list[dict[str, Any]]:
    """The blocks up to and including the last cache_control breakpoint (tools, system,
    messages, in the API's order)."""
    blocks = list(request.get("tools") or []) + list(request.get("system") or [])
    for message in request.get("messages") or []:
        content = message["content"]
        blocks += content if isinstance(content, list) else [{"type": "text", "text": content}]
    marked = [i for i, b in enumerate(blocks) if isinstance(b, dict) and b.get("cache_control")]
    return blocks[: marked[-1] + 1] if marked else []


def test_turn_two_reads_the_system_prompt_from_the_cache_and_nothing_volatile_is_cached(
    llm_client: Any, stub: StubAnthropic, engineer: Any, helpers: SimpleNamespace
) -> None:
    sid = helpers.create_session(llm_client, engineer, ticket_ref="INC-4711")["id"]
    fact = "Printer queue stuck on PRN-0042 since 09:15"
    helpers.add_fact(llm_client, engineer, sid, fact, "symptom")
    assert _say(llm_client, engineer, sid, "Where do I start?").status_code == 201
    assert _say(llm_client, engineer, sid, "Cleared the spooler.", stream=True).status_code == 200
    other = helpers.create_session(llm_client, engineer, title="Another ticket")["id"]
    assert _say(llm_client, engineer, other, "Hello").status_code == 201

    first, second, third = stub.calls
    assert stub.refusals == []
    assert first["usage"]["cache_creation_input_tokens"] > 0
    assert first["usage"]["cache_read_input_tokens"] == 0
    # Turn 2 of the session reads what turn 1 wrote; so does another session's first turn.
    assert (
        second["usage"]["cache_read_input_tokens"] == first["usage"]["cache_creation_input_tokens"]
    )
    assert third["usage"]["cache_read_input_tokens"] > 0

    prefixes = [_cached_prefix(c["json"]) for c in (first, second, third)]
    assert prefixes[0] == prefixes[1] == prefixes[2]
    cached_text = "".join(b["text"] for b in prefixes[0])
    assert cached_text == ASSISTANT_SYSTEM_PROMPT
    for volatile in (sid, other, "INC-4711", fact, "PRN-0042", "Where do I start?"):
        assert volatile not in cached_text, volatile
    # No id or timestamp other than the fixed examples the prompt file itself contains.
    shipped = PROMPT_FILE.read_text(encoding="utf-8")
    assert set(UUID_RE.findall(cached_text)) <= set(UUID_RE.findall(shipped))
    assert set(TIMESTAMP_RE.findall(cached_text)) <= set(TIMESTAMP_RE.findall(shipped))
    # The volatile context does reach the model, after the breakpoint.
    assert fact in first["json"]["system"][1]["text"]
    assert "cache_control" not in first["json"]["system"][1]


def _hand_cost(model: str, usage: dict[str, Any]) -> Decimal:
    inp, write, read, out = (Decimal(p) for p in HAND_PRICES[model])
    return (
        usage["input_tokens"] * inp
        + usage["cache_creation_input_tokens"] * write
        + usage["cache_read_input_tokens"] * read
        + usage["output_tokens"] * out
    ) / Decimal(1_000_000)


def test_usage_report_of_a_scripted_session_matches_a_hand_computation_to_the_cent(
    llm_app: Flask,
    stub: StubAnthropic,
    make_user: Callable[..., Any],
    helpers: SimpleNamespace,
) -> None:
    client = llm_app.test_client()
    model = llm_app.config["SETTINGS"].ANTHROPIC_MODEL
    engineer = make_user("engineer")
    owner = make_user("owner", account_id=engineer.account_id)
    sid = helpers.create_session(client, engineer)["id"]
    helpers.add_fact(client, engineer, sid, "VPN drops every 10 minutes", "symptom")
    script = ["VPN drops.", "It is the Always On profile.", "Renewed the certificate."]
    for number, text in enumerate(script):
        response = _say(client, engineer, sid, text, stream=number == 1)
        assert response.status_code in (200, 201)
        if number == 1:
            assert "event: done" in response.get_data(as_text=True)

    usage_blocks = [c["usage"] for c in stub.calls]
    assert len(usage_blocks) == 3 and all(usage_blocks)
    hand = sum((_hand_cost(model, u) for u in usage_blocks), Decimal(0))
    assert hand > Decimal("0.01")  # enough to make "to the cent" mean something

    session_report = client.get(f"/api/v1/ai-sessions/{sid}/usage", headers=engineer.headers)
    assert session_report.status_code == 200
    body = session_report.get_json()
    assert body["calls"] == 3
    for field in (
        "input_tokens",
        "output_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
    ):
        assert body[field] == sum(u[field] for u in usage_blocks), field
    assert round(Decimal(str(body["cost_usd"])), 2) == round(hand, 2)
    assert abs(Decimal(str(body["cost_usd"])) - hand) < Decimal("0.000001")
    assert [p["purpose"] for p in body["by_purpose"]] == ["chat"]
    assert len(body["by_day"]) == 1 and body["by_day"][0]["calls"] == 3

    account = client.get("/api/v1/usage", headers=owner.headers)
    assert account.status_code == 200
    totals = account.get_json()
    assert totals["calls"] == 3 and totals["cost_usd"] == body["cost_usd"]
    assert totals["budget"]["monthly_budget_usd"] is None

    from app.cli import run

    printed = run(["usage", "--account", str(engineer.account_id)])
    assert printed["cost_usd"] == body["cost_usd"] and printed["calls"] == 3


def test_account_usage_is_for_owners_and_a_session_of_another_account_is_404(
    llm_client: Any,
    make_user: Callable[..., Any],
    outsider: Any,
    helpers: SimpleNamespace,
) -> None:
    engineer = make_user("engineer")
    viewer = make_user("viewer", account_id=engineer.account_id)
    sid = helpers.create_session(llm_client, engineer)["id"]
    for actor in (engineer, viewer):
        assert llm_client.get("/api/v1/usage", headers=actor.headers).status_code == 403
        denied = llm_client.put(
            "/api/v1/usage/budget", json={"monthly_budget_usd": 5}, headers=actor.headers
        )
        assert denied.status_code == 403
    assert (
        llm_client.get(f"/api/v1/ai-sessions/{sid}/usage", headers=viewer.headers).status_code
        == 200
    )
    hidden = llm_client.get(f"/api/v1/ai-sessions/{sid}/usage", headers=outsider.headers)
    assert hidden.status_code == 404


@pytest.mark.parametrize(
    ("query", "field"),
    [("from=yesterday", "from"), ("from=2026-12-05&to=2026-12-01", "to"), ("to=2026-13-01", "to")],
)
def test_bad_report_dates_are_422_naming_the_field(
    llm_client: Any, make_user: Callable[..., Any], query: str, field: str
) -> None:
    owner = make_user("owner")
    response = llm_client.get(f"/api/v1/usage?{query}", headers=owner.headers)
    assert response.status_code == 422
    assert field in response.get_json()["errors"]["query"]


def test_budget_spent_answers_chat_402_naming_it_and_warns_owners_at_80_percent(
    llm_client: Any, stub: StubAnthropic, make_user: Callable[..., Any], helpers: SimpleNamespace
) -> None:
    owner = make_user("owner")
    sid = helpers.create_session(llm_client, owner)["id"]
    assert _say(llm_client, owner, sid, "first").status_code == 201
    spent = Decimal(
        str(llm_client.get("/api/v1/usage", headers=owner.headers).get_json()["cost_usd"])
    )
    assert spent > 0

    # 80 % .. 100 %: a warning, chat still answers.
    budget = (spent / Decimal("0.9")).quantize(Decimal("0.000001"))
    budget = max(budget, spent + Decimal("0.01"))  # two decimals are stored
    put = llm_client.put(
        "/api/v1/usage/budget",
        json={"monthly_budget_usd": str(round(budget, 2))},
        headers=owner.headers,
    )
    assert put.status_code == 200
    status = put.get_json()
    assert status["exceeded"] is False
    assert status["warning"] is (
        spent >= Decimal(str(status["monthly_budget_usd"])) * Decimal("0.8")
    )

    # Spent: 402 naming the budget, nothing stored, no LLM call.
    assert (
        llm_client.put(
            "/api/v1/usage/budget", json={"monthly_budget_usd": "0"}, headers=owner.headers
        ).get_json()["exceeded"]
        is True
    )
    calls, before = stub.call_count, len(_messages(sid))
    refused = _say(llm_client, owner, sid, "second")
    assert refused.status_code == 402
    body = refused.get_json()
    assert "monthly_budget_usd" in body["message"] and body["budget"]["exceeded"] is True
    assert stub.call_count == calls and len(_messages(sid)) == before

    bad = llm_client.put(
        "/api/v1/usage/budget", json={"monthly_budget_usd": -1}, headers=owner.headers
    )
    assert bad.status_code == 422 and "monthly_budget_usd" in bad.get_json()["errors"]["json"]
    assert (
        llm_client.put(
            "/api/v1/usage/budget", json={"monthly_budget_usd": None}, headers=owner.headers
        ).status_code
        == 200
    )
    assert _say(llm_client, owner, sid, "third").status_code == 201


def _messages(sid: str) -> list[ChatMessage]:
    with db.session() as session:
        return list(
            session.scalars(select(ChatMessage).where(ChatMessage.session_id == uuid.UUID(sid)))
        )


def test_a_refused_chat_call_is_in_the_ledger_with_the_api_error(
    llm_client: Any, stub: StubAnthropic, engineer: Any, helpers: SimpleNamespace
) -> None:
    sid = helpers.create_session(llm_client, engineer)["id"]
    stub.fail_next(status=400, times=3)
    response = _say(llm_client, engineer, sid, "hello")
    assert response.status_code == 503 and response.get_json()["retryable"] is False
    assert stub.call_count == 1  # never retried
    with db.session() as session:
        rows = session.scalars(
            select(LLMUsageRecord).where(LLMUsageRecord.ai_session_id == uuid.UUID(sid))
        ).all()
    assert [(r.fallback_reason, r.llm_calls, float(r.cost_usd)) for r in rows] == [
        ("permanent_error", 1, 0.0)
    ]
    assert rows[0].error is not None and rows[0].error.startswith("invalid_request_error:")
