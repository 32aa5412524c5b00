"""Redmine REST: the note is a private journal note on the issue, in CommonMark.

API: ``PUT /issues/{id}.json`` ``{issue: {notes, private_notes: true}}`` with the
``X-Redmine-API-Key`` header (204 No Content); found again in ``GET /issues/{id}.json?include=
journals``. Redmine answers a PUT with no body, so the journal id comes from reading it back.
"""

from __future__ import annotations

from typing import Any

from services.notes.adapters.base import Adapter, Field, Posted, Target, already_posted, numeric_ref
from services.notes.adapters.render import Rendered, has_marker


class RedmineAdapter(Adapter):
    kind = "redmine"
    label = "Redmine"
    dialect = "commonmark"
    base_url_help = "Redmine's root URL, e.g. https://redmine.example.com (REST API enabled)"
    fields = (Field("api_key", "API key", secret=True, help="My account → API access key"),)
    options = (
        Field(
            "private_notes",
            "Private note",
            type="boolean",
            required=False,
            default=True,
            help="Post the note as a private note (visible to staff with the permission only)",
        ),
    )

    def _headers(self, target: Target) -> dict[str, str]:
        return {"x-redmine-api-key": str(target.credentials["api_key"])}

    def post(self, target: Target, ticket_ref: str, rendered: Rendered) -> Posted:
        issue = numeric_ref(ticket_ref, self.label)
        response = self.call(
            target,
            "PUT",
            target.url(f"/issues/{issue}.json"),
            headers=self._headers(target),
            json_body={
                "issue": {
                    "notes": rendered.body,
                    "private_notes": bool(target.option("private_notes", True)),
                }
            },
            ticket_ref=ticket_ref,
            ok=(200, 204),
        )
        return Posted(
            ticket=issue,
            link=target.url(f"/issues/{issue}"),
            request_id=response.request_id,
            answer=f"HTTP {response.status}",
        )

    def _issue(self, target: Target, ticket_ref: str, *, journals: bool) -> dict[str, Any]:
        issue = numeric_ref(ticket_ref, self.label)
        query = "?include=journals" if journals else ""
        response = self.call(
            target,
            "GET",
            target.url(f"/issues/{issue}.json{query}"),
            headers=self._headers(target),
            ticket_ref=ticket_ref,
            ok=(200,),
        )
        data = response.json() or {}
        return data.get("issue") or {}

    def find(self, target: Target, ticket_ref: str, note_id: str) -> Posted | None:
        issue = self._issue(target, ticket_ref, journals=True)
        for journal in issue.get("journals") or []:
            if has_marker(str(journal.get("notes") or ""), note_id):
                number = str(issue.get("id"))
                return already_posted(
                    number,
                    str(journal.get("id")),
                    link=target.url(f"/issues/{number}#change-{journal.get('id')}"),
                )
        return None

    def check(self, target: Target, ticket_ref: str | None) -> str:
        if ticket_ref:
            issue = self._issue(target, ticket_ref, journals=False)
            return f"issue {issue.get('id')} found: {issue.get('subject', '')!s}"[:300]
        response = self.call(
            target, "GET", target.url("/users/current.json"), headers=self._headers(target)
        )
        user = (response.json() or {}).get("user") or {}
        return f"authenticated as {user.get('login', '?')}"
