"""Resolution notes materialised on Resolve, their webhook deliveries, and each account's
ticketing endpoint."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from shared.models.base import NOTES, Base, Timestamps, UUIDPrimaryKey
from shared.secrets_at_rest import EncryptedText

DELIVERY_STATUSES = (
    "pending",
    "delivering",
    "retrying",
    "delivered",
    "failed",
    "not_configured",
    "disabled",
)


class TicketingIntegration(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "ticketing_integrations"
    __table_args__ = {"schema": NOTES}

    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("core.accounts.id", ondelete="CASCADE"), unique=True
    )
    # Both encrypted at rest (`shared.secrets_at_rest`): a URL can carry a token of its own.
    url: Mapped[str] = mapped_column(EncryptedText())
    # The Standard Webhooks signing secret ("whsec_..."): we must keep it to sign; it is never
    # returned after the response that created it.
    secret: Mapped[str] = mapped_column(EncryptedText())
    status: Mapped[str] = mapped_column(String(20), default="active", server_default="active")
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    # Which adapter delivers (services.notes.adapters); the webhook keeps url + secret above.
    kind: Mapped[str] = mapped_column(String(40), default="webhook", server_default="webhook")
    # The kind's credential fields as JSON, encrypted at rest like the secret.
    credentials: Mapped[str | None] = mapped_column(EncryptedText())
    options: Mapped[dict[str, Any]] = mapped_column(
        JSONB, default=dict, server_default=text("'{}'::jsonb")
    )


class ResolutionNote(UUIDPrimaryKey, Timestamps, Base):
    """A note is a durable job in two steps: materialise (markdown NULL until generated), then
    deliver. Each step is claimed with a lease whose owner names the worker process
    (services.notes.leases); a process that stops beating has its leases handed on within
    seconds, and the sweeper re-enqueues expired leases as the backstop."""

    __tablename__ = "resolution_notes"
    __table_args__ = (
        UniqueConstraint("session_id", "kind", "state_version", name="uq_resolution_notes_version"),
        CheckConstraint(
            "delivery_status IN ('pending', 'delivering', 'retrying', 'delivered', 'failed', "
            "'not_configured', 'disabled')",
            name="delivery_status_valid",
        ),
        Index(
            "ix_resolution_notes_due",
            "next_attempt_at",
            postgresql_where=text("delivery_status IN ('pending', 'delivering', 'retrying')"),
        ),
        # The leases held now: what the liveness reclaim looks through (a few rows).
        Index(
            "ix_resolution_notes_leased",
            "lease_owner",
            postgresql_where=text("lease_owner IS NOT NULL"),
        ),
        {"schema": NOTES},
    )

    session_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("pilot.ai_sessions.id", ondelete="CASCADE"), index=True
    )
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("core.accounts.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(40), default="resolution_note")
    state_version: Mapped[int] = mapped_column(Integer)
    ticket_ref: Mapped[str | None] = mapped_column(String(200))
    markdown: Mapped[str | None] = mapped_column(Text)
    generator: Mapped[str | None] = mapped_column(String(40))
    model: Mapped[str | None] = mapped_column(String(100))
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    # Which facts each sentence or bullet of the note rests on (see services.notes.generator).
    citations: Mapped[list[Any] | None] = mapped_column(JSONB)
    # What the note is made from, captured in the Resolve transaction: the final note is
    # generated from exactly the resolved version's data, whatever happens to the session later.
    bundle: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    generated_at: Mapped[datetime | None] = mapped_column()
    delivery_status: Mapped[str] = mapped_column(
        String(20), default="pending", server_default="pending"
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # A short reason the product writes itself (never the target's words), owners only.
    last_error: Mapped[str | None] = mapped_column(Text)
    # A bounded, sanitised excerpt of the target's answer (owners only).
    last_error_detail: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None] = mapped_column()
    # Where the note landed: the adapter's kind, the ticket, the target's id of the note and a
    # link a person can open (when the target gives one).
    delivery_kind: Mapped[str | None] = mapped_column(String(40))
    delivered_ticket: Mapped[str | None] = mapped_column(String(200))
    delivered_ref: Mapped[str | None] = mapped_column(String(200))
    delivered_link: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None] = mapped_column()
    lease_expires_at: Mapped[datetime | None] = mapped_column()
    lease_owner: Mapped[str | None] = mapped_column(String(200))


class WebhookAttempt(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "webhook_attempts"
    __table_args__ = (
        UniqueConstraint("note_id", "attempt_number", name="uq_webhook_attempts_number"),
        {"schema": NOTES},
    )

    note_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("notes.resolution_notes.id", ondelete="CASCADE")
    )
    attempt_number: Mapped[int] = mapped_column(Integer)
    # The target's origin (scheme://host[:port]) only: the path and query may carry a token.
    url: Mapped[str] = mapped_column(String(2000))
    outcome: Mapped[str] = mapped_column(String(20))
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[str | None] = mapped_column(Text)
    kind: Mapped[str | None] = mapped_column(String(40))
    # The target's own id of the request (x-request-id and the like), for its support desk.
    request_id: Mapped[str | None] = mapped_column(String(200))
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)


class WorkerProcess(Base):
    """A notes worker process that says it is alive: `beat_at` is written every WORKER_BEAT_S
    by the process itself (services.notes.liveness). A lease owner names its process, so the
    leases of a process silent for WORKER_DEAD_AFTER_S are handed on (`reclaimed_at` says
    when); a row is deleted an hour after its last beat."""

    __tablename__ = "worker_processes"
    __table_args__ = {"schema": NOTES}

    id: Mapped[str] = mapped_column(String(120), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(server_default=func.now())
    beat_at: Mapped[datetime] = mapped_column(server_default=func.now())
    reclaimed_at: Mapped[datetime | None] = mapped_column()
