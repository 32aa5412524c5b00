"""Freshservice: the note is a private note, ``POST /api/v2/tickets/{id}/notes``
``{body (HTML), private: true}``, authenticated with the API key as the Basic user (password
``X``). Found again in ``GET /api/v2/tickets/{id}/conversations``."""

from __future__ import annotations

from services.notes.adapters.base import (
    Adapter,
    Field,
    Posted,
    Target,
    already_posted,
    basic_auth,
    numeric_ref,
)
from services.notes.adapters.render import Rendered, has_marker

MAX_PAGES = 20


class FreshserviceAdapter(Adapter):
    kind = "freshservice"
    label = "Freshservice"
    dialect = "html"
    base_url_help = "https://<domain>.freshservice.com"
    fields = (Field("api_key", "API key", secret=True, help="Profile settings → Your API key"),)

    def _headers(self, target: Target) -> dict[str, str]:
        return {"authorization": basic_auth(str(target.credentials["api_key"]), "X")}

    def _link(self, target: Target, ticket: str) -> str:
        return target.url(f"/a/tickets/{ticket}")

    def post(self, target: Target, ticket_ref: str, rendered: Rendered) -> Posted:
        ticket = numeric_ref(ticket_ref, self.label)
        response = self.call(
            target,
            "POST",
            target.url(f"/api/v2/tickets/{ticket}/notes"),
            headers=self._headers(target),
            json_body={"body": rendered.body, "private": True},
            ticket_ref=ticket_ref,
            ok=(201,),
        )
        note = (response.json() or {}).get("conversation") or {}
        return Posted(
            ticket=ticket,
            external_id=str(note.get("id")) if note.get("id") is not None else None,
            link=self._link(target, ticket),
            request_id=response.request_id,
            answer=f"HTTP {response.status}: conversation {note.get('id', '?')}",
        )

    def find(self, target: Target, ticket_ref: str, note_id: str) -> Posted | None:
        ticket = numeric_ref(ticket_ref, self.label)
        for page in range(1, MAX_PAGES + 1):
            response = self.call(
                target,
                "GET",
                target.url(f"/api/v2/tickets/{ticket}/conversations?per_page=100&page={page}"),
                headers=self._headers(target),
                ticket_ref=ticket_ref,
                ok=(200,),
            )
            items = (response.json() or {}).get("conversations") or []
            for item in items:
                text = f"{item.get('body') or ''} {item.get('body_text') or ''}"
                if has_marker(text, note_id):
                    return already_posted(
                        ticket,
                        str(item.get("id")),
                        link=self._link(target, ticket),
                        response=response,
                    )
            if len(items) < 100:
                break
        return None

    def check(self, target: Target, ticket_ref: str | None) -> str:
        if ticket_ref:
            return self.describe_ticket(
                target,
                ticket_ref,
                lambda ticket: target.url(f"/api/v2/tickets/{ticket}"),
                headers=self._headers(target),
                title=lambda data: (data.get("ticket") or {}).get("subject", ""),
            )
        response = self.call(
            target, "GET", target.url("/api/v2/agents/me"), headers=self._headers(target)
        )
        agent = (response.json() or {}).get("agent") or {}
        return f"authenticated as {agent.get('email', '?')}"
