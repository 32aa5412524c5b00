"""The generic signed Standard Webhooks delivery, unchanged: the JSON payload of
``resolution_note.created`` signed with the account's secret. Receivers deduplicate on the
``webhook-id`` (the note id), so there is nothing to find before a retry."""

from __future__ import annotations

from datetime import UTC, datetime

from services.notes import delivery
from services.notes.adapters.base import (
    Adapter,
    Field,
    HttpResponse,
    Posted,
    Target,
    TargetError,
    short,
)
from services.notes.adapters.render import Rendered


class WebhookAdapter(Adapter):
    kind = "webhook"
    label = "Webhook"
    dialect = "markdown"
    can_find = False
    base_url_help = "The HTTPS endpoint that receives resolution_note.created events"
    fields = (
        Field(
            "secret",
            "Signing secret",
            required=False,
            secret=True,
            help="whsec_<base64>; generated when left empty, kept when the URL changes",
        ),
    )

    def post_payload(self, target: Target, payload: dict[str, object], *, msg_id: str) -> Posted:
        body = delivery.encode_body(payload)
        try:
            headers = delivery.sign_headers(
                str(target.credentials.get("secret") or ""), msg_id, body, datetime.now(UTC)
            )
        except ValueError as exc:
            raise TargetError(str(exc), retryable=False) from exc
        headers["user-agent"] = delivery.USER_AGENT
        response = self.call(target, "POST", target.base_url, headers=headers, form=body, ok=())
        status = response.status
        if 200 <= status < 300:
            return Posted(
                ticket=str(payload.get("ticket_ref") or ""),
                request_id=response.request_id,
                answer=f"HTTP {status}",
            )
        raise self.error_for(response, None)

    def error_for(self, response: HttpResponse, ticket_ref: str | None) -> TargetError:
        status = response.status
        text = short(response.body.decode("utf-8", errors="replace"))
        if 300 <= status < 400:
            error = (
                f"HTTP {status}: redirect to {response.headers.get('location', '')!r} not followed"
            )
        else:
            error = f"HTTP {status}" + (f": {text}" if text else "")
        outcome = delivery.classify(status, None)
        return TargetError(
            error,
            status=status,
            retry_after=response.headers.get("retry-after"),
            request_id=response.request_id,
            retryable=outcome is delivery.Outcome.RETRY,
            disable=outcome is delivery.Outcome.DISABLED,
        )

    def post(self, target: Target, ticket_ref: str, rendered: Rendered) -> Posted:
        raise NotImplementedError("the webhook posts its payload: use post_payload")

    def find(self, target: Target, ticket_ref: str, note_id: str) -> Posted | None:
        return None

    def check(self, target: Target, ticket_ref: str | None) -> str:
        payload: dict[str, object] = {
            "type": "resolution_flow.test",
            "note_id": "test",
            "ticket_ref": ticket_ref,
            "markdown": "Test delivery from ResolutionFlow.",
        }
        posted = self.post_payload(target, payload, msg_id=f"test-{datetime.now(UTC):%s}")
        return f"the endpoint accepted a signed test event ({posted.answer})"
