"""One PostgreSQL schema and one role per service; the cross-service reads as read-only views

Revision ID: 20261202_schemas
Revises: 20261202_kinds
Create Date: 2026-12-02

- Schemas `scripts`, `pilot`, `notes` (each service's own tables), `core` (what shared/ writes
  for every service: accounts, teams, users, the outbox, the LLM usage ledger) and `exposed`
  (the views one service reads of another). Every table moves with ALTER TABLE ... SET SCHEMA:
  its indexes, constraints and identity sequence follow it. The search-document functions of
  script_templates' generated columns move to `scripts`; the vector one calls the labels one
  by its qualified name, so evaluating them never depends on a caller's search_path.
- The database's search_path lists the schemas, so hand-written SQL (psql, the CLI's raw
  statements) keeps naming tables unqualified; the models name their schema.
- NOLOGIN roles rf_scripts, rf_pilot, rf_notes: full DML on their own schema (and on tables
  later migrations add there), the grants on `core` each needs, SELECT on the views it reads.
  Roles are cluster-wide (several databases may share a server): they are created when
  missing and never dropped here; grants are per database, and the downgrade revokes them.
  The views and grants are the declared list of shared.models.exposed, frozen here.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "20261202_schemas"
down_revision: str | None = "20261202_kinds"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = {
    "core": ("accounts", "teams", "users", "outbox_events", "llm_usage", "note_reuses"),
    "scripts": (
        "script_categories",
        "script_templates",
        "script_template_versions",
        "script_generations",
    ),
    "pilot": ("ai_sessions", "session_facts", "chat_messages", "suggested_fixes"),
    "notes": (
        "ticketing_integrations",
        "resolution_notes",
        "webhook_attempts",
        "llm_batch_items",
        "kb_articles",
    ),
}
SCHEMAS = ("core", "scripts", "pilot", "notes", "exposed")
SEARCH_PATH = "core, scripts, pilot, notes, exposed, public"
ROLES = {"scripts": "rf_scripts", "pilot": "rf_pilot", "notes": "rf_notes"}
FUNCTIONS = (
    "script_template_parameter_labels(jsonb)",
    "script_template_search_vector(text, text[], text, text, jsonb)",
    "script_template_search_text(text, text[], text, text)",
)

SEARCH_VECTOR = """
CREATE OR REPLACE FUNCTION {schema}.script_template_search_vector(
    name text, tags text[], description text, use_case text, parameters_schema jsonb
) RETURNS tsvector LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT setweight(to_tsvector('english'::regconfig, coalesce(name, '')), 'A')
        || setweight(to_tsvector('english'::regconfig,
                                 replace(coalesce(array_to_string(tags, ' '), ''), '-', ' ')), 'B')
        || setweight(to_tsvector('english'::regconfig, coalesce(description, '')), 'C')
        || setweight(to_tsvector('english'::regconfig, coalesce(use_case, '')), 'C')
        || setweight(to_tsvector('english'::regconfig,
                                 {labels}script_template_parameter_labels(parameters_schema)), 'D')
