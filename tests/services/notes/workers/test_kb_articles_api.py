"""Keeping KB articles (`POST /api/v1/ai-sessions/{id}/resolution-note/keep?kind=kb_article`)
and the account's knowledge base (`GET /api/v1/kb-articles`, searchable, paged) against a real
worker, Redis, PostgreSQL and the stub Messages API. Another account's article is never listed
or readable."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import func, select

from shared.db import db
from shared.models import KbArticle
from tests.support.workers import add_fact, create_session, resolve_session

LIST = "/api/v1/kb-articles"


@pytest.fixture(scope="module")
def notes_overrides() -> dict[str, Any]:
    return {"NOTES_PREWARM": False}


def _keep(session_id: uuid.UUID, **query: Any) -> str:
    args = "&".join(f"{k}={v}" for k, v in {"kind": "kb_article", "wait": 60, **query}.items())
    return f"/api/v1/ai-sessions/{session_id}/resolution-note/keep?{args}"


def _resolved(account_id: uuid.UUID, title: str, cause: str, fix: str) -> uuid.UUID:
    sid = create_session(account_id, title=title, problem=f"{title} on PC-0042.")
    add_fact(sid, account_id, f"{title}.", "symptom")
    add_fact(sid, account_id, cause, "root_cause")
    add_fact(sid, account_id, fix, "resolution")
    resolve_session(sid, account_id)
    return sid


def _count(account_id: uuid.UUID) -> int:
    with db.session() as session:
        return int(
            session.execute(
                select(func.count())
                .select_from(KbArticle)
                .where(KbArticle.account_id == account_id)
            ).scalar_one()
        )


def test_keep_list_search_and_read_the_accounts_articles(notes_stack: Any, make_user: Any) -> None:
    user = make_user("engineer")
    client = notes_stack.client()
    spooler = _resolved(
        user.account_id,
        "Print jobs stuck in the queue",
        "A corrupted spool file blocked the print spooler.",
        "Cleared the spool folder and restarted the spooler service.",
    )
    dns = _resolved(
        user.account_id,
        "Intranet name does not resolve",
        "The conditional forwarder pointed at a retired DNS server.",
        "Repointed the conditional forwarder; lookups work.",
    )

    kept = client.post(_keep(spooler), headers=user.headers)
    assert kept.status_code == 200, kept.get_json()
    article = kept.get_json()
    assert article["session_id"] == str(spooler) and article["replaced"] is False
    assert article["title"] == "Print jobs stuck in the queue"
    assert "## Symptoms" in article["markdown"] and "## Applies to" in article["markdown"]
    assert "PC-0042" not in article["markdown"]  # generalised: [computer]
    assert article["kept_by"] == str(user.id)
    assert any(c["cites"] for c in article["citations"])
    assert client.post(_keep(dns), headers=user.headers).status_code == 200

    listed = client.get(LIST, headers=user.headers)
    assert listed.status_code == 200
    assert listed.headers["X-Total-Count"] == "2"
    assert [a["session_id"] for a in listed.get_json()] == [str(dns), str(spooler)]  # newest
    assert "markdown" not in listed.get_json()[0]

    found = client.get(f"{LIST}?search=spooler", headers=user.headers)
    assert [a["session_id"] for a in found.get_json()] == [str(spooler)]
    assert found.headers["X-Total-Count"] == "1"
    # Stemmed full text ("forwarders" finds "forwarder"), and a literal part of a word.
    assert [
        a["session_id"]
        for a in client.get(f"{LIST}?search=forwarders", headers=user.headers).get_json()
    ] == [str(dns)]
    assert [
        a["session_id"] for a in client.get(f"{LIST}?search=spoo", headers=user.headers).get_json()
    ] == [str(spooler)]

    page = client.get(f"{LIST}?limit=1&offset=1", headers=user.headers)
    assert [a["session_id"] for a in page.get_json()] == [str(spooler)]
    assert page.headers["X-Total-Count"] == "2"

    one = client.get(f"{LIST}/{article['id']}", headers=user.headers)
    assert one.status_code == 200
    assert one.get_json()["markdown"] == article["markdown"]


def test_keeping_again_replaces_the_sessions_article(notes_stack: Any, make_user: Any) -> None:
    user = make_user("engineer")
    client = notes_stack.client()
    sid = _resolved(
        user.account_id,
        "Teams shows a white screen",
        "A corrupted Teams cache.",
        "Cleared the Teams cache folder.",
    )
    first = client.post(_keep(sid), headers=user.headers).get_json()
    assert first["replaced"] is False
    second = client.post(_keep(sid), headers=user.headers).get_json()
    assert second["replaced"] is True and second["id"] == first["id"]
    assert second["state_version"] == first["state_version"]
    assert second["markdown"] == first["markdown"]
    assert second["updated_at"] >= first["updated_at"]
    assert _count(user.account_id) == 1


def test_keep_refuses_bad_input_and_open_sessions_and_writes_nothing(
    notes_stack: Any, make_user: Any
) -> None:
    user = make_user("engineer")
    client = notes_stack.client()
    open_sid = create_session(user.account_id, problem="Still broken")
    add_fact(open_sid, user.account_id, "The laptop is slow.", "symptom")

    not_resolved = client.post(_keep(open_sid), headers=user.headers)
    assert not_resolved.status_code == 409
    assert "kind" in not_resolved.get_json()["errors"]

    resolved = _resolved(user.account_id, "Disk full", "Old logs filled the disk.", "Purged logs.")
    for query, field in (({"kind": "escalation"}, "kind"), ({"kind": "resolution_note"}, "kind")):
        bad = client.post(_keep(resolved, **query), headers=user.headers)
        assert bad.status_code == 422, bad.get_json()
        assert field in bad.get_json()["errors"]["query"]
    missing = client.post(
        f"/api/v1/ai-sessions/{resolved}/resolution-note/keep", headers=user.headers
    )
    assert missing.status_code == 422 and "kind" in missing.get_json()["errors"]["query"]
    typo = client.get(f"{LIST}?serch=disk", headers=user.headers)
    assert typo.status_code == 422 and "serch" in typo.get_json()["errors"]["query"]
    assert client.get(f"{LIST}?limit=0", headers=user.headers).status_code == 422
    viewer = make_user("viewer", account_id=user.account_id)
    assert client.post(_keep(resolved), headers=viewer.headers).status_code == 403
    assert client.get(LIST, headers=viewer.headers).status_code == 200  # viewers read
    outsider = make_user("viewer")
    assert client.post(_keep(resolved), headers=outsider.headers).status_code == 404
    assert client.post(_keep(resolved)).status_code == 401
    assert client.get(LIST).status_code == 401
    assert _count(user.account_id) == 0


def test_another_accounts_articles_are_never_listed_or_readable(
    notes_stack: Any, make_user: Any
) -> None:
    owner = make_user("engineer")
    stranger = make_user("owner")
    client = notes_stack.client()
    sid = _resolved(
        owner.account_id,
        "VPN drops every half hour",
        "The gateway idle timeout was too short.",
        "Raised the idle timeout.",
    )
    article = client.post(_keep(sid), headers=owner.headers).get_json()

    theirs = client.get(f"{LIST}?search=VPN", headers=stranger.headers)
    assert theirs.status_code == 200 and theirs.get_json() == []
    assert theirs.headers["X-Total-Count"] == "0"
    assert client.get(LIST, headers=stranger.headers).get_json() == []
    assert client.get(f"{LIST}/{article['id']}", headers=stranger.headers).status_code == 404
    assert client.get(f"{LIST}/{uuid.uuid4()}", headers=owner.headers).status_code == 404
    # Nor can they keep (or overwrite) it through the session.
    assert client.post(_keep(sid), headers=stranger.headers).status_code == 404
    assert _count(stranger.account_id) == 0
    mine = client.get(f"{LIST}/{article['id']}", headers=owner.headers).get_json()
    assert mine["updated_at"] == article["updated_at"]
