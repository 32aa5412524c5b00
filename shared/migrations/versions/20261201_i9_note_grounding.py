"""Root cause and resolution facts, fix decision history, note citations and snapshots

Revision ID: 20261201_i9
Revises: 20261201_i15
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "20261201_i9"
down_revision: str | None = "20261201_i15"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_KINDS = "('symptom', 'observation', 'confirmed', 'ruled_out', 'environment')"
NEW_KINDS = (
    "('symptom', 'observation', 'confirmed', 'ruled_out', 'environment', "
    "'root_cause', 'resolution')"
)


def upgrade() -> None:
    op.drop_constraint(op.f("ck_session_facts_kind_valid"), "session_facts", type_="check")
    op.create_check_constraint(op.f("ck_session_facts_kind_valid"), "session_facts", f"kind IN {NEW_KINDS}")
    op.add_column(
        "suggested_fixes",
        sa.Column(
            "decision_history",
            postgresql.JSONB(),
            server_default=sa.text("'[]'"),
            nullable=False,
        ),
    )
    # Fixes decided before this migration keep their one decision as their history.
    op.execute(
        "UPDATE suggested_fixes SET decision_history = jsonb_build_array(jsonb_build_object("
        "'decision', decision, 'decided_by', decided_by::text, 'decided_at', decided_at)) "
        "WHERE decision IS NOT NULL"
    )
    op.add_column("resolution_notes", sa.Column("citations", postgresql.JSONB(), nullable=True))
    op.add_column("resolution_notes", sa.Column("bundle", postgresql.JSONB(), nullable=True))
    op.add_column("llm_usage", sa.Column("rejections", postgresql.JSONB(), nullable=True))


def downgrade() -> None:
    op.drop_column("llm_usage", "rejections")
    op.drop_column("resolution_notes", "bundle")
    op.drop_column("resolution_notes", "citations")
    op.drop_column("suggested_fixes", "decision_history")
    op.execute("DELETE FROM session_facts WHERE kind IN ('root_cause', 'resolution')")
    op.drop_constraint(op.f("ck_session_facts_kind_valid"), "session_facts", type_="check")
    op.create_check_constraint(op.f("ck_session_facts_kind_valid"), "session_facts", f"kind IN {OLD_KINDS}")
