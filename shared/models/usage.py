"""Usage ledger: one row per LLM call, for cost reporting and for proving cache savings."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, Integer, Numeric, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from shared.models.base import CORE, NOTES, Base, Timestamps, UUIDPrimaryKey


class LLMUsageRecord(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "llm_usage"
    __table_args__ = (
        Index("ix_llm_usage_account_created", "account_id", "created_at"),
        Index("ix_llm_usage_session", "ai_session_id"),
        {"schema": CORE},
    )

    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("core.accounts.id", ondelete="CASCADE")
    )
    ai_session_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("pilot.ai_sessions.id", ondelete="SET NULL")
    )
    purpose: Mapped[str] = mapped_column(String(40))
    generator: Mapped[str] = mapped_column(String(40))
    model: Mapped[str] = mapped_column(String(100))
    state_version: Mapped[int | None] = mapped_column(Integer)
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cache_creation_input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cache_read_input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cache_creation_1h_input_tokens: Mapped[int] = mapped_column(
        Integer, default=0, server_default="0"
    )
    latency_ms: Mapped[int] = mapped_column(Integer, default=0)
    llm_calls: Mapped[int] = mapped_column(Integer, default=1)
    # Exact USD cost from shared.llm_models' price table (nano-dollar precision; reports round).
    cost_usd: Mapped[Decimal] = mapped_column(
        Numeric(18, 9), default=Decimal(0), server_default="0"
    )
    batch: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    # Why the offline generator answered instead (permanent_error, llm_unavailable,
    # budget_exceeded); None when it did not.
    fallback_reason: Mapped[str | None] = mapped_column(String(40))
    # The API's error (type: message), when a call was refused or failed for good.
    error: Mapped[str | None] = mapped_column(String(300))
    # Answers the note validator rejected during this call's generation: the reasons of each.
    rejections: Mapped[list[Any] | None] = mapped_column(JSONB)


class NoteReuse(UUIDPrimaryKey, Timestamps, Base):
    """A note served by content-addressed reuse (same input bundle): no LLM call was made."""

    __tablename__ = "note_reuses"
    __table_args__ = (
        Index("ix_note_reuses_account_created", "account_id", "created_at"),
        Index("ix_note_reuses_session", "ai_session_id"),
        {"schema": CORE},
    )

    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("core.accounts.id", ondelete="CASCADE")
    )
    ai_session_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("pilot.ai_sessions.id", ondelete="SET NULL")
    )
    purpose: Mapped[str] = mapped_column(String(40))
    state_version: Mapped[int | None] = mapped_column(Integer)


BATCH_ITEM_STATUSES = ("queued", "submitted", "succeeded", "errored")


class LLMBatchItem(UUIDPrimaryKey, Timestamps, Base):
    """One generation waiting for, inside, or back from a Message Batches request."""

    __tablename__ = "llm_batch_items"
    __table_args__ = (
        CheckConstraint(
            "status IN ('queued', 'submitted', 'succeeded', 'errored')", name="status_valid"
        ),
        Index("ix_llm_batch_items_status", "status"),
        Index("ix_llm_batch_items_provider_batch", "provider_batch_id"),
        {"schema": NOTES},
    )

    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("core.accounts.id", ondelete="CASCADE")
    )
    ai_session_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("pilot.ai_sessions.id", ondelete="CASCADE")
    )
    purpose: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(40))
    state_version: Mapped[int] = mapped_column(Integer)
    model: Mapped[str] = mapped_column(String(100))
    fingerprint: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(20), default="queued", server_default="queued")
    provider_batch_id: Mapped[str | None] = mapped_column(String(100))
    error: Mapped[str | None] = mapped_column(String(300))
    submitted_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
