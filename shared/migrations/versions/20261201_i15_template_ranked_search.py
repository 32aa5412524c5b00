"""Ranked template search (a weighted tsvector and a trigram text column, both generated);
static-check acknowledgements on templates; secret delivery defaults; generation delivery mode

Revision ID: 20261201_i15
Revises: 20261201_i13
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "20261201_i15"
down_revision: str | None = "20261201_i13"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Generated columns need immutable expressions: array_to_string is only "stable" (its element
# output functions could in principle depend on settings), and a subquery over the parameter
# labels is not allowed inline, so both documents are built by IMMUTABLE SQL functions of the
# row's own columns. The text search configuration is named, never the session default.
SEARCH_FUNCTIONS = """
CREATE FUNCTION script_template_parameter_labels(parameters_schema jsonb)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(string_agg(p ->> 'label', ' '), '')
    FROM jsonb_array_elements(
        CASE WHEN jsonb_typeof(parameters_schema -> 'parameters') = 'array'
             THEN parameters_schema -> 'parameters' ELSE '[]'::jsonb END
    ) AS p
    WHERE jsonb_typeof(p) = 'object'
$$;

CREATE FUNCTION script_template_search_vector(
    name text, tags text[], description text, use_case text, parameters_schema jsonb
) RETURNS tsvector LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT setweight(to_tsvector('english'::regconfig, coalesce(name, '')), 'A')
        || setweight(to_tsvector('english'::regconfig,
                                 replace(coalesce(array_to_string(tags, ' '), ''), '-', ' ')), 'B')
        || setweight(to_tsvector('english'::regconfig, coalesce(description, '')), 'C')
        || setweight(to_tsvector('english'::regconfig, coalesce(use_case, '')), 'C')
        || setweight(to_tsvector('english'::regconfig,
                                 script_template_parameter_labels(parameters_schema)), 'D')
$$;

CREATE FUNCTION script_template_search_text(
    name text, tags text[], description text, use_case text
) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT lower(concat_ws(' ', name, array_to_string(tags, ' '), description, use_case))
$$;
"""


DELIVERY_CHECK = "{column} IS NULL OR {column} IN ('inline', 'env', 'prompt')"


def upgrade() -> None:
    for table, column in (
        ("script_templates", "secret_delivery"),
        ("accounts", "default_secret_delivery"),
    ):
        op.add_column(table, sa.Column(column, sa.String(10), nullable=True))
        op.create_check_constraint(
            f"{column}_valid", table, DELIVERY_CHECK.format(column=column)
        )
    op.add_column(
        "script_generations",
        sa.Column("secret_delivery", sa.String(10), nullable=False, server_default="inline"),
    )
    op.create_check_constraint(
        "secret_delivery_valid",
        "script_generations",
        "secret_delivery IN ('inline', 'env', 'prompt')",
    )
    op.add_column(
        "script_templates",
        sa.Column(
            "acknowledged_findings",
            postgresql.JSONB(),
            nullable=False,
            server_default=sa.text("'[]'::jsonb"),
        ),
    )
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.execute(SEARCH_FUNCTIONS)
    op.execute(
        "ALTER TABLE script_templates ADD COLUMN search_vector tsvector GENERATED ALWAYS AS "
        "(script_template_search_vector(name, tags, description, use_case, parameters_schema)) "
        "STORED"
    )
    op.execute(
        "ALTER TABLE script_templates ADD COLUMN search_text text GENERATED ALWAYS AS "
        "(script_template_search_text(name, tags, description, use_case)) STORED"
    )
    op.execute(
        "CREATE INDEX ix_script_templates_search_vector ON script_templates "
        "USING gin (search_vector)"
    )
    op.execute(
        "CREATE INDEX ix_script_templates_search_text_trgm ON script_templates "
        "USING gin (search_text gin_trgm_ops)"
    )


def downgrade() -> None:
    op.drop_column("script_generations", "secret_delivery")
    op.drop_column("accounts", "default_secret_delivery")
    op.drop_column("script_templates", "secret_delivery")
    op.drop_column("script_templates", "acknowledged_findings")
    op.execute("DROP INDEX IF EXISTS ix_script_templates_search_text_trgm")
    op.execute("DROP INDEX IF EXISTS ix_script_templates_search_vector")
    op.execute("ALTER TABLE script_templates DROP COLUMN IF EXISTS search_text")
    op.execute("ALTER TABLE script_templates DROP COLUMN IF EXISTS search_vector")
    op.execute(
        "DROP FUNCTION IF EXISTS script_template_search_text(text, text[], text, text);"
        "DROP FUNCTION IF EXISTS script_template_search_vector(text, text[], text, text, jsonb);"
        "DROP FUNCTION IF EXISTS script_template_parameter_labels(jsonb)"
    )
