"""A fix becomes a template, through the gateway: `draft_template` on a fix with a script makes
a personal draft with the script's literals lifted into parameters; the draft renders back to
the fix's script, stays out of the library, and publishing puts it in the team's library."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from werkzeug.test import Client

from services.pilot import fixes
from shared.db import db
from shared.powershell_generated import normalised_tree, strip_generated_block

SPOOLER_FIX = (
    "Invoke-Command -ComputerName PRN-SRV01 -ScriptBlock {\n"
    "    Restart-Service -Name Spooler -Force\n"
    "    Get-Service -Name Spooler | Select-Object Status\n"
    "}\n"
)


@pytest.fixture(scope="module")
def gateway(migrated: Any) -> Any:
    from app.gateway import create_app

    return create_app(migrated)


@pytest.fixture
def client(gateway: Any, library: Any) -> Client:
    return Client(gateway)


def _session_with_fix(client: Client, actor: Any, script: str | None = SPOOLER_FIX) -> tuple:
    created = client.post(
        "/api/v1/ai-sessions",
        json={"title": "Print queue stuck on PRN-SRV01", "problem": "Jobs stay queued"},
        headers=actor.headers,
    )
    assert created.status_code == 201, created.json
    sid = created.json["id"]
    with db.transaction() as session:
        fix = fixes.persist_fix(
            session,
            account_id=actor.account_id,
            session_id=uuid.UUID(sid),
            values={
                "title": "Restart the print spooler on the print server",
                "summary": "Restarts the spooler service on the server holding the queue.",
                "steps": ["Restart the spooler", "Check the queue drains"],
                "script": script,
            },
        )
        fix_id = str(fix.id)
    return sid, fix_id


def _decide(client: Client, actor: Any, sid: str, fix_id: str, decision: str) -> Any:
    return client.post(
        f"/api/v1/ai-sessions/{sid}/suggested-fixes/{fix_id}/decision",
        json={"decision": decision},
        headers=actor.headers,
    )


def _library_ids(client: Client, actor: Any, **query: str) -> set[str]:
    listed = client.get("/api/v1/scripts/templates", query_string=query, headers=actor.headers)
    assert listed.status_code == 200
    return {t["id"] for t in listed.json}


def test_a_fix_becomes_a_draft_that_renders_back_and_publishes_to_the_team(
    client: Client, make_user: Any
) -> None:
    engineer = make_user("engineer")
    teammate = make_user("engineer", account_id=engineer.account_id)
    sid, fix_id = _session_with_fix(client, engineer)

    decided = _decide(client, engineer, sid, fix_id, "draft_template")
    assert decided.status_code == 200, decided.json
    assert decided.json["decision"] == "draft_template"
    draft = decided.json["draft_template"]
    assert draft["status"] == "draft"
    computer = next(p for p in draft["parameters"] if p["key"] == "computer")
    assert computer["default"] == "PRN-SRV01" and computer["type"] == "hostname"
    template_id = draft["template_id"]

    opened = client.get(f"/api/v1/scripts/templates/{template_id}", headers=engineer.headers)
    assert opened.status_code == 200
    assert opened.json["status"] == "draft"
    assert opened.json["scope"] == "personal"
    assert opened.json["source_fix_id"] == fix_id
    assert "{{computer}}" in opened.json["script_body"]
    assert "PRN-SRV01" not in opened.json["script_body"]
    assert "findings" in opened.json

    # Hidden from the library (even its creator's), listed among the creator's drafts.
    assert template_id not in _library_ids(client, engineer)
    assert template_id not in _library_ids(client, engineer, search="spooler")
    drafts = client.get("/api/v1/scripts/templates/drafts", headers=engineer.headers)
    assert [d["id"] for d in drafts.json] == [template_id]
    assert client.get("/api/v1/scripts/templates/drafts", headers=teammate.headers).json == []

    rendered = client.post(
        "/api/v1/scripts/generate",
        json={"template_id": template_id, "parameters": {}},
        headers=engineer.headers,
    )
    assert rendered.status_code in (200, 201), rendered.json
    body, assignments = strip_generated_block(rendered.json["script"])
    assert assignments["computer"] == "'PRN-SRV01'"
    assert normalised_tree(body, assignments) == normalised_tree(SPOOLER_FIX)

    # Only its creator (or an owner) publishes it; then the team's library lists it.
    refused = client.post(
        f"/api/v1/scripts/templates/{template_id}/publish", headers=teammate.headers
    )
    assert refused.status_code == 404  # a teammate cannot even see a personal draft
    published = client.post(
        f"/api/v1/scripts/templates/{template_id}/publish", headers=engineer.headers
    )
    assert published.status_code == 200, published.json
    assert published.json["status"] == "published"
    assert published.json["scope"] == "team"
    assert published.json["team_id"] == str(engineer.team_id)
    assert template_id in _library_ids(client, teammate)
    assert template_id in _library_ids(client, teammate, search="spooler print server")
    again = client.post(
        f"/api/v1/scripts/templates/{template_id}/publish", headers=engineer.headers
    )
    assert again.status_code == 409
    assert again.json["errors"] == {"status": ["published"]}


def test_build_template_makes_a_draft_an_owner_can_publish(client: Client, make_user: Any) -> None:
    engineer = make_user("engineer")
    owner = make_user("owner", account_id=engineer.account_id)
    sid, fix_id = _session_with_fix(client, engineer)
    decided = _decide(client, engineer, sid, fix_id, "build_template")
    assert decided.status_code == 200
    template_id = decided.json["draft_template"]["template_id"]
    published = client.post(
        f"/api/v1/scripts/templates/{template_id}/publish", headers=owner.headers
    )
    assert published.status_code == 200, published.json
    assert published.json["status"] == "published"


def test_no_script_no_draft_and_other_accounts_see_nothing(client: Client, make_user: Any) -> None:
    engineer = make_user("engineer")
    outsider = make_user("owner")
    sid, fix_id = _session_with_fix(client, engineer, script=None)
    decided = _decide(client, engineer, sid, fix_id, "draft_template")
    assert decided.status_code == 200
    assert decided.json["draft_template"] is None

    sid, fix_id = _session_with_fix(client, engineer)
    template_id = _decide(client, engineer, sid, fix_id, "draft_template").json["draft_template"][
        "template_id"
    ]
    for path in (f"/api/v1/scripts/templates/{template_id}",):
        assert client.get(path, headers=outsider.headers).status_code == 404
    publish = client.post(
        f"/api/v1/scripts/templates/{template_id}/publish", headers=outsider.headers
    )
    assert publish.status_code == 404
    assert publish.json["code"] == 404
    missing = client.post(
        f"/api/v1/scripts/templates/{uuid.uuid4()}/publish", headers=engineer.headers
    )
    assert missing.status_code == 404
    assert client.post("/api/v1/scripts/templates/not-a-uuid/publish").status_code in (401, 404)
