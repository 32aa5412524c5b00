"""Writing the LLM usage ledger."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.llm import LLMUsage
from shared.models import LLMUsageRecord


def record_usage(
    session: Session,
    *,
    account_id: uuid.UUID,
    ai_session_id: uuid.UUID | None,
    purpose: str,
    generator: str,
    model: str,
    usage: LLMUsage,
    latency_ms: int = 0,
    llm_calls: int = 1,
    state_version: int | None = None,
    rejections: list[list[str]] | None = None,
) -> LLMUsageRecord:
    """One ledger row. ``rejections``: for each answer a validator rejected during this
    generation, the reasons it was rejected for."""
    record = LLMUsageRecord(
        account_id=account_id,
        ai_session_id=ai_session_id,
        purpose=purpose,
        generator=generator,
        model=model,
        state_version=state_version,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_creation_input_tokens=usage.cache_creation_input_tokens,
        cache_read_input_tokens=usage.cache_read_input_tokens,
        latency_ms=latency_ms,
        llm_calls=llm_calls,
        rejections=rejections or None,
    )
    session.add(record)
    return record


def llm_calls_for_session(session: Session, ai_session_id: uuid.UUID, purpose: str) -> int:
    return int(
        session.execute(
            select(func.coalesce(func.sum(LLMUsageRecord.llm_calls), 0)).where(
                LLMUsageRecord.ai_session_id == ai_session_id,
                LLMUsageRecord.purpose == purpose,
            )
        ).scalar_one()
    )
