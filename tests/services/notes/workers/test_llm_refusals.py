"""Notes while the LLM refuses: a permanent refusal (4xx) is never retried and the preview gets
the offline note at once, flagged, with the API's error in the ledger; a final note whose LLM
stays down after the SDK's retries falls back too instead of staying "generating"; a spent
monthly budget sends notes to the offline generator without calling the LLM."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from shared.db import db
from shared.models import LLMUsageRecord
from shared.usage import set_budget
from tests.support.workers import add_fact, create_session, resolve_session, wait_until


@pytest.fixture(scope="module")
def notes_overrides() -> dict[str, Any]:
    # The SDK retries transient failures twice; 4xx never.
    return {"NOTES_PREWARM": False, "LLM_MAX_RETRIES": 2}


def _preview(stack: Any, user: Any, sid: uuid.UUID) -> Any:
    return stack.client().get(
        f"/api/v1/ai-sessions/{sid}/resolution-note/preview?wait=20", headers=user.headers
    )


def _ledger(sid: uuid.UUID) -> list[LLMUsageRecord]:
    with db.session() as session:
        return list(
            session.scalars(select(LLMUsageRecord).where(LLMUsageRecord.ai_session_id == sid))
        )


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413])
def test_a_permanent_refusal_gives_the_offline_note_at_once(
    notes_stack: Any, make_user: Any, status: int
) -> None:
    user = make_user("engineer")
    sid = create_session(user.account_id, problem="Mapped drive missing")
    add_fact(sid, user.account_id, "Confirmed: the GPO drive map has a typo", "confirmed")
    notes_stack.stub_client.fail(status=status, times=20)

    response = _preview(notes_stack, user, sid)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["generator"] == "offline-fallback"
    assert body["fallback_reason"] == "permanent_error"
    assert "GPO drive map" in body["markdown"]
    assert notes_stack.stub_client.call_count == 1  # never retried

    [row] = _ledger(sid)
    assert row.fallback_reason == "permanent_error" and row.llm_calls == 1
    assert row.error is not None and row.error.split(":")[0].endswith(("_error", "too_large"))
    assert row.cost_usd == 0


def test_a_final_note_falls_back_when_the_llm_stays_down(notes_stack: Any, make_user: Any) -> None:
    user = make_user("owner")
    sid = create_session(user.account_id, problem="Outlook crashes at start")
    add_fact(sid, user.account_id, "Confirmed: a COM add-in crashes Outlook", "confirmed")
    notes_stack.stub_client.fail(status=529, times=100, retry_after=0.01)
    resolve_session(sid, user.account_id, ticket_ref="INC-9")

    def final() -> dict[str, Any] | None:
        got = notes_stack.client().get(
            f"/api/v1/ai-sessions/{sid}/resolution-note", headers=user.headers
        )
        if got.status_code != 200:
            return None
        data: dict[str, Any] = got.get_json()
        return data if data.get("status") == "ready" else None

    note = wait_until(final, 60, interval_s=0.2, message="the final note fell back")
    assert note["generator"] == "offline-fallback"
    assert "COM add-in" in note["markdown"]
    # One generation: the first call and the SDK's two retries, then the fallback.
    assert notes_stack.stub_client.call_count == 3
    rows = _ledger(sid)
    assert [(r.fallback_reason, r.error.split(":")[0] if r.error else None) for r in rows] == [
        ("llm_unavailable", "overloaded_error")
    ]


def test_past_the_budget_notes_come_from_the_offline_generator(
    notes_stack: Any, make_user: Any
) -> None:
    user = make_user("owner")
    with db.transaction() as session:
        set_budget(session, user.account_id, Decimal("0"))
    sid = create_session(user.account_id, problem="Wi-Fi keeps dropping")
    add_fact(sid, user.account_id, "Confirmed: the AP firmware is outdated", "confirmed")

    body = _preview(notes_stack, user, sid).get_json()
    assert body["generator"] == "offline-fallback"
    assert body["fallback_reason"] == "budget_exceeded"
    assert notes_stack.stub_client.call_count == 0
    [row] = _ledger(sid)
    assert row.fallback_reason == "budget_exceeded" and row.llm_calls == 0
