"""FlowPilot sessions and what hangs off them: facts, conversation, suggested fixes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Computed,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column

from shared.models.base import PILOT, Base, Timestamps, UUIDPrimaryKey

SESSION_STATUSES = ("active", "resolved")
FIX_DECISIONS = ("one_off", "draft_template", "build_template", "dismissed")

# The stored search document of a resolved session (services.pilot.similar writes
# search_document and search_statement on resolve); the configuration is named, so the
# generated column is immutable.
SESSION_SEARCH_VECTOR = "to_tsvector('english'::regconfig, coalesce(search_document, ''))"


class AISession(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "ai_sessions"
    __table_args__ = (
        CheckConstraint("status IN ('active', 'resolved')", name="status_valid"),
        CheckConstraint("state_version >= 0", name="state_version_not_negative"),
        Index("ix_ai_sessions_account_created", "account_id", "created_at"),
        Index("ix_ai_sessions_search_vector", "search_vector", postgresql_using="gin"),
        Index(
            "ix_ai_sessions_search_statement_trgm",
            "search_statement",
            postgresql_using="gin",
            postgresql_ops={"search_statement": "gin_trgm_ops"},
        ),
        {"schema": PILOT},
    )

    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("core.accounts.id", ondelete="CASCADE")
    )
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("core.users.id", ondelete="SET NULL")
    )
    title: Mapped[str] = mapped_column(String(300))
    ticket_ref: Mapped[str | None] = mapped_column(String(200))
    problem: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default="active", server_default="active")
    # Bumped by exactly one, with one atomic UPDATE ... RETURNING, in the transaction of every
    # write to the session (see shared.events.bump).
    state_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    resolved_at: Mapped[datetime | None] = mapped_column()
    resolved_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("core.users.id", ondelete="SET NULL")
    )
    resolved_version: Mapped[int | None] = mapped_column(Integer)
    # What similar-session search compares, stored on resolve (lower-cased): title, problem
    # and the facts that describe the problem; and title and problem alone, for trigrams.
    search_document: Mapped[str | None] = mapped_column(Text, deferred=True)
    search_statement: Mapped[str | None] = mapped_column(Text, deferred=True)
    search_vector: Mapped[Any] = mapped_column(
        TSVECTOR, Computed(SESSION_SEARCH_VECTOR, persisted=True), deferred=True
    )


class SessionFact(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "session_facts"
    __table_args__ = (
        CheckConstraint(
            "kind IN ('symptom', 'observation', 'confirmed', 'ruled_out', 'environment', "
            "'root_cause', 'resolution')",
            name="kind_valid",
        ),
        Index("ix_session_facts_session_created", "session_id", "created_at"),
        {"schema": PILOT},
    )

    session_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("pilot.ai_sessions.id", ondelete="CASCADE")
    )
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("core.accounts.id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(String(20), default="observation")
    text: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(20), default="engineer", server_default="engineer")
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("core.users.id", ondelete="SET NULL")
    )


class ChatMessage(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "chat_messages"
    __table_args__ = (
        CheckConstraint("role IN ('user', 'assistant')", name="role_valid"),
        Index("ix_chat_messages_session_created", "session_id", "created_at"),
        {"schema": PILOT},
    )

    session_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("pilot.ai_sessions.id", ondelete="CASCADE")
    )
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("core.accounts.id", ondelete="CASCADE")
    )
    role: Mapped[str] = mapped_column(String(20))
    content: Mapped[str] = mapped_column(Text)
    generator: Mapped[str | None] = mapped_column(String(40))
    model: Mapped[str | None] = mapped_column(String(100))
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("core.users.id", ondelete="SET NULL")
    )


class SuggestedFix(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "suggested_fixes"
    __table_args__ = (
        CheckConstraint(
            "decision IS NULL OR decision IN "
            "('one_off', 'draft_template', 'build_template', 'dismissed')",
            name="decision_valid",
        ),
        CheckConstraint(
            "confidence IS NULL OR (confidence >= 0 AND confidence <= 100)",
            name="confidence_range",
        ),
        # At most one active fix per session, held by the database itself.
        Index(
            "uq_suggested_fixes_one_active",
            "session_id",
            unique=True,
            postgresql_where=text("superseded_at IS NULL"),
        ),
        Index("ix_suggested_fixes_session_created", "session_id", "created_at"),
        {"schema": PILOT},
    )

    session_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("pilot.ai_sessions.id", ondelete="CASCADE")
    )
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("core.accounts.id", ondelete="CASCADE")
    )
    source_message_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("pilot.chat_messages.id", ondelete="SET NULL")
    )
    title: Mapped[str] = mapped_column(String(200))
    summary: Mapped[str | None] = mapped_column(Text)
    steps: Mapped[list[Any]] = mapped_column(JSONB, default=list, server_default=text("'[]'"))
    script: Mapped[str | None] = mapped_column(Text)
    template_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("scripts.script_templates.id", ondelete="SET NULL")
    )
    confidence: Mapped[int | None] = mapped_column(Integer)
    superseded_at: Mapped[datetime | None] = mapped_column()
    decision: Mapped[str | None] = mapped_column(String(20))
    decided_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("core.users.id", ondelete="SET NULL")
    )
    decided_at: Mapped[datetime | None] = mapped_column()
    # Every decision recorded on the fix, oldest first ({decision, decided_by, decided_at}):
    # a later `dismissed` (tried, did not work) supersedes the fix without erasing what was
    # decided before it.
    decision_history: Mapped[list[Any]] = mapped_column(
        JSONB, default=list, server_default=text("'[]'")
    )
