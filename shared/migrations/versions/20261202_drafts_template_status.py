"""Template drafts made from a fix: a template's status (draft or published) and the fix it
was made from

Revision ID: 20261202_drafts
Revises: 20261201_i10
Create Date: 2026-12-02

- script_templates.status: 'published' for every existing template; a draft made from a fix is
  'draft' and stays out of the library until it is published.
- script_templates.source_fix_id: the suggested fix the draft was lifted from (kept when the
  fix is gone as NULL).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261202_drafts"
down_revision: str | None = "20261201_i10"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "script_templates",
        sa.Column("status", sa.String(20), nullable=False, server_default="published"),
    )
    op.create_check_constraint(
        op.f("ck_script_templates_status_valid"),
        "script_templates", "status IN ('draft', 'published')"
    )
    op.add_column(
        "script_templates",
        sa.Column(
            "source_fix_id",
            sa.Uuid(),
            sa.ForeignKey(
                "suggested_fixes.id",
                name=op.f("fk_script_templates_source_fix_id_suggested_fixes"),
                ondelete="SET NULL",
            ),
            nullable=True,
        ),
    )
    op.create_index(
        op.f("ix_script_templates_source_fix_id"),
        "script_templates", ["source_fix_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_script_templates_source_fix_id"), table_name="script_templates")
    op.drop_column("script_templates", "source_fix_id")
    op.drop_constraint(
        op.f("ck_script_templates_status_valid"), "script_templates", type_="check"
    )
    op.drop_column("script_templates", "status")
