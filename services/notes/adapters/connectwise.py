"""ConnectWise Manage (PSA): the note is an internal-analysis, resolution note in plain text,
``POST {site}/apis/3.0/service/tickets/{id}/notes``, authenticated with Basic
``company+publicKey:privateKey`` and the integration's ``clientId`` header. Found again in
``GET …/service/tickets/{id}/notes``."""

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

PAGE = 100
MAX_PAGES = 20


class ConnectWiseAdapter(Adapter):
    kind = "connectwise"
    label = "ConnectWise"
    dialect = "plain"
    base_url_help = (
        "The API site with its codebase, e.g. https://api-na.myconnectwise.net/v4_6_release"
    )
    fields = (
        Field("company_id", "Company ID"),
        Field("public_key", "Public key"),
        Field("private_key", "Private key", secret=True),
        Field("client_id", "Client ID", help="From developer.connectwise.com"),
    )
    options = (
        Field(
            "resolution_flag",
            "Mark as resolution",
            type="boolean",
            required=False,
            default=True,
        ),
    )

    def _headers(self, target: Target) -> dict[str, str]:
        c = target.credentials
        return {
            "authorization": basic_auth(
                f"{c['company_id']}+{c['public_key']}", str(c["private_key"])
            ),
            "clientid": str(c["client_id"]),
        }

    def _api(self, target: Target, path: str) -> str:
        return target.url("/apis/3.0" + path)

    def post(self, target: Target, ticket_ref: str, rendered: Rendered) -> Posted:
        ticket = numeric_ref(ticket_ref, self.label)
        response = self.call(
            target,
            "POST",
            self._api(target, f"/service/tickets/{ticket}/notes"),
            headers=self._headers(target),
            json_body={
                "text": rendered.body,
                "detailDescriptionFlag": False,
                "internalAnalysisFlag": True,
                "resolutionFlag": bool(target.option("resolution_flag", True)),
            },
            ticket_ref=ticket_ref,
            ok=(200, 201),
        )
        note = response.json() or {}
        return Posted(
            ticket=ticket,
            external_id=str(note.get("id")) if note.get("id") is not None else None,
            request_id=response.request_id,
            answer=f"HTTP {response.status}: note {note.get('id', '?')}",
        )

    def find(self, target: Target, ticket_ref: str, note_id: str) -> Posted | None:
        ticket = numeric_ref(ticket_ref, self.label)
        for page in range(1, MAX_PAGES + 1):
            response = self.call(
                target,
                "GET",
                self._api(target, f"/service/tickets/{ticket}/notes?pageSize={PAGE}&page={page}"),
                headers=self._headers(target),
                ticket_ref=ticket_ref,
                ok=(200,),
            )
            notes = response.json() or []
            for note in notes if isinstance(notes, list) else []:
                if has_marker(str(note.get("text") or ""), note_id):
                    return already_posted(ticket, str(note.get("id")), response=response)
            if not isinstance(notes, list) or len(notes) < PAGE:
                break
        return None

    def check(self, target: Target, ticket_ref: str | None) -> str:
        if ticket_ref:
            return self.describe_ticket(
                target,
                ticket_ref,
                lambda ticket: self._api(target, f"/service/tickets/{ticket}"),
                headers=self._headers(target),
                title=lambda data: data.get("summary", ""),
            )
        response = self.call(
            target, "GET", self._api(target, "/system/info"), headers=self._headers(target)
        )
        return f"authenticated; ConnectWise {(response.json() or {}).get('version', '?')}"
