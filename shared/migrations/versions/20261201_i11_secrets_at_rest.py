"""Integration secrets encrypted at rest; delivery errors without the target's words

Revision ID: 20261201_i11
Revises: 20261201_i13
Create Date: 2026-12-01

- ticketing_integrations.url and .secret hold Fernet tokens (shared.secrets_at_rest, keys from
  INTEGRATION_KEY); existing clear values are encrypted here.
- webhook_attempts.url keeps only the target's origin (the path and query may carry a token).
- Stored delivery errors quoted up to 500 characters of the target's answer: they are cut back
  to the status the product recorded; the new `detail` / `last_error_detail` columns hold a
  bounded, sanitised excerpt, shown to owners only.
"""

from collections.abc import Sequence
from urllib.parse import urlsplit

import sqlalchemy as sa
from alembic import op

revision: str = "20261201_i11"
down_revision: str | None = "20261201_i13"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _origin(url: str) -> str:
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(invalid URL)"
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}{port}"


def upgrade() -> None:
    from shared import secrets_at_rest

    op.alter_column("ticketing_integrations", "url", type_=sa.Text(), existing_nullable=False)
    op.alter_column("ticketing_integrations", "secret", type_=sa.Text(), existing_nullable=False)
    op.add_column("webhook_attempts", sa.Column("detail", sa.Text(), nullable=True))
    op.add_column("resolution_notes", sa.Column("last_error_detail", sa.Text(), nullable=True))

    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT id, url, secret FROM ticketing_integrations")).all()
    for row_id, url, secret in rows:
        values = {}
        if not secrets_at_rest.is_encrypted(url):
            values["url"] = secrets_at_rest.encrypt(url)
        if not secrets_at_rest.is_encrypted(secret):
            values["secret"] = secrets_at_rest.encrypt(secret)
        if values:
            sets = ", ".join(f"{key} = :{key}" for key in values)
            bind.execute(
                sa.text(f"UPDATE ticketing_integrations SET {sets} WHERE id = :id"),
                {**values, "id": row_id},
            )

    attempts = bind.execute(sa.text("SELECT DISTINCT url FROM webhook_attempts")).all()
    for (url,) in attempts:
        bind.execute(
            sa.text("UPDATE webhook_attempts SET url = :origin WHERE url = :url"),
            {"origin": _origin(url), "url": url},
        )
    bind.execute(
        sa.text(
            "UPDATE webhook_attempts SET error = CASE WHEN status_code IS NULL "
            "THEN 'the request failed' ELSE 'HTTP ' || status_code END WHERE error IS NOT NULL"
        )
    )
    bind.execute(
        sa.text(
            "UPDATE resolution_notes SET last_error = substring(last_error "
            "from '^((gave up after [0-9]+ attempts: )?HTTP [0-9]{3})') "
            "WHERE last_error IS NOT NULL"
        )
    )
    bind.execute(
        sa.text(
            "UPDATE resolution_notes SET last_error = 'the request failed' "
            "WHERE last_error IS NULL AND delivery_status IN ('retrying', 'failed')"
        )
    )
    bind.execute(
        sa.text(
            "UPDATE ticketing_integrations SET disabled_reason = 'endpoint answered 410 Gone' "
            "WHERE disabled_reason LIKE 'endpoint answered 410 Gone%'"
        )
    )


def downgrade() -> None:
    from shared import secrets_at_rest

    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT id, url, secret FROM ticketing_integrations")).all()
    for row_id, url, secret in rows:
        bind.execute(
            sa.text("UPDATE ticketing_integrations SET url = :url, secret = :secret WHERE id = :id"),
            {
                "url": secrets_at_rest.decrypt(url) if secrets_at_rest.is_encrypted(url) else url,
                "secret": secrets_at_rest.decrypt(secret)
                if secrets_at_rest.is_encrypted(secret)
                else secret,
                "id": row_id,
            },
        )
    op.drop_column("resolution_notes", "last_error_detail")
    op.drop_column("webhook_attempts", "detail")
    op.alter_column("ticketing_integrations", "secret", type_=sa.String(200))
    op.alter_column("ticketing_integrations", "url", type_=sa.String(2000))
