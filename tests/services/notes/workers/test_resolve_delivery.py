"""Resolve → durable note → signed webhook, against a real worker and a local receiver.

The retry schedule is `0,0,0,0,0` here (five attempts, no waiting), leases last 2 s and the
sweeper runs every second, so recovery after a SIGKILL is quick enough to test.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import select

from services.notes.integrations import configure_ticketing
from shared.db import db
from shared.models import LLMUsageRecord, ResolutionNote, TicketingIntegration
from tests.support.receiver import WebhookReceiver
from tests.support.workers import (
    CeleryBeat,
    add_fact,
    child_env,
    create_session,
    resolve_session,
    run_sweeper,
    stub_calls_mentioning,
    wait_until,
)

# Fixtures: a module-wide worker, stub LLM and notes app; a clean-up that keeps the broker's keys.


@pytest.fixture(scope="module")
def notes_overrides() -> dict[str, Any]:
    return {
        "WEBHOOK_RETRY_SCHEDULE_S": (0, 0, 0, 0, 0),
        "WEBHOOK_TIMEOUT_S": 5.0,
        "JOB_LEASE_S": 2,
        "SWEEP_INTERVAL_S": 1.0,
        "NOTES_LOCK_TTL_S": 3.0,
    }


def _ticketing(account_id: uuid.UUID, url: str) -> str:
    with db.transaction() as session:
        return configure_ticketing(
            session, account_id=account_id, url=url, secret=None, allow_private=True
        ).secret


def _note(session_id: uuid.UUID) -> ResolutionNote | None:
    with db.session() as session:
        return session.scalars(
            select(ResolutionNote).where(ResolutionNote.session_id == session_id)
        ).one_or_none()


def _status(session_id: uuid.UUID) -> str | None:
    note = _note(session_id)
    return note.delivery_status if note is not None else None


def _final(stack: Any, user: Any, session_id: uuid.UUID) -> dict[str, Any]:
    response = stack.client().get(
        f"/api/v1/ai-sessions/{session_id}/resolution-note", headers=user.headers
    )
    assert response.status_code == 200, response.get_json()
    return dict(response.get_json())


def test_resolve_delivers_one_signed_webhook_reusing_the_preview(
    notes_stack: Any, make_user: Any
) -> None:
    user = make_user("owner")
    marker = f"res-{uuid.uuid4().hex[:8]}"
    sid = create_session(user.account_id, problem=f"Outlook crashes {marker}", ticket_ref="T-1")
    add_fact(sid, user.account_id, f"Confirmed: {marker} add-in crashes Outlook")
    preview = notes_stack.client().get(
        f"/api/v1/ai-sessions/{sid}/resolution-note/preview?wait=15", headers=user.headers
    )
    assert preview.status_code == 200
    with WebhookReceiver() as receiver:
        receiver.secret = _ticketing(user.account_id, receiver.url)
        version = resolve_session(sid, user.account_id, ticket_ref="T-42")
        deliveries = receiver.wait_for(1)
        wait_until(lambda: _status(sid) == "delivered", 10, message="note delivered")

    note = _note(sid)
    assert note is not None
    [delivered] = deliveries
    assert delivered.verified
    assert delivered.webhook_id == str(note.id)
    body = delivered.json
    assert body == {
        "type": "resolution_note.created",
        "note_id": str(note.id),
        "session_id": str(sid),
        "ticket_ref": "T-42",
        "state_version": version,
        "markdown": note.markdown,
        "generated_at": body["generated_at"],
    }
    # The resolve itself changed no note input: the preview's note was reused, no LLM call.
    assert note.markdown == preview.get_json()["markdown"]
    assert stub_calls_mentioning(notes_stack.stub_client.calls(), marker) == 1
    with db.session() as session:
        assert (
            len(
                session.scalars(
                    select(LLMUsageRecord).where(LLMUsageRecord.ai_session_id == sid)
                ).all()
            )
            == 1
        )

    final = _final(notes_stack, user, sid)
    assert final["delivery_status"] == "delivered"
    assert final["attempts"] == 1
    assert final["state_version"] == version
    assert final["delivered_at"] is not None
    assert [a["outcome"] for a in final["delivery_attempts"]] == ["delivered"]
    assert len(receiver.deliveries) == 1


def test_three_failures_then_the_fourth_attempt_delivers(notes_stack: Any, make_user: Any) -> None:
    user = make_user("owner")
    sid = create_session(user.account_id, problem="Shared drive missing")
    add_fact(sid, user.account_id, "Confirmed: the GPO drive map points at an old server")
    with WebhookReceiver(statuses=[500, 503, 429, 200]) as receiver:
        receiver.secret = _ticketing(user.account_id, receiver.url)
        resolve_session(sid, user.account_id, ticket_ref="T-7")
        deliveries = receiver.wait_for(4)
        wait_until(lambda: _status(sid) == "delivered", 10, message="note delivered")
    assert all(d.verified for d in deliveries)
    assert len({d.webhook_id for d in deliveries}) == 1  # stable across retries
    final = _final(notes_stack, user, sid)
    assert final["delivery_status"] == "delivered"
    assert final["attempts"] == 4
    assert [(a["outcome"], a["status_code"]) for a in final["delivery_attempts"]] == [
        ("retry", 500),
        ("retry", 503),
        ("retry", 429),
        ("delivered", 200),
    ]


def test_no_endpoint_keeps_the_note_as_not_configured(notes_stack: Any, make_user: Any) -> None:
    user = make_user("owner")
    sid = create_session(user.account_id, problem="Nothing configured")
    add_fact(sid, user.account_id, "Confirmed: toner empty")
    resolve_session(sid, user.account_id)
    wait_until(lambda: _status(sid) == "not_configured", 15, message="not_configured")
    final = _final(notes_stack, user, sid)
    assert final["markdown"] and "## Resolution" in final["markdown"]
    assert final["attempts"] == 0


def test_a_permanent_error_fails_and_redelivery_succeeds(notes_stack: Any, make_user: Any) -> None:
    user = make_user("owner")
    engineer = make_user("engineer", account_id=user.account_id)
    sid = create_session(user.account_id, problem="Bad request")
    add_fact(sid, user.account_id, "Confirmed: wifi driver outdated")
    with WebhookReceiver(statuses=[400]) as receiver:
        receiver.secret = _ticketing(user.account_id, receiver.url)
        resolve_session(sid, user.account_id, ticket_ref="T-7")
        wait_until(lambda: _status(sid) == "failed", 15, message="delivery failed")
        final = _final(notes_stack, user, sid)
        assert final["attempts"] == 1
        # Our reason, and the target's words apart, bounded and sanitised, for owners only.
        assert final["last_error"] == "HTTP 400: the endpoint refused the delivery"
        assert final["last_error_detail"] == '{"error": "test"}'
        assert final["delivery_attempts"][0]["detail"] == '{"error": "test"}'
        for member in (engineer, make_user("viewer", account_id=user.account_id)):
            seen = _final(notes_stack, member, sid)
            assert seen["delivery_status"] == "failed"
            assert seen["last_error"] is None and seen["last_error_detail"] is None
            assert [(a["error"], a["detail"]) for a in seen["delivery_attempts"]] == [(None, None)]
            assert seen["delivery_attempts"][0]["status_code"] == 400

        url = f"/api/v1/ai-sessions/{sid}/resolution-note/redeliver"
        assert notes_stack.client().post(url, headers=engineer.headers).status_code == 403
        again = notes_stack.client().post(url, headers=user.headers)
        assert again.status_code == 202
        assert again.get_json()["delivery_status"] == "pending"
        receiver.wait_for(2)
        wait_until(lambda: _status(sid) == "delivered", 10, message="redelivered")
    final = _final(notes_stack, user, sid)
    assert final["attempts"] == 2
    assert final["last_error"] is None


def test_410_disables_the_endpoint(notes_stack: Any, make_user: Any) -> None:
    user = make_user("owner")
    sid = create_session(user.account_id, problem="Gone")
    add_fact(sid, user.account_id, "Confirmed: cert expired")
    with WebhookReceiver(statuses=[410]) as receiver:
        receiver.secret = _ticketing(user.account_id, receiver.url)
        resolve_session(sid, user.account_id, ticket_ref="T-7")
        wait_until(lambda: _status(sid) == "disabled", 15, message="disabled")
    with db.session() as session:
        integration = session.scalars(
            select(TicketingIntegration).where(TicketingIntegration.account_id == user.account_id)
        ).one()
        assert integration.status == "disabled"
        assert "410" in (integration.disabled_reason or "")
    got = notes_stack.client().get("/api/v1/integrations/ticketing", headers=user.headers)
    assert got.get_json()["status"] == "disabled"


def test_final_note_is_404_before_resolve_and_for_other_accounts(
    notes_stack: Any, make_user: Any
) -> None:
    user = make_user("owner")
    stranger = make_user("owner")
    sid = create_session(user.account_id)
    url = f"/api/v1/ai-sessions/{sid}/resolution-note"
    assert notes_stack.client().get(url, headers=user.headers).status_code == 404
    resolve_session(sid, user.account_id)
    wait_until(lambda: _status(sid) == "not_configured", 15)
    assert notes_stack.client().get(url, headers=user.headers).status_code == 200
    assert notes_stack.client().get(url, headers=stranger.headers).status_code == 404
    redeliver = notes_stack.client().post(url + "/redeliver", headers=stranger.headers)
    assert redeliver.status_code == 404


def test_a_resolve_whose_event_was_lost_is_found_by_the_sweeper(
    notes_stack: Any, make_user: Any
) -> None:
    user = make_user("owner")
    sid = create_session(user.account_id, problem="Lost event")
    add_fact(sid, user.account_id, "Confirmed: the event never left the outbox")
    # Pilot's Resolve in a plain transaction: the outbox rows are written but never published.
    with db.transaction() as session:
        version = resolve_session_in(session, sid, user).state_version

    def swept() -> bool:
        run_sweeper(notes_stack.settings)
        return _status(sid) == "not_configured"

    wait_until(swept, 20, interval_s=0.3, message="sweeper materialised the note")
    note = _note(sid)
    assert note is not None and note.state_version == version and note.markdown


def test_a_worker_killed_mid_delivery_still_delivers(notes_stack: Any, make_user: Any) -> None:
    user = make_user("owner")
    sid = create_session(user.account_id, problem="Kill during delivery")
    add_fact(sid, user.account_id, "Confirmed: NIC firmware bug")
    with WebhookReceiver(statuses=["hang"]) as receiver:
        receiver.secret = _ticketing(user.account_id, receiver.url)
        resolve_session(sid, user.account_id, ticket_ref="T-7")
        receiver.wait_for(1)  # the worker is inside the POST now
        assert _status(sid) == "delivering"
        notes_stack.worker.kill()
        notes_stack.replace_worker()
        # Beat runs the sweeper every SWEEP_INTERVAL_S, as in production.
        with CeleryBeat(child_env(notes_stack.settings)):
            wait_until(lambda: _status(sid) == "delivered", 30, message="delivered after kill")
        deliveries = receiver.deliveries
    assert len(deliveries) >= 2
    assert len({d.webhook_id for d in deliveries}) == 1
    assert all(d.verified for d in deliveries)
    final = _final(notes_stack, user, sid)
    assert final["delivery_attempts"][-1]["outcome"] == "delivered"


def resolve_session_in(session: Any, sid: uuid.UUID, user: Any) -> Any:
    from services.pilot.sessions import resolve_session as pilot_resolve
    from shared.models import User
    from shared.principal import Principal

    writer = session.get(User, user.id)
    return pilot_resolve(session, Principal.from_user(writer), sid, ticket_ref=None, force=True)
