"""Script library: categories, templates (with their version history) and generations."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Computed,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column

from shared.models.base import SCRIPTS, Base, Timestamps, UUIDPrimaryKey

# builtin: shipped with the product, no account, visible to everyone, managed by super admins.
# team: visible to one team of one account (and that account's owners).
# personal: visible to its creator (and that account's owners, and super admins).
TEMPLATE_SCOPES = ("builtin", "team", "personal")
# draft: made from a fix, seen only by whoever may see its scope, never listed in the library
# until it is published.
TEMPLATE_STATUSES = ("draft", "published")


class ScriptCategory(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "script_categories"
    __table_args__ = {"schema": SCRIPTS}

    slug: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    icon: Mapped[str | None] = mapped_column(String(100))
    sort_order: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, server_default="true")


class ScriptTemplate(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "script_templates"
    __table_args__ = (
        CheckConstraint("scope IN ('builtin', 'team', 'personal')", name="scope_valid"),
        CheckConstraint(
            "(scope = 'builtin') = (account_id IS NULL)", name="builtin_has_no_account"
        ),
        CheckConstraint("scope <> 'team' OR team_id IS NOT NULL", name="team_scope_has_team"),
        CheckConstraint("slug <> ''", name="slug_not_empty"),
        CheckConstraint("status IN ('draft', 'published')", name="status_valid"),
        CheckConstraint("usage_count >= 0", name="usage_count_not_negative"),
        # Slugs are unique among live templates of one scope owner: builtins globally, the rest
        # per account.
        Index(
            "uq_script_templates_builtin_slug",
            "slug",
            unique=True,
            postgresql_where=text("account_id IS NULL AND is_active"),
        ),
        Index(
            "uq_script_templates_account_slug",
            "account_id",
            "slug",
            unique=True,
            postgresql_where=text("account_id IS NOT NULL AND is_active"),
        ),
        Index("ix_script_templates_tags", "tags", postgresql_using="gin"),
        # Trigram indexes serve `search` (ILIKE '%term%') without scanning every template.
        *(
            Index(
                f"ix_script_templates_{column}_trgm",
                column,
                postgresql_using="gin",
                postgresql_ops={column: "gin_trgm_ops"},
            )
            for column in ("name", "description", "slug")
        ),
        Index("ix_script_templates_name", "name"),
        Index("ix_script_templates_search_vector", "search_vector", postgresql_using="gin"),
        Index(
            "ix_script_templates_search_text_trgm",
            "search_text",
            postgresql_using="gin",
            postgresql_ops={"search_text": "gin_trgm_ops"},
        ),
        {"schema": SCRIPTS},
    )

    category_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("scripts.script_categories.id"), index=True
    )
    scope: Mapped[str] = mapped_column(String(20))
    account_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("core.accounts.id", ondelete="CASCADE"), index=True
    )
    team_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("core.teams.id", ondelete="SET NULL"), index=True
    )
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("core.users.id", ondelete="SET NULL"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(220))
    description: Mapped[str | None] = mapped_column(Text)
    use_case: Mapped[str | None] = mapped_column(Text)
    script_body: Mapped[str] = mapped_column(Text)
    parameters_schema: Mapped[dict[str, Any]] = mapped_column(
        JSONB, default=dict, server_default=text("'{}'::jsonb")
    )
    default_values: Mapped[dict[str, Any]] = mapped_column(
        JSONB, default=dict, server_default=text("'{}'::jsonb")
    )
    validation_rules: Mapped[dict[str, Any]] = mapped_column(
        JSONB, default=dict, server_default=text("'{}'::jsonb")
    )
    # Stored lower-cased so the tag filter is an indexed array overlap (`&&`).
    tags: Mapped[list[str]] = mapped_column(
        ARRAY(String(64)), default=list, server_default=text("'{}'")
    )
    complexity: Mapped[str | None] = mapped_column(String(20))
    estimated_runtime: Mapped[str | None] = mapped_column(String(50))
    requires_elevation: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    requires_modules: Mapped[list[str]] = mapped_column(
        ARRAY(String(100)), default=list, server_default=text("'{}'")
    )
    usage_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, server_default="true")
    status: Mapped[str] = mapped_column(String(20), default="published", server_default="published")
    # The suggested fix a draft was lifted from.
    source_fix_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("pilot.suggested_fixes.id", ondelete="SET NULL", use_alter=True), index=True
    )
    # Default delivery of sensitive parameters for this template (inline, env or prompt).
    secret_delivery: Mapped[str | None] = mapped_column(String(10))
    # Static-check findings of error severity the author accepted: [{"rule", "reason"}].
    acknowledged_findings: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, default=list, server_default=text("'[]'::jsonb")
    )
    # Ranked search documents, kept by PostgreSQL itself from the columns above (the functions
    # are in the migration). Deferred: only a search reads them.
    search_vector: Mapped[Any] = mapped_column(
        TSVECTOR,
        Computed(
            "scripts.script_template_search_vector("
            "name, tags, description, use_case, parameters_schema)",
            persisted=True,
        ),
        deferred=True,
    )
    search_text: Mapped[str] = mapped_column(
        Text,
        Computed(
            "scripts.script_template_search_text(name, tags, description, use_case)", persisted=True
        ),
        deferred=True,
    )


class ScriptTemplateVersion(UUIDPrimaryKey, Timestamps, Base):
    """What a template's body and parameters were at each version, so an old generation can be
    explained."""

    __tablename__ = "script_template_versions"
    __table_args__ = (
        UniqueConstraint("template_id", "version", name="uq_script_template_versions_version"),
        {"schema": SCRIPTS},
    )

    template_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("scripts.script_templates.id", ondelete="CASCADE")
    )
    version: Mapped[int] = mapped_column(Integer)
    script_body: Mapped[str] = mapped_column(Text)
    parameters_schema: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("core.users.id", ondelete="SET NULL")
    )


class ScriptGeneration(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "script_generations"
    __table_args__ = (
        Index("ix_script_generations_user_created", "user_id", "created_at"),
        Index("ix_script_generations_ai_session", "ai_session_id", "created_at"),
        {"schema": SCRIPTS},
    )

    template_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("scripts.script_templates.id"), index=True
    )
    template_version: Mapped[int] = mapped_column(Integer)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("core.users.id", ondelete="CASCADE"))
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("core.accounts.id", ondelete="CASCADE"), index=True
    )
    team_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("core.teams.id", ondelete="SET NULL")
    )
    # A free-standing troubleshooting session reference; no table of ours owns it.
    session_id: Mapped[uuid.UUID | None] = mapped_column()
    ai_session_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("pilot.ai_sessions.id", ondelete="CASCADE")
    )
    # Both copies have every sensitive value replaced by the redaction marker.
    parameters_used: Mapped[dict[str, Any]] = mapped_column(JSONB)
    secret_delivery: Mapped[str] = mapped_column(
        String(10), default="inline", server_default="inline"
    )
    generated_script: Mapped[str] = mapped_column(Text)
