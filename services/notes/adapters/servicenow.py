"""ServiceNow: the note is a work note on the incident, ``PATCH /api/now/table/incident/
{sys_id}`` (the sys_id looked up from the incident number), and, when the account enables it,
the resolution too (``close_notes`` + ``close_code`` + resolved state). Plain text, with
``[code]`` sequences neutralised because journal fields render ``[code]…[/code]`` as HTML.
Basic auth with an integration user. Found again in ``sys_journal_field``."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from services.notes.adapters.base import (
    Adapter,
    Field,
    HttpResponse,
    Posted,
    Target,
    TargetError,
    already_posted,
    basic_auth,
)
from services.notes.adapters.render import Rendered, has_marker, marker
from services.notes.delivery import sanitise_excerpt

INCIDENT_NUMBER = re.compile(r"^[A-Z]{2,8}[0-9]{4,12}$")
RESOLVED_STATE = "6"


class ServiceNowAdapter(Adapter):
    kind = "servicenow"
    label = "ServiceNow"
    dialect = "servicenow"
    base_url_help = "https://<instance>.service-now.com"
    fields = (
        Field("username", "Integration user"),
        Field("password", "Password", secret=True),
    )
    options = (
        Field(
            "resolve",
            "Resolve the incident",
            type="boolean",
            required=False,
            default=False,
            help="Also set close_notes, close_code and the Resolved state",
        ),
        Field(
            "close_code",
            "Resolution code",
            required=False,
            default="Solved (Permanently)",
        ),
    )

    def _headers(self, target: Target) -> dict[str, str]:
        c = target.credentials
        return {"authorization": basic_auth(str(c["username"]), str(c["password"]))}

    def error_detail(self, response: HttpResponse) -> str | None:
        data = response.json()
        if isinstance(data, dict) and isinstance(data.get("error"), dict):
            err = data["error"]
            text = f"{err.get('message') or ''}: {err.get('detail') or ''}".strip(": ")
            return sanitise_excerpt(text.encode("utf-8"))
        return super().error_detail(response)

    def _incident(self, target: Target, ticket_ref: str) -> dict[str, Any]:
        number = ticket_ref.strip().upper()
        if not INCIDENT_NUMBER.match(number):
            raise TargetError(
                f"ticket ref {ticket_ref!r} is not a ServiceNow incident number (like INC0010001)",
                retryable=False,
            )
        response = self.call(
            target,
            "GET",
            target.url(
                "/api/now/table/incident?sysparm_query="
                + quote(f"number={number}")
                + "&sysparm_fields=sys_id,number,short_description&sysparm_limit=1"
            ),
            headers=self._headers(target),
            ok=(200,),
        )
        rows = (response.json() or {}).get("result") or []
        if not rows:
            raise self.not_found(number)
        return dict(rows[0])

    def _link(self, target: Target, sys_id: str) -> str:
        return target.url(f"/nav_to.do?uri=incident.do%3Fsys_id%3D{sys_id}")

    def post(self, target: Target, ticket_ref: str, rendered: Rendered) -> Posted:
        incident = self._incident(target, ticket_ref)
        sys_id = str(incident["sys_id"])
        body: dict[str, Any] = {"work_notes": rendered.body}
        if target.option("resolve", False):
            body.update(
                close_notes=rendered.body,
                close_code=str(target.option("close_code", "Solved (Permanently)")),
                state=RESOLVED_STATE,
            )
        response = self.call(
            target,
            "PATCH",
            target.url(f"/api/now/table/incident/{sys_id}"),
            headers=self._headers(target),
            json_body=body,
            ticket_ref=ticket_ref,
            ok=(200,),
        )
        return Posted(
            ticket=str(incident.get("number")),
            external_id=sys_id,
            link=self._link(target, sys_id),
            request_id=response.request_id,
            answer=f"HTTP {response.status}",
        )

    def find(self, target: Target, ticket_ref: str, note_id: str) -> Posted | None:
        incident = self._incident(target, ticket_ref)
        sys_id = str(incident["sys_id"])
        query = f"element_id={sys_id}^element=work_notes^valueLIKE{marker(note_id)}"
        response = self.call(
            target,
            "GET",
            target.url(
                "/api/now/table/sys_journal_field?sysparm_query="
                + quote(query)
                + "&sysparm_fields=sys_id,value&sysparm_limit=10"
            ),
            headers=self._headers(target),
            ok=(200,),
        )
        for row in (response.json() or {}).get("result") or []:
            if has_marker(str(row.get("value") or ""), note_id):
                return already_posted(
                    str(incident.get("number")),
                    sys_id,
                    link=self._link(target, sys_id),
                    response=response,
                )
        return None

    def check(self, target: Target, ticket_ref: str | None) -> str:
        if ticket_ref:
            incident = self._incident(target, ticket_ref)
            return (
                f"incident {incident.get('number')} found: {incident.get('short_description', '')}"
            )[:300]
        response = self.call(
            target,
            "GET",
            target.url("/api/now/table/sys_user?sysparm_limit=1&sysparm_fields=user_name"),
            headers=self._headers(target),
        )
        return f"authenticated; {len((response.json() or {}).get('result') or [])} user row read"
