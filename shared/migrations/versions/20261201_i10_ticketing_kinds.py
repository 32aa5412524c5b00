"""Native ticketing adapters: the integration's kind, encrypted credentials and options; where a
note landed; each attempt's request id

Revision ID: 20261201_i10
Revises: 20261201_i9
Create Date: 2026-12-01

- ticketing_integrations.kind (existing rows are webhooks), .credentials (a Fernet token of the
  kind's credential fields as JSON, shared.secrets_at_rest), .options (JSON, no secrets).
- resolution_notes.delivery_kind / delivered_ticket / delivered_ref / delivered_link: what the
  console shows ("posted to Zendesk ticket 4711").
- webhook_attempts.kind and .request_id (the target's own request id, for support).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "20261201_i10"
# Also the merge point of the two heads this branch sees (i11 from issue-11, i13 from main).
down_revision: str | None = "20261201_i9"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "ticketing_integrations",
        sa.Column("kind", sa.String(40), nullable=False, server_default="webhook"),
    )
    op.add_column("ticketing_integrations", sa.Column("credentials", sa.Text(), nullable=True))
    op.add_column(
        "ticketing_integrations",
        sa.Column(
            "options",
            postgresql.JSONB(astext_type=sa.Text()),
            nullable=False,
            server_default=sa.text("'{}'::jsonb"),
        ),
    )
    op.add_column("resolution_notes", sa.Column("delivery_kind", sa.String(40), nullable=True))
    op.add_column(
        "resolution_notes", sa.Column("delivered_ticket", sa.String(200), nullable=True)
    )
    op.add_column("resolution_notes", sa.Column("delivered_ref", sa.String(200), nullable=True))
    op.add_column("resolution_notes", sa.Column("delivered_link", sa.Text(), nullable=True))
    op.add_column("webhook_attempts", sa.Column("kind", sa.String(40), nullable=True))
    op.add_column("webhook_attempts", sa.Column("request_id", sa.String(200), nullable=True))


def downgrade() -> None:
    op.drop_column("webhook_attempts", "request_id")
    op.drop_column("webhook_attempts", "kind")
    op.drop_column("resolution_notes", "delivered_link")
    op.drop_column("resolution_notes", "delivered_ref")
    op.drop_column("resolution_notes", "delivered_ticket")
    op.drop_column("resolution_notes", "delivery_kind")
    op.execute("DELETE FROM ticketing_integrations WHERE kind <> 'webhook'")
    op.drop_column("ticketing_integrations", "options")
    op.drop_column("ticketing_integrations", "credentials")
    op.drop_column("ticketing_integrations", "kind")
