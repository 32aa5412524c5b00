"""Zendesk Support: the note is a private comment (``public: false`` always sent, because
Zendesk makes comments public by default) added with ``PUT /api/v2/tickets/{id}.json``,
authenticated with an agent's e-mail and API token (``{email}/token:{token}``, Basic).

Found again in ``GET /api/v2/tickets/{id}/comments.json`` (cursor pages).
"""

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


class ZendeskAdapter(Adapter):
    kind = "zendesk"
    label = "Zendesk"
    dialect = "html"
    base_url_help = "https://<subdomain>.zendesk.com"
    fields = (
        Field("email", "Agent e-mail"),
        Field("api_token", "API token", secret=True),
    )

    def _headers(self, target: Target) -> dict[str, str]:
        creds = target.credentials
        return {"authorization": basic_auth(f"{creds['email']}/token", str(creds["api_token"]))}

    def _link(self, target: Target, ticket: str) -> str:
        return target.url(f"/agent/tickets/{ticket}")

    def post(self, target: Target, ticket_ref: str, rendered: Rendered) -> Posted:
        ticket = numeric_ref(ticket_ref, self.label)
        response = self.call(
            target,
            "PUT",
            target.url(f"/api/v2/tickets/{ticket}.json"),
            headers=self._headers(target),
            json_body={"ticket": {"comment": {"html_body": rendered.body, "public": False}}},
            ticket_ref=ticket_ref,
            ok=(200,),
        )
        audit = (response.json() or {}).get("audit") or {}
        comment_id = next(
            (
                str(event.get("id"))
                for event in audit.get("events") or []
                if event.get("type") == "Comment"
            ),
            None,
        )
        return Posted(
            ticket=ticket,
            external_id=comment_id,
            link=self._link(target, ticket),
            request_id=response.request_id,
            answer=f"HTTP {response.status}: audit {audit.get('id', '?')}",
        )

    def find(self, target: Target, ticket_ref: str, note_id: str) -> Posted | None:
        ticket = numeric_ref(ticket_ref, self.label)
        url: str | None = target.url(f"/api/v2/tickets/{ticket}/comments.json?page[size]=100")
        for _ in range(MAX_PAGES):
            if url is None:
                break
            response = self.call(
                target, "GET", url, headers=self._headers(target), ticket_ref=ticket_ref, ok=(200,)
            )
            data = response.json() or {}
            for comment in data.get("comments") or []:
                text = f"{comment.get('body') or ''} {comment.get('html_body') or ''}"
                if has_marker(text, note_id):
                    return already_posted(
                        ticket,
                        str(comment.get("id")),
                        link=self._link(target, ticket),
                        response=response,
                    )
            meta = data.get("meta") or {}
            next_url = (data.get("links") or {}).get("next") if meta.get("has_more") else None
            # Follow only the target's own pages: a next link elsewhere is not ours to call.
            url = next_url if next_url and next_url.startswith(target.base_url) else None
        return None

    def check(self, target: Target, ticket_ref: str | None) -> str:
        if ticket_ref:
            return self.describe_ticket(
                target,
                ticket_ref,
                lambda ticket: target.url(f"/api/v2/tickets/{ticket}.json"),
                headers=self._headers(target),
                title=lambda data: (data.get("ticket") or {}).get("subject", ""),
            )
        response = self.call(
            target, "GET", target.url("/api/v2/users/me.json"), headers=self._headers(target)
        )
        user = (response.json() or {}).get("user") or {}
        return f"authenticated as {user.get('email', '?')} ({user.get('role', '?')})"
