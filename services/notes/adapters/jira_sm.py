"""Jira Service Management: the note is an internal comment (``sd.public.comment`` property
``{internal: true}``, which Jira reports back as ``jsdPublic: false``) in Atlassian Document
Format, ``POST /rest/api/3/issue/{key}/comment``, authenticated with e-mail + API token
(Basic). Found again in ``GET /rest/api/3/issue/{key}/comment``."""

from __future__ import annotations

import re

from services.notes.adapters.adf import adf_text
from services.notes.adapters.base import (
    Adapter,
    Field,
    Posted,
    Target,
    TargetError,
    already_posted,
    basic_auth,
    path_part,
)
from services.notes.adapters.render import Rendered, has_marker

ISSUE_KEY = re.compile(r"^[A-Z][A-Z0-9_]*-[1-9][0-9]*$|^[1-9][0-9]*$")
PAGE = 100
MAX_PAGES = 20


def issue_key(ticket_ref: str) -> str:
    key = ticket_ref.strip().upper()
    if not ISSUE_KEY.match(key):
        raise TargetError(
            f"ticket ref {ticket_ref!r} is not a Jira issue key (like HELP-42)", retryable=False
        )
    return key


class JiraServiceManagementAdapter(Adapter):
    kind = "jira_sm"
    label = "Jira Service Management"
    dialect = "adf"
    base_url_help = "https://<site>.atlassian.net"
    fields = (
        Field("email", "Account e-mail"),
        Field("api_token", "API token", secret=True),
    )

    def _headers(self, target: Target) -> dict[str, str]:
        creds = target.credentials
        return {"authorization": basic_auth(str(creds["email"]), str(creds["api_token"]))}

    def _link(self, target: Target, key: str, comment_id: str | None) -> str:
        url = target.url(f"/browse/{path_part(key)}")
        return f"{url}?focusedCommentId={comment_id}" if comment_id else url

    def post(self, target: Target, ticket_ref: str, rendered: Rendered) -> Posted:
        key = issue_key(ticket_ref)
        response = self.call(
            target,
            "POST",
            target.url(f"/rest/api/3/issue/{path_part(key)}/comment"),
            headers=self._headers(target),
            json_body={
                "body": rendered.body,
                "properties": [{"key": "sd.public.comment", "value": {"internal": True}}],
            },
            ticket_ref=ticket_ref,
            ok=(201,),
        )
        comment = response.json() or {}
        comment_id = str(comment["id"]) if comment.get("id") is not None else None
        return Posted(
            ticket=key,
            external_id=comment_id,
            link=self._link(target, key, comment_id),
            request_id=response.request_id,
            answer=f"HTTP {response.status}: comment {comment_id}, "
            f"jsdPublic={comment.get('jsdPublic')}",
        )

    def find(self, target: Target, ticket_ref: str, note_id: str) -> Posted | None:
        key = issue_key(ticket_ref)
        for page in range(MAX_PAGES):
            response = self.call(
                target,
                "GET",
                target.url(
                    f"/rest/api/3/issue/{path_part(key)}/comment"
                    f"?startAt={page * PAGE}&maxResults={PAGE}"
                ),
                headers=self._headers(target),
                ticket_ref=ticket_ref,
                ok=(200,),
            )
            data = response.json() or {}
            comments = data.get("comments") or []
            for comment in comments:
                body = comment.get("body")
                text = adf_text(body) if isinstance(body, dict) else str(body or "")
                if has_marker(text, note_id):
                    comment_id = str(comment.get("id"))
                    return already_posted(
                        key, comment_id, link=self._link(target, key, comment_id), response=response
                    )
            if (page + 1) * PAGE >= int(data.get("total") or 0) or not comments:
                break
        return None

    def check(self, target: Target, ticket_ref: str | None) -> str:
        if ticket_ref:
            key = issue_key(ticket_ref)
            response = self.call(
                target,
                "GET",
                target.url(f"/rest/api/3/issue/{path_part(key)}?fields=summary"),
                headers=self._headers(target),
                ticket_ref=ticket_ref,
                ok=(200,),
            )
            summary = ((response.json() or {}).get("fields") or {}).get("summary", "")
            return f"issue {key} found: {summary}"[:300]
        response = self.call(
            target, "GET", target.url("/rest/api/3/myself"), headers=self._headers(target)
        )
        me = response.json() or {}
        return f"authenticated as {me.get('emailAddress') or me.get('displayName') or '?'}"
