"""Resolve → the note lands on the customer's ticket, through the real worker: a real Request
Tracker and Redmine (read back through their own APIs, and through ours), and the Zendesk fake
for what the console shows ("posted to Zendesk ticket 4711")."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.support.fake_saas import ZendeskFake
from tests.support.real_ticketing import Redmine, RequestTracker
from tests.support.tcp_proxy import DroppingProxy
from tests.support.workers import add_fact, create_session, resolve_session, wait_until

pytestmark = pytest.mark.xdist_group("real_ticketing")

URL = "/api/v1/integrations/ticketing"


@pytest.fixture(scope="module")
def notes_overrides() -> dict[str, Any]:
    return {
        "WEBHOOK_RETRY_SCHEDULE_S": (0, 0, 0, 0, 0),
        "WEBHOOK_TIMEOUT_S": 30.0,
        "JOB_LEASE_S": 20,
        "SWEEP_INTERVAL_S": 1.0,
        "NOTES_LOCK_TTL_S": 3.0,
    }


def _configure(stack: Any, owner: Any, body: dict[str, Any]) -> None:
    client = stack.client()
    put = client.put(URL, json=body, headers=owner.headers)
    assert put.status_code == 200, put.get_json()
    tested = client.post(f"{URL}/test", json={}, headers=owner.headers)
    assert tested.get_json()["ok"] is True, tested.get_json()


def _final(stack: Any, user: Any, sid: uuid.UUID) -> dict[str, Any]:
    response = stack.client().get(
        f"/api/v1/ai-sessions/{sid}/resolution-note", headers=user.headers
    )
    assert response.status_code == 200, response.get_json()
    return dict(response.get_json())


def _delivered(stack: Any, user: Any, sid: uuid.UUID, timeout_s: float = 90) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        response = stack.client().get(
            f"/api/v1/ai-sessions/{sid}/resolution-note", headers=user.headers
        )
        if response.status_code != 200:
            return None
        body = dict(response.get_json())
        return body if body["delivery_status"] in ("delivered", "failed") else None

    return wait_until(done, timeout_s, interval_s=0.2, message="note delivered")


def _resolve(owner: Any, ticket_ref: str, marker: str) -> uuid.UUID:
    sid = create_session(
        owner.account_id, problem=f"Printer offline {marker}", ticket_ref=ticket_ref
    )
    add_fact(sid, owner.account_id, f"Confirmed: the spooler {marker} had stopped")
    resolve_session(sid, owner.account_id, ticket_ref=ticket_ref)
    return sid


def test_resolve_posts_one_comment_on_the_rt_ticket(
    notes_stack: Any, make_user: Any, request_tracker: RequestTracker
) -> None:
    owner = make_user("owner")
    _configure(
        notes_stack,
        owner,
        {"kind": "request_tracker", "base_url": request_tracker.base_url,
         "credentials": {"token": request_tracker.token}},
    )  # fmt: skip
    ticket = request_tracker.create_ticket("printer offline")
    marker = uuid.uuid4().hex[:8]
    sid = _resolve(owner, ticket, marker)

    final = _delivered(notes_stack, owner, sid)

    assert final["delivery_status"] == "delivered", final
    assert final["delivered_to"]["label"] == "Request Tracker"
    assert final["delivered_to"]["ticket"] == ticket
    assert final["delivered_to"]["link"].startswith(request_tracker.base_url)
    comments = request_tracker.comments(ticket)
    texts = [str(a.get("Content")) for c in comments for a in c["attachments"]]
    mine = [t for t in texts if f"RF-Ref: {final['id']}" in t]
    assert len(mine) == 1
    assert marker in mine[0]
    assert request_tracker.correspondence_count(ticket) == 0


def test_redmine_answer_lost_after_commit_still_one_note(
    notes_stack: Any, make_user: Any, redmine: Redmine
) -> None:
    owner = make_user("owner")
    issue = redmine.create_issue("printer offline")
    with DroppingProxy("127.0.0.1", redmine.port) as proxy:
        _configure(
            notes_stack,
            owner,
            {"kind": "redmine", "base_url": proxy.base_url,
             "credentials": {"api_key": redmine.api_key}},
        )  # fmt: skip
        proxy.drop_next(1, methods=("PUT",))
        marker = uuid.uuid4().hex[:8]
        sid = _resolve(owner, issue, marker)
        final = _delivered(notes_stack, owner, sid)
        assert proxy.dropped == 1

    assert final["delivery_status"] == "delivered", final
    outcomes = [a["outcome"] for a in final["delivery_attempts"]]
    assert outcomes == ["retry", "delivered"]
    journals = [j for j in redmine.journals(issue) if f"RF-Ref: {final['id']}" in j["notes"]]
    assert len(journals) == 1
    assert journals[0]["private_notes"] is True
    assert final["delivered_to"]["label"] == "Redmine"


def test_console_data_names_the_zendesk_ticket_and_links_it(
    notes_stack: Any, make_user: Any
) -> None:
    owner = make_user("owner")
    engineer = make_user("engineer", account_id=owner.account_id)
    with ZendeskFake() as fake:
        fake.program(["429"])
        _configure(
            notes_stack,
            owner,
            {"kind": "zendesk", "base_url": fake.base_url, "credentials": fake.credentials},
        )
        sid = _resolve(owner, "4711", uuid.uuid4().hex[:8])
        final = _delivered(notes_stack, engineer, sid)
        notes = fake.notes("4711")

    assert final["delivered_to"] == {
        "kind": "zendesk",
        "label": "Zendesk",
        "ticket": "4711",
        "ref": str(notes[0]["id"]),
        "link": f"{fake.base_url}/agent/tickets/4711",
    }
    assert len(notes) == 1 and notes[0]["public"] is False
    first, second = final["delivery_attempts"]
    assert first["outcome"] == "retry" and first["status_code"] == 429
    assert first["request_id"]  # the target's own request id is kept
    assert second["outcome"] == "delivered"
