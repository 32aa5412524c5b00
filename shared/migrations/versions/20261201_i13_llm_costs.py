"""LLM costs: cost per ledger row, per-account monthly budget, the batch lane's queue

Revision ID: 20261201_i13
Revises: 0002
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "20261201_i13"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "llm_usage",
        sa.Column("cost_usd", sa.Numeric(18, 9), server_default="0", nullable=False),
    )
    op.add_column(
        "llm_usage",
        sa.Column(
            "cache_creation_1h_input_tokens", sa.Integer(), server_default="0", nullable=False
        ),
    )
    op.add_column(
        "llm_usage", sa.Column("batch", sa.Boolean(), server_default="false", nullable=False)
    )
    op.add_column("llm_usage", sa.Column("fallback_reason", sa.String(40), nullable=True))
    op.add_column("llm_usage", sa.Column("error", sa.String(300), nullable=True))
    op.add_column("accounts", sa.Column("monthly_budget_usd", sa.Numeric(12, 2), nullable=True))
    op.add_column("accounts", sa.Column("budget_warned_month", sa.String(7), nullable=True))

    op.create_table(
        "note_reuses",
        sa.Column("account_id", sa.UUID(), nullable=False),
        sa.Column("ai_session_id", sa.UUID(), nullable=True),
        sa.Column("purpose", sa.String(40), nullable=False),
        sa.Column("state_version", sa.Integer(), nullable=True),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_note_reuses_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["ai_session_id"],
            ["ai_sessions.id"],
            name=op.f("fk_note_reuses_ai_session_id_ai_sessions"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_note_reuses")),
    )
    op.create_index(
        "ix_note_reuses_account_created", "note_reuses", ["account_id", "created_at"], unique=False
    )
    op.create_index("ix_note_reuses_session", "note_reuses", ["ai_session_id"], unique=False)

    op.create_table(
        "llm_batch_items",
        sa.Column("account_id", sa.UUID(), nullable=False),
        sa.Column("ai_session_id", sa.UUID(), nullable=True),
        sa.Column("purpose", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("state_version", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("params", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("status", sa.String(20), server_default="queued", nullable=False),
        sa.Column("provider_batch_id", sa.String(100), nullable=True),
        sa.Column("error", sa.String(300), nullable=True),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.CheckConstraint(
            "status IN ('queued', 'submitted', 'succeeded', 'errored')",
            name=op.f("ck_llm_batch_items_status_valid"),
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_llm_batch_items_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["ai_session_id"],
            ["ai_sessions.id"],
            name=op.f("fk_llm_batch_items_ai_session_id_ai_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_llm_batch_items")),
    )
    op.create_index("ix_llm_batch_items_status", "llm_batch_items", ["status"], unique=False)
    op.create_index(
        "ix_llm_batch_items_provider_batch", "llm_batch_items", ["provider_batch_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_llm_batch_items_provider_batch", table_name="llm_batch_items")
    op.drop_index("ix_llm_batch_items_status", table_name="llm_batch_items")
    op.drop_table("llm_batch_items")
    op.drop_index("ix_note_reuses_session", table_name="note_reuses")
    op.drop_index("ix_note_reuses_account_created", table_name="note_reuses")
    op.drop_table("note_reuses")
    op.drop_column("accounts", "budget_warned_month")
    op.drop_column("accounts", "monthly_budget_usd")
    for column in ("error", "fallback_reason", "batch", "cache_creation_1h_input_tokens", "cost_usd"):
        op.drop_column("llm_usage", column)
