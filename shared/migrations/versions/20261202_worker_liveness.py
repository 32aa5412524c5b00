"""Worker processes that beat, so a dead worker's leases are handed on within seconds

Revision ID: 20261202_liveness
Revises: 20261202_i16_similar
Create Date: 2026-12-02

- `notes.worker_processes`: one row per notes worker process, its `beat_at` written by the
  process every WORKER_BEAT_S; `reclaimed_at` when its leases were handed on.
- A partial index over the leases held now (`lease_owner IS NOT NULL`), which the reclaim
  looks through.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261202_liveness"
down_revision: str | None = "20261202_i16_similar"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "worker_processes",
        sa.Column("id", sa.String(120), nullable=False),
        sa.Column("hostname", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column(
            "started_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "beat_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("reclaimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_worker_processes"),
        schema="notes",
    )
    op.create_index(
        "ix_resolution_notes_leased",
        "resolution_notes",
        ["lease_owner"],
        schema="notes",
        postgresql_where=sa.text("lease_owner IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_resolution_notes_leased", table_name="resolution_notes", schema="notes")
    op.drop_table("worker_processes", schema="notes")
