"""HaloPSA: an OAuth2 client-credentials token from the authorisation server, then a private
action on the ticket, ``POST /api/Actions`` ``[{ticket_id, note_html, hiddenfromuser: true}]``.
Found again in ``GET /api/Actions?ticket_id=…``."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlencode

from services.notes.adapters.base import (
    Adapter,
    Field,
    Posted,
    Target,
    TargetError,
    already_posted,
    numeric_ref,
)
from services.notes.adapters.render import Rendered, has_marker


class HaloPSAAdapter(Adapter):
    kind = "halopsa"
    label = "HaloPSA"
    dialect = "html"
    base_url_help = "The resource server, e.g. https://<tenant>.halopsa.com"
    fields = (
        Field("client_id", "Client ID"),
        Field("client_secret", "Client secret", secret=True),
        Field(
            "auth_url",
            "Authorisation server",
            type="url",
            required=False,
            help="Defaults to <base URL>/auth",
        ),
        Field("tenant", "Tenant", required=False, help="Hosted instances only"),
    )

    def _auth_url(self, target: Target) -> str:
        auth = str(target.credentials.get("auth_url") or "").rstrip("/")
        return (auth or target.url("/auth")) + "/token"

    def extra_urls(self, target: Target) -> Sequence[str]:
        return [self._auth_url(target)]

    def _token(self, target: Target) -> str:
        c = target.credentials
        form = {
            "grant_type": "client_credentials",
            "client_id": str(c["client_id"]),
            "client_secret": str(c["client_secret"]),
            "scope": "all",
        }
        url = self._auth_url(target)
        if c.get("tenant"):
            url += "?" + urlencode({"tenant": str(c["tenant"])})
        response = self.call(
            target,
            "POST",
            url,
            headers={"content-type": "application/x-www-form-urlencoded"},
            form=urlencode(form).encode("ascii"),
            ok=(200,),
        )
        token = (response.json() or {}).get("access_token")
        if not token:
            raise TargetError("HaloPSA issued no access token", retryable=False)
        return str(token)

    def _headers(self, token: str) -> dict[str, str]:
        return {"authorization": f"Bearer {token}"}

    def _link(self, target: Target, ticket: str) -> str:
        return target.url(f"/ticket?id={ticket}")

    def post(self, target: Target, ticket_ref: str, rendered: Rendered) -> Posted:
        ticket = numeric_ref(ticket_ref, self.label)
        token = self._token(target)
        response = self.call(
            target,
            "POST",
            target.url("/api/Actions"),
            headers=self._headers(token),
            json_body=[
                {
                    "ticket_id": int(ticket),
                    "outcome": "Private Note",
                    "note_html": rendered.body,
                    "hiddenfromuser": True,
                }
            ],
            ticket_ref=ticket_ref,
            ok=(200, 201),
        )
        data = response.json()
        action = data[0] if isinstance(data, list) and data else data or {}
        return Posted(
            ticket=ticket,
            external_id=str(action.get("id")) if action.get("id") is not None else None,
            link=self._link(target, ticket),
            request_id=response.request_id,
            answer=f"HTTP {response.status}: action {action.get('id', '?')}",
        )

    def find(self, target: Target, ticket_ref: str, note_id: str) -> Posted | None:
        ticket = numeric_ref(ticket_ref, self.label)
        token = self._token(target)
        response = self.call(
            target,
            "GET",
            target.url(f"/api/Actions?ticket_id={ticket}&excludesys=true&count=500"),
            headers=self._headers(token),
            ticket_ref=ticket_ref,
            ok=(200,),
        )
        for action in (response.json() or {}).get("actions") or []:
            text = f"{action.get('note') or ''} {action.get('note_html') or ''}"
            if has_marker(text, note_id):
                return already_posted(
                    ticket,
                    str(action.get("id")),
                    link=self._link(target, ticket),
                    response=response,
                )
        return None

    def check(self, target: Target, ticket_ref: str | None) -> str:
        token = self._token(target)
        if ticket_ref:
            return self.describe_ticket(
                target,
                ticket_ref,
                lambda ticket: target.url(f"/api/Tickets/{ticket}"),
                headers=self._headers(token),
                title=lambda data: data.get("summary", ""),
            )
        response = self.call(
            target, "GET", target.url("/api/Agent/me"), headers=self._headers(token)
        )
        return f"authenticated as {(response.json() or {}).get('name', '?')}"
