"""A stored search document for similar past sessions

Revision ID: 20261202_i16_similar
Revises: 20261202_schemas
Create Date: 2026-12-02

- pilot.ai_sessions gains `search_document` (title, problem and the facts that describe the
  problem, lower-cased, at most 8,000 characters) and `search_statement` (title and problem),
  written when a session is resolved, and `search_vector`, generated from the document.
- A GIN index on the vector and a trigram GIN index on the statement, so similar-session
  search reads the matching sessions instead of stemming every resolved one per request.
- Sessions already resolved get their document here.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "20261202_i16_similar"
down_revision: str | None = "20261202_schemas"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PROBLEM_KINDS = "('symptom', 'observation', 'confirmed', 'ruled_out', 'environment', 'root_cause')"
MAX_CHARS = 8000


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.execute("ALTER TABLE pilot.ai_sessions ADD COLUMN search_document text")
    op.execute("ALTER TABLE pilot.ai_sessions ADD COLUMN search_statement text")
    op.execute(
        "ALTER TABLE pilot.ai_sessions ADD COLUMN search_vector tsvector GENERATED ALWAYS AS "
        "(to_tsvector('english'::regconfig, coalesce(search_document, ''))) STORED"
    )
    op.execute(
        "CREATE INDEX ix_ai_sessions_search_vector ON pilot.ai_sessions USING gin (search_vector)"
    )
    op.execute(
        "CREATE INDEX ix_ai_sessions_search_statement_trgm ON pilot.ai_sessions "
        "USING gin (search_statement gin_trgm_ops)"
    )
    op.execute(
        f"""
        UPDATE pilot.ai_sessions s SET
            search_statement = left(lower(concat_ws(' ', s.title, s.problem)), {MAX_CHARS}),
            search_document = left(lower(concat_ws(' ', s.title, s.problem, (
                SELECT string_agg(f.text, ' ' ORDER BY f.created_at, f.id)
                FROM pilot.session_facts f
                WHERE f.session_id = s.id AND f.kind IN {PROBLEM_KINDS}
            ))), {MAX_CHARS})
        WHERE s.status = 'resolved'
        """
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS pilot.ix_ai_sessions_search_statement_trgm")
    op.execute("DROP INDEX IF EXISTS pilot.ix_ai_sessions_search_vector")
    op.execute("ALTER TABLE pilot.ai_sessions DROP COLUMN IF EXISTS search_vector")
    op.execute("ALTER TABLE pilot.ai_sessions DROP COLUMN IF EXISTS search_statement")
    op.execute("ALTER TABLE pilot.ai_sessions DROP COLUMN IF EXISTS search_document")
