"""Bad input is a 4xx JSON body naming the field, and writes nothing."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select

from shared.db import db
from shared.models import ScriptGeneration, ScriptTemplate

BASE = "/api/v1/scripts"


def _count(model: Any) -> int:
    with db.session() as session:
        return int(session.execute(select(func.count()).select_from(model)).scalar_one())


def test_create_schema_errors_name_each_field(client: Any, make_user: Any) -> None:
    owner = make_user("owner")
    response = client.post(
        f"{BASE}/templates",
        json={"name": "", "complexity": "extreme", "tags": "not-a-list", "surprise": 1},
        headers=owner.headers,
    )
    assert response.status_code == 422
    errors = response.json["errors"]["json"]
    assert {"category_id", "name", "script_body", "complexity", "tags", "surprise"} <= set(errors)
    assert _count(ScriptTemplate) == 0


def test_template_definition_errors_are_422_naming_the_problem(
    client: Any, make_user: Any, category_id: Any
) -> None:
    before = _count(ScriptTemplate)
    owner = make_user("owner")
    response = client.post(
        f"{BASE}/templates",
        json={
            "category_id": str(category_id),
            "name": "Broken",
            "script_body": "Write-Output {{missing}} {{mode}}",
            "parameters_schema": {
                "parameters": [
                    {
                        "key": "mode",
                        "label": "Mode",
                        "type": "choice",
                        "options": ["a", "b"],
                        "default": "c",
                    },
                    {"key": "mode", "label": "Again", "type": "string"},
                    {"key": "x", "label": "X", "type": "colour"},
                ]
            },
        },
        headers=owner.headers,
    )
    assert response.status_code == 422
    flat = str(response.json["errors"])
    assert "missing" in flat
    assert "duplicate" in flat.lower()
    assert "colour" in flat
    assert "default" in flat.lower()
    assert _count(ScriptTemplate) == before


def test_unknown_category_is_404_naming_it(client: Any, make_user: Any, library: Any) -> None:
    owner = make_user("owner")
    response = client.post(
        f"{BASE}/templates",
        json={"category_id": str(uuid.uuid4()), "name": "x", "script_body": "Get-Date"},
        headers=owner.headers,
    )
    assert response.status_code == 404
    assert "category_id" in response.json["errors"]


def test_render_errors_name_each_parameter_and_write_nothing(
    client: Any, make_user: Any, create_template: Any
) -> None:
    owner = make_user("owner")
    template = create_template(
        owner,
        script_body="Test-Connection {{host}} -Count {{count}}\nWrite-Output {{mode}}",
        parameters_schema={
            "parameters": [
                {"key": "host", "label": "Host", "type": "hostname", "required": True},
                {
                    "key": "count",
                    "label": "Count",
                    "type": "integer",
                    "validation": {"min": 1, "max": 10},
                },
                {"key": "mode", "label": "Mode", "type": "choice", "options": ["fast", "slow"]},
            ]
        },
    )
    response = client.post(
        f"{BASE}/generate",
        json={
            "template_id": template["id"],
            "parameters": {"count": 99, "mode": "warp", "extra": 1},
        },
        headers=owner.headers,
    )
    assert response.status_code == 422
    errors = response.json["errors"]["parameters"]
    assert {"host", "count", "mode"} <= set(errors)
    assert any("extra" in key or "extra" in str(value) for key, value in errors.items())
    assert _count(ScriptGeneration) == 0
    assert (
        client.get(f"{BASE}/templates/{template['id']}", headers=owner.headers).json["usage_count"]
        == 0
    )


def test_generate_body_errors(client: Any, make_user: Any) -> None:
    owner = make_user("owner")
    response = client.post(f"{BASE}/generate", json={"parameters": []}, headers=owner.headers)
    assert response.status_code == 422
    assert {"template_id", "parameters"} <= set(response.json["errors"]["json"])
    malformed = client.post(
        f"{BASE}/generate",
        data="{not json",
        headers={**owner.headers, "Content-Type": "application/json"},
    )
    assert malformed.status_code in (400, 422)
    assert malformed.is_json
