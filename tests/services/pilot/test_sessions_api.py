"""Sessions: create, list, read, edit, resolve, reopen; auth, roles, accounts, OpenAPI."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from sqlalchemy import func, select

from shared.db import db
from shared.models import AISession, OutboxEvent
from tests.support.pilot_api import BASE


def _count_sessions() -> int:
    with db.session() as session:
        return int(session.execute(select(func.count()).select_from(AISession)).scalar_one())


def _count_outbox() -> int:
    with db.session() as session:
        return int(session.execute(select(func.count()).select_from(OutboxEvent)).scalar_one())


def test_create_session_returns_the_new_session_at_version_one(
    pilot_client: Any, engineer: Any, helpers: SimpleNamespace
) -> None:
    response = pilot_client.post(
        helpers.base,
        json={"title": "  Printer offline  ", "ticket_ref": "INC-42", "problem": "No prints"},
        headers=engineer.headers,
    )
    assert response.status_code == 201
    body = response.get_json()
    assert body["title"] == "Printer offline"
    assert body["ticket_ref"] == "INC-42"
    assert body["problem"] == "No prints"
    assert body["status"] == "active"
    assert body["state_version"] == 1
    assert body["created_by"] == str(engineer.id)
    assert body["created_at"] and body["resolved_at"] is None and body["resolved_version"] is None
    assert helpers.session_version(body["id"]) == 1


def test_create_session_rejects_bad_input_and_writes_nothing(
    pilot_client: Any, engineer: Any, helpers: SimpleNamespace
) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({}, "title"),
        ({"title": "   "}, "title"),
        ({"title": "x" * 301}, "title"),
        ({"title": "ok", "ticket_ref": "r" * 201}, "ticket_ref"),
        ({"title": "ok", "status": "resolved"}, "status"),
        ({"title": 5}, "title"),
    ]
    for payload, field in cases:
        response = pilot_client.post(helpers.base, json=payload, headers=engineer.headers)
        assert response.status_code == 422, payload
        body = response.get_json()
        assert body["code"] == 422
        assert field in body["errors"]["json"], (payload, body)
    assert _count_sessions() == 0
    assert _count_outbox() == 0


def test_requests_without_a_valid_token_are_401(
    pilot_client: Any, helpers: SimpleNamespace
) -> None:
    assert pilot_client.get(helpers.base).status_code == 401
    response = pilot_client.post(
        helpers.base, json={"title": "x"}, headers={"Authorization": "Bearer nope"}
    )
    assert response.status_code == 401
    assert _count_sessions() == 0


def test_viewer_reads_but_cannot_write(
    pilot_client: Any, make_user: Callable[..., Any], helpers: SimpleNamespace
) -> None:
    owner = make_user("owner")
    viewer = make_user("viewer", account_id=owner.account_id)
    created = helpers.create_session(pilot_client, owner)
    sid = created["id"]

    assert pilot_client.get(f"{helpers.base}/{sid}", headers=viewer.headers).status_code == 200
    listed = pilot_client.get(helpers.base, headers=viewer.headers).get_json()
    assert [s["id"] for s in listed] == [sid]

    writes = [
        ("post", helpers.base, {"title": "mine"}),
        ("patch", f"{helpers.base}/{sid}", {"title": "renamed"}),
        ("post", f"{helpers.base}/{sid}/resolve", {}),
        ("post", f"{helpers.base}/{sid}/reopen", None),
    ]
    for method, url, payload in writes:
        response = getattr(pilot_client, method)(url, json=payload, headers=viewer.headers)
        assert response.status_code == 403, (method, url, response.get_json())
    assert _count_sessions() == 1
    assert helpers.session_version(sid) == 1


def test_list_is_scoped_to_the_account_and_filters_and_pages(
    pilot_client: Any, engineer: Any, outsider: Any, helpers: SimpleNamespace
) -> None:
    ids = [helpers.create_session(pilot_client, engineer, title=f"s{i}")["id"] for i in range(3)]
    helpers.create_session(pilot_client, outsider, title="theirs")
    pilot_client.post(
        f"{helpers.base}/{ids[0]}/resolve", json={"force": True}, headers=engineer.headers
    )

    response = pilot_client.get(helpers.base, headers=engineer.headers)
    assert response.status_code == 200
    assert response.headers["X-Total-Count"] == "3"
    assert [s["id"] for s in response.get_json()] == list(reversed(ids))

    active = pilot_client.get(f"{helpers.base}?status=active", headers=engineer.headers)
    assert {s["id"] for s in active.get_json()} == set(ids[1:])
    resolved = pilot_client.get(f"{helpers.base}?status=resolved", headers=engineer.headers)
    assert [s["id"] for s in resolved.get_json()] == [ids[0]]

    page = pilot_client.get(f"{helpers.base}?limit=1&offset=1", headers=engineer.headers)
    assert [s["id"] for s in page.get_json()] == [ids[1]]
    assert page.headers["X-Total-Count"] == "3"

    bad = pilot_client.get(f"{helpers.base}?status=open", headers=engineer.headers)
    assert bad.status_code == 422
    assert "status" in bad.get_json()["errors"]["query"]
    assert pilot_client.get(f"{helpers.base}?limit=0", headers=engineer.headers).status_code == 422


def test_get_session_and_404s(
    pilot_client: Any, engineer: Any, outsider: Any, helpers: SimpleNamespace
) -> None:
    sid = helpers.create_session(pilot_client, engineer)["id"]
    ok = pilot_client.get(f"{helpers.base}/{sid}", headers=engineer.headers)
    assert ok.status_code == 200 and ok.get_json()["id"] == sid
    assert pilot_client.get(f"{helpers.base}/{sid}", headers=outsider.headers).status_code == 404
    missing = pilot_client.get(f"{helpers.base}/{uuid.uuid4()}", headers=engineer.headers)
    assert missing.status_code == 404
    assert missing.get_json()["code"] == 404
    assert (
        pilot_client.get(f"{helpers.base}/not-a-uuid", headers=engineer.headers).status_code == 404
    )


def test_patch_session_bumps_and_validates(
    pilot_client: Any, engineer: Any, outsider: Any, helpers: SimpleNamespace
) -> None:
    sid = helpers.create_session(pilot_client, engineer, ticket_ref="OLD")["id"]
    url = f"{helpers.base}/{sid}"

    response = pilot_client.patch(url, json={"title": " New title "}, headers=engineer.headers)
    assert response.status_code == 200
    body = response.get_json()
    assert body["title"] == "New title" and body["ticket_ref"] == "OLD"
    assert body["state_version"] == 2

    cleared = pilot_client.patch(url, json={"ticket_ref": None}, headers=engineer.headers)
    assert cleared.status_code == 200
    assert cleared.get_json()["ticket_ref"] is None
    assert cleared.get_json()["state_version"] == 3

    for payload, field in (({}, "_schema"), ({"title": ""}, "title"), ({"id": "x"}, "id")):
        bad = pilot_client.patch(url, json=payload, headers=engineer.headers)
        assert bad.status_code == 422, payload
        assert field in bad.get_json()["errors"]["json"]

    theirs = pilot_client.patch(url, json={"title": "hijack"}, headers=outsider.headers)
    assert theirs.status_code == 404
    assert helpers.session_version(sid) == 3
    got = pilot_client.get(url, headers=engineer.headers).get_json()
    assert got["title"] == "New title"


def test_resolve_then_read_only_then_reopen(
    pilot_client: Any, engineer: Any, helpers: SimpleNamespace
) -> None:
    sid = helpers.create_session(pilot_client, engineer, ticket_ref="INC-1")["id"]
    fact = helpers.add_fact(pilot_client, engineer, sid, "VPN drops every 10 minutes")
    base = f"{helpers.base}/{sid}"

    response = pilot_client.post(
        f"{base}/resolve", json={"ticket_ref": "INC-7", "force": True}, headers=engineer.headers
    )
    assert response.status_code == 202
    assert response.get_json() == {
        "id": sid,
        "status": "resolved",
        "state_version": 3,
        "resolved_version": 3,
        "ticket_ref": "INC-7",
    }
    session = pilot_client.get(base, headers=engineer.headers).get_json()
    assert session["status"] == "resolved"
    assert session["resolved_by"] == str(engineer.id)
    assert session["resolved_at"] is not None and session["resolved_version"] == 3

    again = pilot_client.post(f"{base}/resolve", json={"force": True}, headers=engineer.headers)
    assert again.status_code == 409
    assert again.get_json()["code"] == 409

    blocked = [
        pilot_client.patch(base, json={"title": "x"}, headers=engineer.headers),
        pilot_client.post(f"{base}/facts", json={"text": "more"}, headers=engineer.headers),
        pilot_client.patch(
            f"{base}/facts/{fact['id']}", json={"text": "y"}, headers=engineer.headers
        ),
        pilot_client.delete(f"{base}/facts/{fact['id']}", headers=engineer.headers),
        pilot_client.post(f"{base}/messages", json={"content": "hi"}, headers=engineer.headers),
    ]
    assert [r.status_code for r in blocked] == [409] * len(blocked)
    assert helpers.session_version(sid) == 3
    facts = pilot_client.get(f"{base}/facts", headers=engineer.headers).get_json()
    assert [f["text"] for f in facts] == ["VPN drops every 10 minutes"]
    messages = pilot_client.get(f"{base}/messages", headers=engineer.headers).get_json()
    assert messages == []

    reopened = pilot_client.post(f"{base}/reopen", headers=engineer.headers)
    assert reopened.status_code == 200
    body = reopened.get_json()
    assert body["status"] == "active" and body["state_version"] == 4
    assert body["resolved_at"] is None and body["resolved_version"] is None

    twice = pilot_client.post(f"{base}/reopen", headers=engineer.headers)
    assert twice.status_code == 409
    assert helpers.session_version(sid) == 4
    assert (
        pilot_client.patch(base, json={"title": "x"}, headers=engineer.headers).status_code == 200
    )


def test_resolve_without_ticket_ref_keeps_the_existing_one(
    pilot_client: Any, engineer: Any, helpers: SimpleNamespace
) -> None:
    sid = helpers.create_session(pilot_client, engineer, ticket_ref="INC-9")["id"]
    body = pilot_client.post(
        f"{helpers.base}/{sid}/resolve", json={"force": True}, headers=engineer.headers
    )
    assert body.status_code == 202
    assert body.get_json()["ticket_ref"] == "INC-9"
    bad = pilot_client.post(
        f"{helpers.base}/{uuid.uuid4()}/resolve", json={"ticket_ref": 3}, headers=engineer.headers
    )
    assert bad.status_code == 422
    assert "ticket_ref" in bad.get_json()["errors"]["json"]


def test_another_accounts_session_is_404_on_every_route(
    pilot_client: Any, engineer: Any, outsider: Any, helpers: SimpleNamespace
) -> None:
    sid = helpers.create_session(pilot_client, engineer)["id"]
    fact = helpers.add_fact(pilot_client, engineer, sid, "Only on Wi-Fi")
    base = f"{helpers.base}/{sid}"
    fix_id = uuid.uuid4()
    calls = [
        ("get", base, None),
        ("patch", base, {"title": "x"}),
        ("get", f"{base}/facts", None),
        ("post", f"{base}/facts", {"text": "x"}),
        ("patch", f"{base}/facts/{fact['id']}", {"text": "x"}),
        ("delete", f"{base}/facts/{fact['id']}", None),
        ("get", f"{base}/messages", None),
        ("post", f"{base}/messages", {"content": "x"}),
        ("get", f"{base}/suggested-fixes", None),
        ("get", f"{base}/suggested-fixes/active", None),
        ("post", f"{base}/suggested-fixes/{fix_id}/decision", {"decision": "one_off"}),
        ("post", f"{base}/resolve", {}),
        ("post", f"{base}/reopen", None),
    ]
    for method, url, payload in calls:
        response = getattr(pilot_client, method)(url, json=payload, headers=outsider.headers)
        assert response.status_code == 404, (method, url, response.get_json())
    assert helpers.session_version(sid) == 2


def test_openapi_documents_every_route(pilot_client: Any) -> None:
    response = pilot_client.get("/api/v1/openapi/pilot.json")
    assert response.status_code == 200
    spec = response.get_json()
    paths = spec["paths"]
    expected = {
        "/api/v1/ai-sessions": {"get", "post"},
        "/api/v1/ai-sessions/{session_id}": {"get", "patch"},
        "/api/v1/ai-sessions/{session_id}/facts": {"get", "post"},
        "/api/v1/ai-sessions/{session_id}/facts/{fact_id}": {"patch", "delete"},
        "/api/v1/ai-sessions/{session_id}/messages": {"get", "post"},
        "/api/v1/ai-sessions/{session_id}/suggested-fixes": {"get"},
        "/api/v1/ai-sessions/{session_id}/suggested-fixes/active": {"get"},
        "/api/v1/ai-sessions/{session_id}/suggested-fixes/{fix_id}/decision": {"post"},
        "/api/v1/ai-sessions/{session_id}/resolve": {"post"},
        "/api/v1/ai-sessions/{session_id}/reopen": {"post"},
    }
    for path, methods in expected.items():
        assert path in paths, path
        documented = {m for m in paths[path] if m != "parameters"}
        assert documented == methods, path
        for method in methods:
            operation = paths[path][method]
            assert operation.get("summary"), (path, method)
            assert operation.get("security") == [{"bearerAuth": []}]
    chat = paths["/api/v1/ai-sessions/{session_id}/messages"]["post"]["responses"]
    assert {"201", "503", "200"} <= set(chat)
    assert "text/event-stream" in chat["200"]["content"]
    assert "202" in paths["/api/v1/ai-sessions/{session_id}/resolve"]["post"]["responses"]
    schemas = spec["components"]["schemas"]
    assert {"ChatTurnResponse", "SuggestedFix", "FactCreate", "DecisionRequest"} <= set(schemas)


def test_list_searches_title_ticket_ref_and_problem_and_refuses_unknown_params(
    pilot_client: Any, engineer: Any, outsider: Any, helpers: SimpleNamespace
) -> None:
    def make(**body: Any) -> str:
        return str(helpers.create_session(pilot_client, engineer, **body)["id"])

    printer = make(title="Printer offline", ticket_ref="INC-100", problem="Spooler stuck")
    vpn = make(title="VPN drops", ticket_ref="inc-200", problem="Tunnel resets every 5 min")
    literal = make(title="50% packet loss_on wifi", ticket_ref="INC-300")
    helpers.create_session(pilot_client, outsider, title="Printer in their account")

    def ids(query: str) -> list[str]:
        response = pilot_client.get(f"{helpers.base}?{query}", headers=engineer.headers)
        assert response.status_code == 200, response.get_json()
        assert response.headers["X-Total-Count"] == str(len(response.get_json()))
        return [s["id"] for s in response.get_json()]

    assert ids("search=printer") == [printer]  # title, case-insensitive, own account only
    assert ids("search=TUNNEL") == [vpn]  # problem
    assert ids("search=inc-") == [literal, vpn, printer]  # ticket ref
    assert ids("search=50%25") == [literal]  # % is literal text, not a wildcard
    assert ids("search=s_on") == [literal]  # so is _
    assert ids("search=%25") == [literal]
    assert ids("ticket_ref=INC-200") == [vpn]  # whole reference, case-insensitive
    assert ids("ticket_ref=INC-2") == []
    resolved = pilot_client.post(
        f"{helpers.base}/{vpn}/resolve", json={"force": True}, headers=engineer.headers
    )
    assert resolved.status_code == 202, resolved.get_json()
    assert ids("search=inc&status=active") == [literal, printer]
    assert ids("search=inc&status=resolved&ticket_ref=inc-200") == [vpn]

    for query, field in (("stauts=active", "stauts"), ("q=printer", "q"), ("title=x", "title")):
        bad = pilot_client.get(f"{helpers.base}?{query}", headers=engineer.headers)
        assert bad.status_code == 422, query
        body = bad.get_json()
        assert field in body["errors"]["query"] and f"query.{field}" in body["message"]
    long = pilot_client.get(f"{helpers.base}?search={'x' * 201}", headers=engineer.headers)
    assert long.status_code == 422 and "search" in long.get_json()["errors"]["query"]


def test_patch_edits_the_problem(
    pilot_client: Any, engineer: Any, helpers: SimpleNamespace
) -> None:
    sid = helpers.create_session(pilot_client, engineer, problem="old")["id"]
    url = f"{helpers.base}/{sid}"
    response = pilot_client.patch(
        url, json={"problem": "  new problem  "}, headers=engineer.headers
    )
    assert response.status_code == 200
    assert response.get_json()["problem"] == "new problem"
    assert response.get_json()["state_version"] == 2
    too_long = pilot_client.patch(url, json={"problem": "x" * 20001}, headers=engineer.headers)
    assert too_long.status_code == 422 and "problem" in too_long.get_json()["errors"]["json"]


def test_one_404_wording_per_kind_of_object(
    pilot_client: Any, engineer: Any, make_user: Any
) -> None:
    from services.notes import create_app as notes_app
    from services.scripts import create_app as scripts_app
    from shared import runtime

    missing = uuid.uuid4()
    answers = [
        pilot_client.get(f"{BASE}/{missing}", headers=engineer.headers),
        pilot_client.post(f"{BASE}/{missing}/facts", json={"text": "x"}, headers=engineer.headers),
        pilot_client.patch(f"{BASE}/{missing}", json={"title": "x"}, headers=engineer.headers),
    ]
    settings = runtime.require_settings()
    notes = notes_app(settings).test_client()
    answers.append(
        notes.get(f"{BASE}/{missing}/resolution-note/preview?wait=0", headers=engineer.headers)
    )
    answers.append(notes.get(f"{BASE}/{missing}/resolution-note", headers=engineer.headers))
    scripts = scripts_app(settings).test_client()
    template = scripts.get("/api/v1/scripts/templates", headers=engineer.headers).get_json()
    if template:
        answers.append(
            scripts.post(
                "/api/v1/scripts/generate",
                json={"template_id": template[0]["id"], "ai_session_id": str(missing)},
                headers=engineer.headers,
            )
        )
    messages = {(a.status_code, a.get_json()["message"]) for a in answers}
    assert messages == {(404, "AI session not found")}, messages
