"""Zammad: the note is an internal article of type ``note`` in HTML,
``POST /api/v1/ticket_articles``, authenticated with an access token
(``Authorization: Token token=…``). The ticket ref is the ticket *number* people see; its id
comes from ``GET /api/v1/tickets/search``. Found again in
``GET /api/v1/ticket_articles/by_ticket/{id}``."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from services.notes.adapters.base import (
    Adapter,
    Field,
    Posted,
    Target,
    already_posted,
    numeric_ref,
)
from services.notes.adapters.render import Rendered, has_marker


class ZammadAdapter(Adapter):
    kind = "zammad"
    label = "Zammad"
    dialect = "html"
    base_url_help = "https://zammad.example.com"
    fields = (Field("token", "Access token", secret=True, help="Profile → Token Access"),)

    def _headers(self, target: Target) -> dict[str, str]:
        return {"authorization": f"Token token={target.credentials['token']}"}

    def _ticket(self, target: Target, ticket_ref: str) -> dict[str, Any]:
        number = numeric_ref(ticket_ref, self.label)
        response = self.call(
            target,
            "GET",
            target.url(
                f"/api/v1/tickets/search?query={quote('number:' + number)}&limit=1&expand=true"
            ),
            headers=self._headers(target),
            ticket_ref=ticket_ref,
            ok=(200,),
        )
        found = response.json()
        tickets = found if isinstance(found, list) else []
        match: dict[str, Any] | None = next(
            (t for t in tickets if str(t.get("number")) == number), None
        )
        if match is None:
            raise self.not_found(ticket_ref)
        return match

    def _link(self, target: Target, ticket_id: Any) -> str:
        return target.url(f"/#ticket/zoom/{ticket_id}")

    def post(self, target: Target, ticket_ref: str, rendered: Rendered) -> Posted:
        ticket = self._ticket(target, ticket_ref)
        response = self.call(
            target,
            "POST",
            target.url("/api/v1/ticket_articles"),
            headers=self._headers(target),
            json_body={
                "ticket_id": ticket["id"],
                "subject": "Resolution note",
                "body": rendered.body,
                "content_type": "text/html",
                "type": "note",
                "internal": True,
            },
            ticket_ref=ticket_ref,
            ok=(200, 201),
        )
        article = response.json() or {}
        return Posted(
            ticket=str(ticket.get("number")),
            external_id=str(article.get("id")) if article.get("id") is not None else None,
            link=self._link(target, ticket["id"]),
            request_id=response.request_id,
            answer=f"HTTP {response.status}: article {article.get('id', '?')}",
        )

    def find(self, target: Target, ticket_ref: str, note_id: str) -> Posted | None:
        ticket = self._ticket(target, ticket_ref)
        response = self.call(
            target,
            "GET",
            target.url(f"/api/v1/ticket_articles/by_ticket/{ticket['id']}"),
            headers=self._headers(target),
            ticket_ref=ticket_ref,
            ok=(200,),
        )
        articles = response.json()
        for article in articles if isinstance(articles, list) else []:
            if has_marker(str(article.get("body") or ""), note_id):
                return already_posted(
                    str(ticket.get("number")),
                    str(article.get("id")),
                    link=self._link(target, ticket["id"]),
                    response=response,
                )
        return None

    def check(self, target: Target, ticket_ref: str | None) -> str:
        if ticket_ref:
            ticket = self._ticket(target, ticket_ref)
            return f"ticket {ticket.get('number')} found: {ticket.get('title', '')}"[:300]
        response = self.call(
            target, "GET", target.url("/api/v1/users/me"), headers=self._headers(target)
        )
        return f"authenticated as {(response.json() or {}).get('login', '?')}"
