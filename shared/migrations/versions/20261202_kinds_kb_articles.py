"""Knowledge-base articles kept from resolved sessions, with a generated search document

Revision ID: 20261202_kinds
Revises: 20261202_drafts
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "20261202_kinds"
down_revision: str | None = "20261202_drafts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEARCH_VECTOR = (
    "setweight(to_tsvector('english'::regconfig, coalesce(title, '')), 'A') || "
    "setweight(to_tsvector('english'::regconfig, coalesce(markdown, '')), 'B')"
)


def upgrade() -> None:
    op.create_table(
        "kb_articles",
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("account_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("session_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("state_version", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("markdown", sa.Text(), nullable=False),
        sa.Column("citations", postgresql.JSONB(), nullable=True),
        sa.Column("generator", sa.String(40), nullable=True),
        sa.Column("model", sa.String(100), nullable=True),
        sa.Column("fingerprint", sa.String(64), nullable=True),
        sa.Column("kept_by", postgresql.UUID(as_uuid=True), nullable=True),
        sa.Column(
            "search_vector",
            postgresql.TSVECTOR(),
            sa.Computed(SEARCH_VECTOR, persisted=True),
            nullable=True,
        ),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name="fk_kb_articles_account_id_accounts",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["ai_sessions.id"],
            name="fk_kb_articles_session_id_ai_sessions",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["kept_by"], ["users.id"], name="fk_kb_articles_kept_by_users", ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_kb_articles"),
        sa.UniqueConstraint("session_id", name="uq_kb_articles_session_id"),
    )
    op.create_index(
        "ix_kb_articles_account_updated", "kb_articles", ["account_id", "updated_at"]
    )
    op.create_index(
        "ix_kb_articles_search_vector",
        "kb_articles",
        ["search_vector"],
        postgresql_using="gin",
    )


def downgrade() -> None:
    op.drop_index("ix_kb_articles_search_vector", table_name="kb_articles")
    op.drop_index("ix_kb_articles_account_updated", table_name="kb_articles")
    op.drop_table("kb_articles")
