"""Every permission branch: owner / engineer / viewer / super admin against own, team, other team
and other account templates. Anything invisible is 404 on every path, never 403."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select

from shared.db import db
from shared.models import ScriptTemplate

BASE = "/api/v1/scripts"


@dataclass
class World:
    owner: Any
    engineer: Any
    teammate_viewer: Any
    other_team_engineer: Any
    other_account_owner: Any
    super_admin: Any
    team_template: dict[str, Any]
    personal_template: dict[str, Any]
    builtin_id: str


@pytest.fixture
def world(client: Any, make_user: Any, create_template: Any, library: Any) -> World:
    owner = make_user("owner", team="Tier1")
    account = owner.account_id
    engineer = make_user("engineer", account_id=account, team="Tier1")
    viewer = make_user("viewer", account_id=account, team="Tier1")
    other_team = make_user("engineer", account_id=account, team="Tier2")
    stranger = make_user("owner")
    admin = make_user("engineer", super_admin=True)
    with db.session() as session:
        builtin_id = str(
            session.scalars(
                select(ScriptTemplate.id).where(ScriptTemplate.scope == "builtin")
            ).first()
        )
    return World(
        owner=owner,
        engineer=engineer,
        teammate_viewer=viewer,
        other_team_engineer=other_team,
        other_account_owner=stranger,
        super_admin=admin,
        team_template=create_template(engineer, name="Team one"),
        personal_template=create_template(engineer, name="Mine only", shared=False),
        builtin_id=builtin_id,
    )


VISIBILITY = [
    # (actor, template, visible)
    ("engineer", "team_template", True),
    ("owner", "team_template", True),
    ("teammate_viewer", "team_template", True),
    ("other_team_engineer", "team_template", False),
    ("other_account_owner", "team_template", False),
    ("super_admin", "team_template", True),
    ("engineer", "personal_template", True),
    ("owner", "personal_template", True),
    ("teammate_viewer", "personal_template", False),
    ("other_team_engineer", "personal_template", False),
    ("other_account_owner", "personal_template", False),
    ("super_admin", "personal_template", True),
]


@pytest.mark.parametrize(("actor", "template", "visible"), VISIBILITY)
def test_visibility_is_the_same_on_every_path(
    client: Any, world: World, actor: str, template: str, visible: bool
) -> None:
    user = getattr(world, actor)
    template_id = getattr(world, template)["id"]
    listed = {
        t["id"] for t in client.get(f"{BASE}/templates?limit=1000", headers=user.headers).json
    }
    assert (template_id in listed) is visible
    detail = client.get(f"{BASE}/templates/{template_id}", headers=user.headers)
    assert detail.status_code == (200 if visible else 404)
    generate = client.post(
        f"{BASE}/generate",
        json={"template_id": template_id, "parameters": {"target": "pc1", "service": "Spooler"}},
        headers=user.headers,
    )
    assert generate.status_code == (200 if visible else 404)
    if not visible:
        for response in (
            client.put(f"{BASE}/templates/{template_id}", json={"name": "x"}, headers=user.headers),
            client.delete(f"{BASE}/templates/{template_id}", headers=user.headers),
            client.patch(f"{BASE}/templates/{template_id}/share?shared=true", headers=user.headers),
            client.get(f"{BASE}/templates/{template_id}/versions", headers=user.headers),
        ):
            assert response.status_code == 404


EDIT = [
    ("engineer", "team_template", 200),
    ("owner", "team_template", 200),
    ("teammate_viewer", "team_template", 403),
    ("super_admin", "team_template", 200),
    ("owner", "personal_template", 200),
    ("engineer", "builtin", 403),
    ("owner", "builtin", 403),
    ("super_admin", "builtin", 200),
]


@pytest.mark.parametrize(("actor", "template", "status"), EDIT)
def test_edit_and_delete_rights(
    client: Any, world: World, actor: str, template: str, status: int
) -> None:
    user = getattr(world, actor)
    template_id = world.builtin_id if template == "builtin" else getattr(world, template)["id"]
    response = client.put(
        f"{BASE}/templates/{template_id}", json={"description": "edited"}, headers=user.headers
    )
    assert response.status_code == status, response.json
    delete = client.delete(f"{BASE}/templates/{template_id}", headers=user.headers)
    assert delete.status_code == (204 if status == 200 else 403)


def test_teammate_engineer_cannot_edit_a_colleagues_team_template(
    client: Any, world: World, make_user: Any
) -> None:
    colleague = make_user("engineer", account_id=world.owner.account_id, team="Tier1")
    template_id = world.team_template["id"]
    assert (
        client.get(f"{BASE}/templates/{template_id}", headers=colleague.headers).status_code == 200
    )
    response = client.put(
        f"{BASE}/templates/{template_id}", json={"name": "x"}, headers=colleague.headers
    )
    assert response.status_code == 403


def test_viewers_cannot_create(client: Any, world: World, category_id: Any) -> None:
    response = client.post(
        f"{BASE}/templates",
        json={"category_id": str(category_id), "name": "v", "script_body": "Get-Date"},
        headers=world.teammate_viewer.headers,
    )
    assert response.status_code == 403


def test_only_super_admins_create_builtins(client: Any, world: World, category_id: Any) -> None:
    body = {
        "category_id": str(category_id),
        "name": "Global",
        "script_body": "Get-Date",
        "builtin": True,
    }
    assert (
        client.post(f"{BASE}/templates", json=body, headers=world.owner.headers).status_code == 403
    )
    created = client.post(f"{BASE}/templates", json=body, headers=world.super_admin.headers)
    assert created.status_code == 201
    assert created.json["scope"] == "builtin" and created.json["account_id"] is None
    seen = client.get(
        f"{BASE}/templates/{created.json['id']}", headers=world.other_account_owner.headers
    )
    assert seen.status_code == 200


SHARE = [
    ("owner", 200),
    ("super_admin", 200),
    ("engineer", 403),
    ("teammate_viewer", 403),
]


@pytest.mark.parametrize(("actor", "status"), SHARE)
def test_share_rights(client: Any, world: World, actor: str, status: int) -> None:
    user = getattr(world, actor)
    response = client.patch(
        f"{BASE}/templates/{world.team_template['id']}/share?shared=false", headers=user.headers
    )
    assert response.status_code == status


def test_sharing_moves_a_template_between_personal_and_its_creators_team(
    client: Any, world: World
) -> None:
    template_id = world.personal_template["id"]
    viewer = world.teammate_viewer
    assert client.get(f"{BASE}/templates/{template_id}", headers=viewer.headers).status_code == 404
    shared = client.patch(
        f"{BASE}/templates/{template_id}/share?shared=true", headers=world.owner.headers
    )
    assert shared.status_code == 200
    assert shared.json["scope"] == "team" and shared.json["team_id"] == str(world.engineer.team_id)
    assert client.get(f"{BASE}/templates/{template_id}", headers=viewer.headers).status_code == 200
    other_team = world.other_team_engineer
    assert (
        client.get(f"{BASE}/templates/{template_id}", headers=other_team.headers).status_code == 404
    )


def test_share_requires_the_query_flag(client: Any, world: World) -> None:
    response = client.patch(
        f"{BASE}/templates/{world.team_template['id']}/share", headers=world.owner.headers
    )
    assert response.status_code == 422
    assert "shared" in response.json["errors"]["query"]


def test_builtins_cannot_be_rescoped(client: Any, world: World) -> None:
    response = client.patch(
        f"{BASE}/templates/{world.builtin_id}/share?shared=false", headers=world.super_admin.headers
    )
    assert response.status_code == 409
