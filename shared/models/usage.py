"""Usage ledger: one row per LLM call, for cost reporting and for proving cache savings."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from shared.models.base import Base, Timestamps, UUIDPrimaryKey


class LLMUsageRecord(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "llm_usage"
    __table_args__ = (
        Index("ix_llm_usage_account_created", "account_id", "created_at"),
        Index("ix_llm_usage_session", "ai_session_id"),
    )

    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    ai_session_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("ai_sessions.id", ondelete="SET NULL")
    )
    purpose: Mapped[str] = mapped_column(String(40))
    generator: Mapped[str] = mapped_column(String(40))
    model: Mapped[str] = mapped_column(String(100))
    state_version: Mapped[int | None] = mapped_column(Integer)
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cache_creation_input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cache_read_input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    latency_ms: Mapped[int] = mapped_column(Integer, default=0)
    llm_calls: Mapped[int] = mapped_column(Integer, default=1)
    # Answers the note validator rejected during this call's generation, one reason each.
    rejections: Mapped[list[Any] | None] = mapped_column(JSONB)
