"""The Request Tracker and Redmine adapters against the real systems (Debian's packages),
read back through each system's own API."""

from __future__ import annotations

import uuid

import pytest

from services.notes.adapters import adapter_for
from services.notes.adapters.base import Target
from services.notes.adapters.http import OutboundTransport
from services.notes.delivery import Outcome
from services.notes.ticketing import attempt
from tests.support.real_ticketing import Redmine, RequestTracker
from tests.support.tcp_proxy import DroppingProxy

pytestmark = pytest.mark.xdist_group("real_ticketing")

NOTE = """## Problem
The printer queue on <script>alert(1)</script> stalled.

## Resolution
- Restarted the **Print Spooler**
- Cleared `C:\\Windows\\System32\\spool\\PRINTERS`
"""

HTTP = OutboundTransport(allow_private=True)


def _rt_target(rt: RequestTracker, base_url: str | None = None, token: str | None = None) -> Target:
    return Target(base_url=base_url or rt.base_url, credentials={"token": token or rt.token})


def _rm_target(rm: Redmine, base_url: str | None = None, key: str | None = None) -> Target:
    return Target(base_url=base_url or rm.base_url, credentials={"api_key": key or rm.api_key})


def _deliver(kind: str, target: Target, ticket: str, note_id: str, *, look_first: bool):  # type: ignore[no-untyped-def]
    return attempt(
        adapter_for(kind, HTTP),
        target,
        note_id=note_id,
        ticket_ref=ticket,
        markdown=NOTE,
        webhook_payload={},
        look_first=look_first,
    )


def _rt_notes(rt: RequestTracker, ticket: str, note_id: str) -> list[str]:
    texts = [str(a.get("Content") or "") for c in rt.comments(ticket) for a in c["attachments"]]
    return [t for t in texts if f"RF-Ref: {note_id}" in t]


def test_rt_posts_one_plain_text_comment_not_a_correspondence(
    request_tracker: RequestTracker,
) -> None:
    ticket = request_tracker.create_ticket("printer offline")
    note_id = str(uuid.uuid4())

    result = _deliver(
        "request_tracker", _rt_target(request_tracker), ticket, note_id, look_first=False
    )

    assert result.outcome is Outcome.DELIVERED, result.error
    assert result.posted is not None and result.posted.link
    assert f"id={ticket}" in result.posted.link
    (text,) = _rt_notes(request_tracker, ticket, note_id)
    assert "Restarted the Print Spooler" in text
    assert "**" not in text  # plain text, not markdown
    assert request_tracker.correspondence_count(ticket) == 0  # no mail to the requestor


def test_rt_lost_answer_then_retry_leaves_one_comment(request_tracker: RequestTracker) -> None:
    ticket = request_tracker.create_ticket("lost answer")
    note_id = str(uuid.uuid4())
    with DroppingProxy("127.0.0.1", request_tracker.port) as proxy:
        proxy.drop_next(1, methods=("POST",))
        target = _rt_target(request_tracker, base_url=proxy.base_url)
        first = _deliver("request_tracker", target, ticket, note_id, look_first=False)
        assert first.outcome is Outcome.RETRY, first
        assert proxy.dropped == 1
        # RT committed the comment although we never saw the answer.
        assert len(_rt_notes(request_tracker, ticket, note_id)) == 1

        retry = _deliver("request_tracker", target, ticket, note_id, look_first=True)

    assert retry.outcome is Outcome.DELIVERED
    assert retry.posted is not None and retry.posted.found
    assert len(_rt_notes(request_tracker, ticket, note_id)) == 1


def test_rt_refused_token_and_missing_ticket_fail_without_retry(
    request_tracker: RequestTracker,
) -> None:
    ticket = request_tracker.create_ticket("refused token")
    bad = _deliver(
        "request_tracker",
        _rt_target(request_tracker, token="1-1-" + "0" * 32),
        ticket,
        "n",
        look_first=False,
    )
    assert bad.outcome is Outcome.FAILED and bad.status_code == 401
    assert "refused the credentials" in (bad.error or "")

    missing = _deliver(
        "request_tracker", _rt_target(request_tracker), "987654", "n", look_first=False
    )
    assert missing.outcome is Outcome.FAILED
    assert missing.error == "ticket 987654 not found in Request Tracker"


def test_rt_check_reads_the_ticket(request_tracker: RequestTracker) -> None:
    ticket = request_tracker.create_ticket("check me")
    adapter = adapter_for("request_tracker", HTTP)
    assert "check me" in adapter.check(_rt_target(request_tracker), ticket)
    assert "queue" in adapter.check(_rt_target(request_tracker), None)


def _rm_notes(rm: Redmine, issue: str, note_id: str) -> list[dict[str, object]]:
    return [j for j in rm.journals(issue) if f"RF-Ref: {note_id}" in str(j["notes"])]


def test_redmine_posts_one_private_commonmark_note(redmine: Redmine) -> None:
    issue = redmine.create_issue("printer offline")
    note_id = str(uuid.uuid4())

    result = _deliver("redmine", _rm_target(redmine), issue, note_id, look_first=False)

    assert result.outcome is Outcome.DELIVERED, result.error
    (journal,) = _rm_notes(redmine, issue, note_id)
    assert journal["private_notes"] is True
    assert "**Print Spooler**" in str(journal["notes"])  # CommonMark kept for Redmine
    page = redmine.rendered_note(issue)
    assert "<strong>Print Spooler</strong>" in page
    assert "<script>alert(1)</script>" not in page


def test_redmine_lost_answer_then_retry_leaves_one_note(redmine: Redmine) -> None:
    issue = redmine.create_issue("lost answer")
    note_id = str(uuid.uuid4())
    with DroppingProxy("127.0.0.1", redmine.port) as proxy:
        proxy.drop_next(1, methods=("PUT",))
        target = _rm_target(redmine, base_url=proxy.base_url)
        first = _deliver("redmine", target, issue, note_id, look_first=False)
        assert first.outcome is Outcome.RETRY, first
        assert len(_rm_notes(redmine, issue, note_id)) == 1

        retry = _deliver("redmine", target, issue, note_id, look_first=True)

    assert retry.outcome is Outcome.DELIVERED and retry.posted is not None
    assert retry.posted.found
    assert len(_rm_notes(redmine, issue, note_id)) == 1


def test_redmine_refused_key_and_missing_issue(redmine: Redmine) -> None:
    issue = redmine.create_issue("refused key")  # Redmine says 404 before 401 for no issue
    bad = _deliver("redmine", _rm_target(redmine, key="0" * 40), issue, "n", look_first=False)
    assert bad.outcome is Outcome.FAILED and bad.status_code == 401
    missing = _deliver("redmine", _rm_target(redmine), "987654", "n", look_first=False)
    assert missing.outcome is Outcome.FAILED
    assert missing.error == "ticket 987654 not found in Redmine"
