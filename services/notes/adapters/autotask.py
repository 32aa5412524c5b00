"""Autotask PSA: the zone lookup (``GET …/atservicesrest/V1.0/zoneInformation?user=``) names
the API host of the account's zone; the note is then an internal ticket note,
``POST {zone}/V1.0/Tickets/{id}/Notes``, with the ``ApiIntegrationCode``, ``UserName`` and
``Secret`` headers. Found again in ``GET {zone}/V1.0/Tickets/{id}/Notes``."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote

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

DEFAULT_ZONE_LOOKUP = "https://webservices.autotask.net/atservicesrest"
# TicketNote picklist values (noteType, publish) are per instance; these defaults are options an
# owner can change after reading GET /V1.0/TicketNotes/entityInformation/fields.
DEFAULT_NOTE_TYPE = 1
INTERNAL_PUBLISH = 2


class AutotaskAdapter(Adapter):
    kind = "autotask"
    label = "Autotask"
    dialect = "plain"
    needs_base_url = False
    base_url_help = (
        "Leave empty to look the zone up at webservices.autotask.net; or the zone lookup root"
    )
    fields = (
        Field("username", "API user name"),
        Field("secret", "Secret", secret=True),
        Field("integration_code", "API tracking identifier", secret=True),
    )
    options = (
        Field("note_type", "Note type (picklist value)", required=False, default=DEFAULT_NOTE_TYPE),
        Field(
            "publish",
            "Publish (picklist value; 2 = internal only)",
            required=False,
            default=INTERNAL_PUBLISH,
        ),
    )

    def _lookup_root(self, target: Target) -> str:
        return (target.base_url or DEFAULT_ZONE_LOOKUP).rstrip("/")

    def extra_urls(self, target: Target) -> Sequence[str]:
        return [self._lookup_root(target) + "/V1.0/zoneInformation"]

    def _headers(self, target: Target) -> dict[str, str]:
        c = target.credentials
        return {
            "apiintegrationcode": str(c["integration_code"]),
            "username": str(c["username"]),
            "secret": str(c["secret"]),
        }

    def _zone(self, target: Target) -> str:
        user = str(target.credentials["username"])
        response = self.call(
            target,
            "GET",
            self._lookup_root(target) + f"/V1.0/zoneInformation?user={quote(user)}",
            headers={},
            ok=(200,),
        )
        url = str((response.json() or {}).get("url") or "")
        if not url.startswith("https://") and not url.startswith("http://"):
            raise TargetError(f"Autotask's zone lookup gave no API URL for {user}")
        return url.rstrip("/")

    def post(self, target: Target, ticket_ref: str, rendered: Rendered) -> Posted:
        ticket = numeric_ref(ticket_ref, self.label)
        zone = self._zone(target)
        response = self.call(
            target,
            "POST",
            f"{zone}/V1.0/Tickets/{ticket}/Notes",
            headers=self._headers(target),
            json_body={
                "ticketID": int(ticket),
                "title": "Resolution note",
                "description": rendered.body,
                "noteType": int(target.option("note_type", DEFAULT_NOTE_TYPE)),
                "publish": int(target.option("publish", INTERNAL_PUBLISH)),
            },
            ticket_ref=ticket_ref,
            ok=(200, 201),
        )
        item = (response.json() or {}).get("itemId")
        return Posted(
            ticket=ticket,
            external_id=str(item) if item is not None else None,
            request_id=response.request_id,
            answer=f"HTTP {response.status}: note {item}",
        )

    def find(self, target: Target, ticket_ref: str, note_id: str) -> Posted | None:
        ticket = numeric_ref(ticket_ref, self.label)
        zone = self._zone(target)
        response = self.call(
            target,
            "GET",
            f"{zone}/V1.0/Tickets/{ticket}/Notes",
            headers=self._headers(target),
            ticket_ref=ticket_ref,
            ok=(200,),
        )
        for item in (response.json() or {}).get("items") or []:
            if has_marker(str(item.get("description") or ""), note_id):
                return already_posted(ticket, str(item.get("id")), response=response)
        return None

    def check(self, target: Target, ticket_ref: str | None) -> str:
        zone = self._zone(target)
        if ticket_ref:
            return self.describe_ticket(
                target,
                ticket_ref,
                lambda ticket: f"{zone}/V1.0/Tickets/{ticket}",
                headers=self._headers(target),
                title=lambda data: (data.get("item") or {}).get("title", ""),
            )
        self.call(
            target,
            "GET",
            f"{zone}/V1.0/Tickets/entityInformation",
            headers=self._headers(target),
        )
        return f"authenticated; Autotask API zone {zone}"
