"""A viewer reads sessions but never writes them, not even through `POST /scripts/generate`.

The attack: a viewer generated a script with `ai_session_id`, which bumped the session's
state_version, published a state change and added the run to the session's note."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select

from shared.db import db
from shared.events import write_transaction
from shared.models import AISession, OutboxEvent, ScriptGeneration

BASE = "/api/v1/scripts"
PARAMS = {"target": "srv01", "service": "Spooler"}


def _ai_session(account_id: uuid.UUID) -> uuid.UUID:
    with write_transaction() as session:
        row = AISession(account_id=account_id, title="Printer offline")
        session.add(row)
        session.flush()
        return row.id


def test_viewer_cannot_write_a_session_through_generate(
    client: Any, make_user: Any, create_template: Any
) -> None:
    owner = make_user("owner")
    viewer = make_user("viewer", account_id=owner.account_id)
    template = create_template(owner)
    own = _ai_session(owner.account_id)
    response = client.post(
        f"{BASE}/generate",
        json={"template_id": template["id"], "parameters": PARAMS, "ai_session_id": str(own)},
        headers=viewer.headers,
    )
    assert response.status_code == 403, response.json
    assert "ai_session_id" in response.json["errors"]
    with db.session() as session:
        assert session.get(AISession, own).state_version == 0  # type: ignore[union-attr]
        assert session.scalars(select(OutboxEvent)).all() == []
        assert session.scalars(select(ScriptGeneration)).all() == []

    # Another account's session stays a 404 for a viewer too.
    foreign = _ai_session(make_user("owner").account_id)
    response = client.post(
        f"{BASE}/generate",
        json={"template_id": template["id"], "parameters": PARAMS, "ai_session_id": str(foreign)},
        headers=viewer.headers,
    )
    assert response.status_code == 404 and "ai_session_id" in response.json["errors"]

    # Without a session a viewer still generates (reading is what viewers do).
    plain = client.post(
        f"{BASE}/generate",
        json={"template_id": template["id"], "parameters": PARAMS},
        headers=viewer.headers,
    )
    assert plain.status_code == 200 and plain.json["state_version"] is None


def test_engineer_still_links_a_run_to_a_session(
    client: Any, make_user: Any, create_template: Any
) -> None:
    engineer = make_user("engineer")
    template = create_template(engineer)
    own = _ai_session(engineer.account_id)
    response = client.post(
        f"{BASE}/generate",
        json={"template_id": template["id"], "parameters": PARAMS, "ai_session_id": str(own)},
        headers=engineer.headers,
    )
    assert response.status_code == 200 and response.json["state_version"] == 1
