from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

SIMPLE_BODY = "Write-Output {{target}}\nRestart-Service -Name {{service}}\n"
SIMPLE_SCHEMA: dict[str, Any] = {
    "parameters": [
        {"key": "target", "label": "Target", "type": "hostname", "required": True},
        {"key": "service", "label": "Service", "type": "string", "required": True},
    ]
}
SECRET_BODY = (
    "$secure = ConvertTo-SecureString {{new_password}} -AsPlainText -Force\n"
    "Set-ADAccountPassword -Identity {{user}} -NewPassword $secure -Reset\n"
)
SECRET_SCHEMA: dict[str, Any] = {
    "parameters": [
        {"key": "user", "label": "User", "type": "string", "required": True},
        {"key": "new_password", "label": "New password", "type": "password", "required": True},
    ]
}


@pytest.fixture
def create_template(client: Any, category_id: uuid.UUID) -> Callable[..., dict[str, Any]]:
    def factory(actor: Any, **overrides: Any) -> dict[str, Any]:
        body = {
            "category_id": str(category_id),
            "name": f"Template {uuid.uuid4().hex[:6]}",
            "script_body": SIMPLE_BODY,
            "parameters_schema": SIMPLE_SCHEMA,
            "tags": ["test"],
        }
        body.update(overrides)
        response = client.post("/api/v1/scripts/templates", json=body, headers=actor.headers)
        assert response.status_code == 201, response.json
        return response.json  # type: ignore[no-any-return]

    return factory
