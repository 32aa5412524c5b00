from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.templates import SIMPLE_BODY, SIMPLE_SCHEMA


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
