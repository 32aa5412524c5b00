"""The generic signed Standard Webhooks delivery, unchanged (`services.notes.delivery`): the
JSON payload of ``resolution_note.created`` signed with the account's secret. Receivers
deduplicate on the ``webhook-id`` (the note id), so there is nothing to find before a retry."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from services.notes import delivery
from services.notes.adapters.base import Adapter, Field, Posted, Target, TargetError
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

    def __init__(self, http: Any, *, allow_private: bool = False) -> None:
        super().__init__(http)
        self.allow_private = allow_private

    def deliver(
        self, target: Target, payload: dict[str, Any], *, msg_id: str
    ) -> delivery.AttemptResult:
        return delivery.deliver(
            target.base_url,
            str(target.credentials.get("secret") or ""),
            payload,
            msg_id=msg_id,
            timeout_s=target.timeout_s,
            allow_private=self.allow_private,
        )

    def post(self, target: Target, ticket_ref: str, rendered: Rendered) -> Posted:
        raise NotImplementedError("the webhook posts its own payload: see deliver()")

    def find(self, target: Target, ticket_ref: str, note_id: str) -> Posted | None:
        return None

    def check(self, target: Target, ticket_ref: str | None) -> str:
        payload: dict[str, Any] = {
            "type": "resolution_flow.test",
            "ticket_ref": ticket_ref,
            "sent_at": datetime.now(UTC).isoformat(),
        }
        result = self.deliver(target, payload, msg_id=f"test_{datetime.now(UTC):%Y%m%d%H%M%S%f}")
        if result.outcome is not delivery.Outcome.DELIVERED:
            raise TargetError(
                result.error or "the endpoint refused the test event",
                status=result.status_code,
                detail=result.detail,
                retryable=False,
            )
        return f"the endpoint accepted a signed test event (HTTP {result.status_code})"
