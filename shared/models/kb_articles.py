"""Knowledge-base articles engineers chose to keep from resolved sessions (the notes service's
``kb_article`` kind, generalised: no customer-identifying detail)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Computed, ForeignKey, Index, Integer, String, Text
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column

from shared.models.base import NOTES, Base, Timestamps, UUIDPrimaryKey

# The search document, kept by PostgreSQL from the article's own columns (title weighs more).
# The text search configuration is named, never the session default, so it is immutable.
KB_SEARCH_VECTOR = (
    "setweight(to_tsvector('english'::regconfig, coalesce(title, '')), 'A') || "
    "setweight(to_tsvector('english'::regconfig, coalesce(markdown, '')), 'B')"
)


class KbArticle(UUIDPrimaryKey, Timestamps, Base):
    """One kept article per session: keeping it again replaces its text with the current one."""

    __tablename__ = "kb_articles"
    __table_args__ = (
        Index("ix_kb_articles_account_updated", "account_id", "updated_at"),
        Index("ix_kb_articles_search_vector", "search_vector", postgresql_using="gin"),
        {"schema": NOTES},
    )

    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("core.accounts.id", ondelete="CASCADE")
    )
    session_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("pilot.ai_sessions.id", ondelete="CASCADE"), unique=True
    )
    # The session version the kept text was generated from.
    state_version: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(300))
    markdown: Mapped[str] = mapped_column(Text)
    citations: Mapped[list[Any] | None] = mapped_column(JSONB)
    generator: Mapped[str | None] = mapped_column(String(40))
    model: Mapped[str | None] = mapped_column(String(100))
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    kept_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("core.users.id", ondelete="SET NULL")
    )
    search_vector: Mapped[Any] = mapped_column(
        TSVECTOR, Computed(KB_SEARCH_VECTOR, persisted=True), deferred=True
    )
