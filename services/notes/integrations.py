"""Each account's ticketing webhook endpoint (used by the API and `shared.cli set-ticketing`)."""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from services.notes import delivery
from shared import outbound
from shared.errors import InvalidInput, NotFound
from shared.models import TicketingIntegration

SECRET_PREFIX = "whsec_"


class IntegrationError(InvalidInput):
    """The endpoint or secret cannot be used; `errors` names the field (422)."""


@dataclass(frozen=True)
class TicketingResult:
    """What a configuration returns: the secret is here once, never again."""

    account_id: uuid.UUID
    url: str
    secret: str
    secret_generated: bool
    status: str


@dataclass(frozen=True)
class TicketingView:
    account_id: uuid.UUID
    url: str
    status: str
    disabled_reason: str | None
    updated_at: datetime

    def redacted(self) -> TicketingView:
        """What members other than owners see: the URL's origin, no path or query."""
        return replace(self, url=outbound.origin(self.url) + "/…")


# Standard Webhooks secrets carry 24 to 64 random bytes.
_SECRET_BYTES = (24, 64)


def _check_secret(secret: str) -> str:
    secret = secret.strip()
    body = secret.removeprefix(SECRET_PREFIX)
    try:
        raw = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if not secret.startswith(SECRET_PREFIX) or not (
        _SECRET_BYTES[0] <= len(raw) <= _SECRET_BYTES[1]
    ):
        raise IntegrationError(
            "invalid secret",
            errors={
                "secret": [
                    "must be a Standard Webhooks secret: whsec_ followed by the base64 of "
                    "24 to 64 random bytes (leave it out to have one generated)"
                ]
            },
        )
    return secret


def configure_ticketing(
    session: Session,
    *,
    account_id: uuid.UUID,
    url: str,
    secret: str | None,
    allow_private: bool,
) -> TicketingResult:
    """Store the account's webhook endpoint (replacing any previous one, re-enabling it).

    The URL must be http(s) and, unless `allow_private`, resolve only to public addresses. A
    secret is generated when none is given.
    """
    try:
        checked_url = delivery.validate_webhook_url(url, allow_private=allow_private)
    except delivery.WebhookURLError as exc:
        raise IntegrationError(f"invalid url: {exc}", errors={"url": [str(exc)]}) from exc
    generated = not secret
    final_secret = delivery.generate_secret() if not secret else _check_secret(secret)
    session.execute(
        pg_insert(TicketingIntegration)
        .values(
            id=uuid.uuid4(),
            account_id=account_id,
            url=checked_url,
            secret=final_secret,
            status="active",
            disabled_reason=None,
        )
        .on_conflict_do_update(
            index_elements=[TicketingIntegration.account_id],
            set_={
                "url": checked_url,
                "secret": final_secret,
                "status": "active",
                "disabled_reason": None,
                "updated_at": datetime.now().astimezone(),
            },
        )
    )
    return TicketingResult(
        account_id=account_id,
        url=checked_url,
        secret=final_secret,
        secret_generated=generated,
        status="active",
    )


def get_ticketing(session: Session, *, account_id: uuid.UUID) -> TicketingView:
    row = session.scalars(
        select(TicketingIntegration).where(TicketingIntegration.account_id == account_id)
    ).one_or_none()
    if row is None:
        raise NotFound("no ticketing integration is configured for this account")
    return TicketingView(
        account_id=row.account_id,
        url=row.url,
        status=row.status,
        disabled_reason=row.disabled_reason,
        updated_at=row.updated_at,
    )
