"""The KB article and the escalation handoff through the preview API
(`GET /api/v1/ai-sessions/{id}/resolution-note/preview?kind=...`) against a real worker, real
Redis and PostgreSQL, and the real anthropic SDK pointed at the stub Messages API: the same
cache, single flight and fingerprint reuse as the resolution note; a resolved session's KB
article queued on the Message Batches API."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from sqlalchemy import select

from services.notes import batch, context
from shared.db import db
from shared.models import LLMBatchItem, LLMUsageRecord
from tests.support.workers import (
    add_fact,
    chat_turn,
    create_session,
    resolve_session,
    stub_calls_mentioning,
    wait_until,
)

ESCALATION = (
    "## What was reported",
    "## What was checked",
    "## Ruled out",
    "## Current state",
    "## Suggested next steps",
    "## Scripts run",
)
KB = ("## Symptoms", "## Cause", "## Resolution", "## Applies to")


@pytest.fixture(scope="module")
def notes_overrides() -> dict[str, Any]:
    return {"NOTES_PREWARM": False}


def _url(session_id: uuid.UUID, **query: Any) -> str:
    args = "&".join(f"{k}={v}" for k, v in query.items())
    return f"/api/v1/ai-sessions/{session_id}/resolution-note/preview?{args}"


def _calls(stack: Any, marker: str) -> int:
    return stub_calls_mentioning(stack.stub_client.calls(), marker)


def _kb_calls(stack: Any, marker: str) -> int:
    """Messages API calls for a KB article (the resolved session's final note is another)."""
    return stub_calls_mentioning(
        [
            c
            for c in stack.stub_client.calls()
            if "knowledge-base articles" in c["json"]["system"][0]["text"]
        ],
        marker,
    )


def _open_session(account_id: uuid.UUID, marker: str) -> tuple[uuid.UUID, int]:
    sid = create_session(
        account_id, title=f"Outlook crashes {marker}", problem=f"Outlook closes at start {marker}"
    )
    add_fact(sid, account_id, "Outlook closes five seconds after the splash screen.", "symptom")
    add_fact(sid, account_id, "Outlook stays open in safe mode.", "confirmed")
    add_fact(sid, account_id, "A new Outlook profile crashes the same way.", "ruled_out")
    version = add_fact(
        sid, account_id, "The crashes began after the PDF add-in update.", "observation"
    )
    return sid, version


def test_escalation_preview_generates_once_then_serves_from_cache(
    notes_stack: Any, make_user: Any
) -> None:
    user = make_user("engineer")
    marker = f"esc-{uuid.uuid4().hex[:8]}"
    sid, version = _open_session(user.account_id, marker)
    client = notes_stack.client()

    first = client.get(_url(sid, kind="escalation", wait=60), headers=user.headers)
    assert first.status_code == 200, first.get_json()
    body = first.get_json()
    assert body["kind"] == "escalation" and body["state_version"] == version
    assert body["generator"] == "anthropic" and body["from_cache"] is False
    positions = [body["markdown"].index(h) for h in ESCALATION]
    assert positions == sorted(positions)
    ruled_out = body["markdown"].split("## Ruled out")[1].split("## ")[0]
    assert "A new Outlook profile crashes the same way." in ruled_out
    assert "No scripts were run during this session." in body["markdown"]
    assert _calls(notes_stack, marker) == 1
    # The request carried the escalation prompt and its six sections' schema.
    sent = notes_stack.stub_client.calls()[-1]["json"]
    assert "escalation handoffs" in sent["system"][0]["text"]
    schema = sent["output_config"]["format"]["schema"]
    titles = schema["properties"]["sections"]["items"]["properties"]["title"]["enum"]
    assert titles == [h[3:] for h in ESCALATION]

    again = client.get(_url(sid, kind="escalation", wait=60), headers=user.headers).get_json()
    assert again["from_cache"] is True and again["markdown"] == body["markdown"]
    # The resolution note of the same version is another key of the same cache.
    note = client.get(_url(sid, wait=60), headers=user.headers).get_json()
    assert note["kind"] == "resolution_note" and note["from_cache"] is False
    assert "## Problem" in note["markdown"]
    assert _calls(notes_stack, marker) == 2

    # A chat turn bumps the version without changing the handoff's inputs: reused, no call.
    bumped = chat_turn(sid, user.account_id, "Trying the add-in next")
    reused = client.get(_url(sid, kind="escalation", wait=60), headers=user.headers).get_json()
    assert reused["state_version"] == bumped and reused["from_cache"] is True
    assert reused["markdown"] == body["markdown"]
    assert _calls(notes_stack, marker) == 2

    with db.session() as session:
        purposes = sorted(
            r.purpose
            for r in session.scalars(
                select(LLMUsageRecord).where(LLMUsageRecord.ai_session_id == sid)
            )
        )
    assert purposes == ["escalation", "resolution_note"]


def test_concurrent_escalation_previews_share_one_generation(
    notes_stack: Any, make_user: Any
) -> None:
    user = make_user("engineer")
    marker = f"flight-{uuid.uuid4().hex[:8]}"
    sid, _version = _open_session(user.account_id, marker)
    notes_stack.stub_client.delay(1.5)
    answers: list[dict[str, Any]] = []

    def ask() -> None:
        response = notes_stack.client().get(
            _url(sid, kind="escalation", wait=60), headers=user.headers
        )
        answers.append({"status": response.status_code, **response.get_json()})

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert [a["status"] for a in answers] == [200] * 4
    assert len({a["markdown"] for a in answers}) == 1
    assert sum(1 for a in answers if a["from_cache"] is False) == 1
    assert _calls(notes_stack, marker) == 1


def test_kb_article_of_a_resolved_session_names_no_customer_detail(
    notes_stack: Any, make_user: Any
) -> None:
    user = make_user("engineer")
    marker = f"kb-{uuid.uuid4().hex[:8]}"
    sid = create_session(
        user.account_id,
        title=f"Spooler stuck on PRN-SRV01 {marker}",
        problem="Jane Doe (jane.doe@contoso.com) cannot print to PRN-SRV01.",
        ticket_ref="INC0047711",
    )
    add_fact(sid, user.account_id, "Jobs stay in the queue of PRN-SRV01 with Error.", "symptom")
    add_fact(
        sid, user.account_id, "Print server PRN-SRV01 runs Windows Server 2019.", "environment"
    )
    add_fact(sid, user.account_id, "A corrupted spool file blocked the queue.", "root_cause")
    add_fact(
        sid,
        user.account_id,
        "Cleared the spool folder on PRN-SRV01 and restarted the spooler; ticket INC0047711 "
        "can close.",
        "resolution",
    )
    client = notes_stack.client()

    # An open session has no KB article yet: 409 naming the kind.
    early = client.get(_url(sid, kind="kb_article", wait=0), headers=user.headers)
    assert early.status_code == 409, early.get_json()
    assert "kind" in early.get_json()["errors"]

    version = resolve_session(sid, user.account_id)
    response = client.get(_url(sid, kind="kb_article", wait=60), headers=user.headers)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["kind"] == "kb_article" and body["state_version"] == version
    assert body["generator"] == "anthropic"
    markdown = body["markdown"]
    positions = [markdown.index(h) for h in KB]
    assert positions == sorted(positions)
    for detail in ("PRN-SRV01", "Jane", "jane.doe@contoso.com", "contoso.com", "INC0047711"):
        assert detail.casefold() not in markdown.casefold()
    assert "[computer]" in markdown and "Windows Server 2019" in markdown
    # The model never saw the details either: generalised before the prompt was built.
    kb_calls = [
        c
        for c in notes_stack.stub_client.calls()
        if "knowledge-base articles" in c["json"]["system"][0]["text"]
    ]
    assert len(kb_calls) == 1
    sent = str(kb_calls[0]["json"])
    assert "Windows Server 2019" in sent
    for detail in ("PRN-SRV01", "jane.doe@contoso.com", "INC0047711"):
        assert detail not in sent

    # An escalation is for open sessions.
    late = client.get(_url(sid, kind="escalation", wait=0), headers=user.headers)
    assert late.status_code == 409


def test_unknown_kind_and_another_accounts_session(notes_stack: Any, make_user: Any) -> None:
    owner = make_user("engineer")
    stranger = make_user("engineer")
    sid = create_session(owner.account_id, problem="VPN drops")
    client = notes_stack.client()
    bad = client.get(_url(sid, kind="haiku", wait=0), headers=owner.headers)
    assert bad.status_code == 422
    assert "kind" in bad.get_json()["errors"]["query"]
    assert not any("haiku" in str(c["json"]) for c in notes_stack.stub_client.calls())
    other = client.get(_url(sid, kind="escalation", wait=0), headers=stranger.headers)
    assert other.status_code == 404


def test_a_resolved_session_queues_its_kb_article_on_the_batch_api(
    notes_stack: Any, make_user: Any
) -> None:
    user = make_user("owner")
    marker = f"batch-{uuid.uuid4().hex[:8]}"
    sid = create_session(user.account_id, problem=f"DHCP scope exhausted {marker}")
    add_fact(sid, user.account_id, f"The DHCP scope {marker} had no free leases.", "root_cause")
    add_fact(sid, user.account_id, "Shortened the lease time to 8 hours.", "resolution")
    version = resolve_session(sid, user.account_id)

    def queued() -> LLMBatchItem | None:
        with db.session() as session:
            return session.scalars(
                select(LLMBatchItem).where(
                    LLMBatchItem.ai_session_id == sid, LLMBatchItem.kind == "kb_article"
                )
            ).one_or_none()

    item = wait_until(queued, 90, message="the KB article queued for the batch lane")
    assert item.status == "queued" and item.state_version == version
    assert item.purpose == "kb_article"

    ctx = context.NotesContext(notes_stack.settings)

    def collected() -> bool:
        batch.run_lane(ctx)  # submits what is queued, collects what has ended
        item = queued()
        return item is not None and item.status == "succeeded"

    try:
        wait_until(collected, 90, interval_s=0.2, message="the batch collected")
    finally:
        ctx.generator.llm.close()
    assert _kb_calls(notes_stack, marker) == 0  # nothing went through /v1/messages
    submitted = [b for b in notes_stack.stub_client.batches() if marker in str(b)]
    assert len(submitted) == 1

    body = (
        notes_stack.client()
        .get(_url(sid, kind="kb_article", wait=5), headers=user.headers)
        .get_json()
    )
    assert body["from_cache"] is True and body["generator"] == "anthropic"
    assert "DHCP scope" in body["markdown"]
    assert _kb_calls(notes_stack, marker) == 0
    with db.session() as session:
        rows = list(
            session.scalars(select(LLMUsageRecord).where(LLMUsageRecord.ai_session_id == sid))
        )
    assert [(r.purpose, r.batch) for r in rows if r.purpose == "kb_article"] == [
        ("kb_article", True)
    ]
