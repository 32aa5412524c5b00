"""Small helpers the pilot tests call through a service app's test client."""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy import select

BASE = "/api/v1/ai-sessions"


def create_session(client: Any, actor: Any, **body: Any) -> dict[str, Any]:
    payload = {"title": "Outlook keeps asking for a password", **body}
    response = client.post(BASE, json=payload, headers=actor.headers)
    assert response.status_code == 201, response.get_json()
    data: dict[str, Any] = response.get_json()
    return data


def add_fact(
    client: Any, actor: Any, session_id: str, text: str, kind: str = "observation"
) -> dict[str, Any]:
    response = client.post(
        f"{BASE}/{session_id}/facts", json={"text": text, "kind": kind}, headers=actor.headers
    )
    assert response.status_code == 201, response.get_json()
    data: dict[str, Any] = response.get_json()
    return data


def session_version(session_id: str | uuid.UUID) -> int:
    from shared.db import db
    from shared.models import AISession

    with db.session() as session:
        return int(
            session.scalars(
                select(AISession.state_version).where(AISession.id == uuid.UUID(str(session_id)))
            ).one()
        )


def fix_block(title: str, **fields: Any) -> str:
    return f"[SUGGEST_FIX]\n{json.dumps({'title': title, **fields})}\n[/SUGGEST_FIX]"
