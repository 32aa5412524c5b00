"""Request Tracker 5, REST2: the note is a *comment* (not a correspondence, so the requestor
gets no mail) on the ticket, authenticated with an RT auth token.

API: ``POST /REST/2.0/ticket/{id}/comment`` (JSON ``{Subject, Content, ContentType}``, 201 with
the transaction in ``Location``); found again through ``GET /ticket/{id}/history`` and each
comment transaction's attachments.
"""

from __future__ import annotations

import base64
import binascii

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

SUBJECT = "Resolution note"
MAX_HISTORY_PAGES = 10


class RequestTrackerAdapter(Adapter):
    kind = "request_tracker"
    label = "Request Tracker"
    dialect = "plain"
    base_url_help = "RT's web root, e.g. https://rt.example.com (REST2 lives at /REST/2.0)"
    fields = (
        Field("token", "Auth token", secret=True, help="An RT auth token (Settings → Auth Tokens)"),
    )

    def _headers(self, target: Target) -> dict[str, str]:
        return {"authorization": f"token {target.credentials['token']}"}

    def _api(self, target: Target, path: str) -> str:
        return target.url("/REST/2.0" + path)

    def post(self, target: Target, ticket_ref: str, rendered: Rendered) -> Posted:
        ticket = numeric_ref(ticket_ref, self.label)
        try:
            response = self.call(
                target,
                "POST",
                self._api(target, f"/ticket/{ticket}/comment"),
                headers=self._headers(target),
                json_body={
                    "Subject": SUBJECT,
                    "Content": rendered.body,
                    "ContentType": "text/plain",
                },
                ticket_ref=ticket_ref,
                ok=(201,),
            )
        except TargetError as exc:
            # RT answers 400 "Message could not be recorded" for a ticket it does not have.
            if exc.status == 400:
                self._ticket(target, ticket_ref, ticket)
            raise
        location = response.headers.get("location", "")
        txn = location.rstrip("/").rsplit("/", 1)[-1] if "/transaction/" in location else None
        return Posted(
            ticket=ticket,
            external_id=txn,
            link=self._link(target, ticket, txn),
            request_id=response.request_id,
            answer=f"HTTP {response.status}: transaction {txn}",
        )

    def _link(self, target: Target, ticket: str, txn: str | None) -> str:
        url = target.url(f"/Ticket/Display.html?id={ticket}")
        return f"{url}#txn-{txn}" if txn else url

    def _ticket(self, target: Target, ticket_ref: str, ticket: str) -> dict[str, object]:
        response = self.call(
            target,
            "GET",
            self._api(target, f"/ticket/{ticket}"),
            headers=self._headers(target),
            ticket_ref=ticket_ref,
            ok=(200,),
        )
        data = response.json()
        return data if isinstance(data, dict) else {}

    def find(self, target: Target, ticket_ref: str, note_id: str) -> Posted | None:
        ticket = numeric_ref(ticket_ref, self.label)
        for page in range(1, MAX_HISTORY_PAGES + 1):
            response = self.call(
                target,
                "GET",
                self._api(target, f"/ticket/{ticket}/history?fields=Type&per_page=100&page={page}"),
                headers=self._headers(target),
                ticket_ref=ticket_ref,
                ok=(200,),
            )
            data = response.json() or {}
            for item in data.get("items") or []:
                if item.get("Type") != "Comment":
                    continue
                txn = str(item.get("id"))
                if self._transaction_has(target, txn, note_id):
                    return already_posted(
                        ticket, txn, link=self._link(target, ticket, txn), response=response
                    )
            if page >= int(data.get("pages") or 1):
                break
        return None

    def _transaction_has(self, target: Target, txn: str, note_id: str) -> bool:
        response = self.call(
            target,
            "GET",
            self._api(target, f"/transaction/{txn}/attachments?fields=Content"),
            headers=self._headers(target),
            ok=(200,),
        )
        for attachment in (response.json() or {}).get("items") or []:
            content = str(attachment.get("Content") or "")
            if has_marker(content, note_id) or has_marker(_maybe_base64(content), note_id):
                return True
        return False

    def check(self, target: Target, ticket_ref: str | None) -> str:
        if ticket_ref:
            ticket = numeric_ref(ticket_ref, self.label)
            data = self._ticket(target, ticket_ref, ticket)
            return f"ticket {ticket} found: {data.get('Subject', '')!s}"[:300]
        response = self.call(
            target,
            "GET",
            self._api(target, "/queues/all"),
            headers=self._headers(target),
            ok=(200,),
        )
        return f"authenticated; {int((response.json() or {}).get('total') or 0)} queue(s) visible"


def _maybe_base64(text: str) -> str:
    try:
        return base64.b64decode(text, validate=True).decode("utf-8", errors="replace")
    except (binascii.Error, ValueError):
        return ""
