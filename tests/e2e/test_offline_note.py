"""With no API key, through the gateway as `make run` starts it: a session whose engineer wrote
down the symptom, what was confirmed, the root cause and the fix resolves into a delivered note
that states each of them, and never "Not determined"."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.receiver import WebhookReceiver
from tests.support.workers import wait_until

FACTS = {
    "symptom": "Outlook asks for the password every few minutes",
    "confirmed": "Credential Manager holds a stale MicrosoftOffice16 entry",
    "root_cause": "A credential cached before the password change kept being offered",
    "resolution": "Removed the cached Office credentials and signed in again",
}


@pytest.fixture(scope="module")
def gateway_overrides() -> dict[str, Any]:
    return {"ANTHROPIC_API_KEY": None}


def test_a_session_with_cause_and_fix_resolves_into_a_note_stating_both(
    gateway: Any, make_user: Any
) -> None:
    owner = make_user("owner")

    def call(method: str, path: str, **kwargs: Any) -> Any:
        return gateway.http.request(
            method, gateway.url(path), headers=owner.headers, timeout=60, **kwargs
        )

    with WebhookReceiver() as receiver:
        put = call("PUT", "/api/v1/integrations/ticketing", json={"url": receiver.url})
        assert put.status_code == 200, put.text
        receiver.secret = put.json()["secret"]
        created = call("POST", "/api/v1/ai-sessions", json={"title": "Outlook password prompts"})
        sid = created.json()["id"]
        for kind, text in FACTS.items():
            response = call(
                "POST", f"/api/v1/ai-sessions/{sid}/facts", json={"text": text, "kind": kind}
            )
            assert response.status_code == 201, response.text
        missing = call("POST", f"/api/v1/ai-sessions/{sid}/resolve", json={})
        assert missing.status_code == 422  # the ticketing system could not place the note
        assert "ticket_ref" in missing.json()["errors"]["json"]
        resolved = call("POST", f"/api/v1/ai-sessions/{sid}/resolve", json={"ticket_ref": "T-9"})
        assert resolved.status_code == 202, resolved.text
        [delivery] = receiver.wait_for(1)

    assert delivery.verified
    markdown = delivery.json["markdown"]
    sections = {
        block.split("\n", 1)[0]: block.split("\n", 1)[1] for block in markdown.split("## ")[1:]
    }
    assert FACTS["symptom"] in sections["Problem"]
    assert FACTS["confirmed"] in sections["What we confirmed"]
    assert FACTS["root_cause"] in sections["Root cause"]
    assert FACTS["resolution"] in sections["Resolution"]
    assert "Not determined" not in markdown and "No resolution" not in markdown
    assert "[F" not in markdown

    def final() -> Any:
        response = call("GET", f"/api/v1/ai-sessions/{sid}/resolution-note")
        body = response.json()
        return body.get("delivery_status") == "delivered" and body

    note = wait_until(final, 120, message="the note delivered")
    assert note["generator"] == "offline" and note["markdown"] == markdown
    cited = {c["section"]: c for c in note["citations"] if c["fact_ids"]}
    assert set(cited) == {"Problem", "What we confirmed", "Root cause", "Resolution"}