$$
"""

VIEWS = {
    "pilot_sessions": """
        SELECT id, account_id, title, ticket_ref, problem, status, state_version, resolved_at,
               resolved_version, created_at
        FROM pilot.ai_sessions""",
    "pilot_session_facts": """
        SELECT id, session_id, account_id, kind, text, created_at FROM pilot.session_facts""",
    "pilot_suggested_fixes": """
        SELECT id, session_id, account_id, title, summary, steps, script, template_id,
               confidence, decision, superseded_at, created_at
        FROM pilot.suggested_fixes""",
    "scripts_session_runs": """
        SELECT g.id, g.ai_session_id, g.account_id, g.template_id, t.name AS template_name,
               g.parameters_used, g.created_at
        FROM scripts.script_generations g
        JOIN scripts.script_templates t ON t.id = g.template_id
        WHERE g.ai_session_id IS NOT NULL""",
    "scripts_templates": """
        SELECT id, scope, account_id, team_id, created_by, name, description, usage_count,
               is_active, status, source_fix_id
        FROM scripts.script_templates""",
    "notes_integrations": """
        SELECT account_id, kind, status FROM notes.ticketing_integrations""",
}

_CORE_READS = (
    "GRANT USAGE ON SCHEMA core, exposed TO {role}",
    "GRANT SELECT ON core.accounts, core.teams, core.users TO {role}",
    "GRANT SELECT, INSERT ON core.outbox_events TO {role}",
    "GRANT UPDATE (last_error, publish_attempts, published_at, updated_at)"
    " ON core.outbox_events TO {role}",
)
GRANTS = {
    "rf_scripts": (
        *_CORE_READS,
        "GRANT UPDATE (password_hash, updated_at) ON core.users TO {role}",
        "GRANT UPDATE (default_secret_delivery, updated_at) ON core.accounts TO {role}",
        "GRANT SELECT ON exposed.pilot_sessions TO {role}",
        "GRANT USAGE ON SCHEMA pilot TO {role}",
        "GRANT SELECT (account_id, id, state_version, status) ON pilot.ai_sessions TO {role}",
        "GRANT UPDATE (state_version, updated_at) ON pilot.ai_sessions TO {role}",
    ),
    "rf_pilot": (
        *_CORE_READS,
        "GRANT SELECT, INSERT ON core.llm_usage TO {role}",
        "GRANT SELECT ON core.note_reuses TO {role}",
        "GRANT UPDATE (budget_warned_month, monthly_budget_usd, updated_at)"
        " ON core.accounts TO {role}",
        "GRANT SELECT ON exposed.scripts_session_runs, exposed.scripts_templates,"
        " exposed.notes_integrations TO {role}",
        # Resolve creates the note rows with their snapshot in pilot's own transaction.
        "GRANT SELECT ON exposed.pilot_sessions, exposed.pilot_session_facts,"
        " exposed.pilot_suggested_fixes TO {role}",
        "GRANT USAGE ON SCHEMA notes TO {role}",
        "GRANT INSERT ON notes.resolution_notes TO {role}",
        "GRANT SELECT (id, kind, session_id, state_version) ON notes.resolution_notes TO {role}",
        # A template decision on a fix files a draft template (services.pilot.drafts), under
        # the category and beside the templates the library match ranks by search document.
        "GRANT USAGE ON SCHEMA scripts TO {role}",
        "GRANT SELECT ON scripts.script_categories TO {role}",
        "GRANT SELECT, INSERT ON scripts.script_templates TO {role}",
        "GRANT INSERT ON scripts.script_template_versions TO {role}",
    ),
    "rf_notes": (
        *_CORE_READS,
        "GRANT SELECT, INSERT ON core.llm_usage TO {role}",
        "GRANT INSERT ON core.note_reuses TO {role}",
        "GRANT UPDATE (budget_warned_month, updated_at) ON core.accounts TO {role}",
        "GRANT SELECT ON exposed.pilot_sessions, exposed.pilot_session_facts,"
        " exposed.pilot_suggested_fixes, exposed.scripts_session_runs TO {role}",
    ),
}

# Two databases migrating at once on one server may both find the role missing: the loser of
# the race sees duplicate_object (or unique_violation from the catalog) and carries on.
CREATE_ROLE = """
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
        BEGIN
            CREATE ROLE {role} NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END;
    END IF;
    -- The login that runs the services switches to the role (SET ROLE), so it must be a
    -- member that may SET it (PostgreSQL 16 grants a creator ADMIN without SET); a superuser
    -- already is.
    IF current_setting('server_version_num')::int >= 160000 THEN
        IF NOT pg_has_role(current_user, '{role}', 'SET') THEN
            EXECUTE format('GRANT {role} TO %I WITH SET TRUE', current_user);
        END IF;
    ELSIF NOT pg_has_role(current_user, '{role}', 'MEMBER') THEN
        EXECUTE format('GRANT {role} TO %I', current_user);
    END IF;
END
$$
"""


def _set_database_search_path(value: str | None) -> None:
    clause = "RESET search_path" if value is None else f"SET search_path = {value}"
    op.execute(
        f"DO $$ BEGIN EXECUTE format('ALTER DATABASE %I {clause}', current_database()); END $$"
    )


def upgrade() -> None:
    for schema in SCHEMAS:
        op.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    for schema, tables in TABLES.items():
        for table in tables:
            op.execute(f"ALTER TABLE public.{table} SET SCHEMA {schema}")
    for function in FUNCTIONS:
        op.execute(f"ALTER FUNCTION public.{function} SET SCHEMA scripts")
    op.execute(SEARCH_VECTOR.format(schema="scripts", labels="scripts."))
    _set_database_search_path(SEARCH_PATH)

    for name, query in VIEWS.items():
        op.execute(f"CREATE VIEW exposed.{name} AS {query}")

    for service, role in ROLES.items():
        op.execute(CREATE_ROLE.format(role=role))
        op.execute(f"GRANT USAGE ON SCHEMA {service} TO {role}")
        op.execute(
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {service} TO {role}"
        )
        op.execute(
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA {service}"
            f" GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role}"
        )
        for grant in GRANTS[role]:
            op.execute(grant.format(role=role))


def downgrade() -> None:
    for role in ROLES.values():
        # Revokes every privilege (and default privilege) of the role in this database only.
        op.execute(f"DROP OWNED BY {role}")
    for name in VIEWS:
        op.execute(f"DROP VIEW IF EXISTS exposed.{name}")
    for function in FUNCTIONS:
        op.execute(f"ALTER FUNCTION scripts.{function} SET SCHEMA public")
    op.execute(SEARCH_VECTOR.format(schema="public", labels=""))
    for schema, tables in TABLES.items():
        for table in tables:
            op.execute(f"ALTER TABLE {schema}.{table} SET SCHEMA public")
    _set_database_search_path(None)
    for schema in SCHEMAS:
        op.execute(f"DROP SCHEMA IF EXISTS {schema}")
