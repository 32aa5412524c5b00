"""Pilot reads scripts' data through views only, and files a fix's draft through a function

Revision ID: 20261202_pilot_views
Revises: 20261202_liveness
Create Date: 2026-12-02

- `exposed.scripts_templates` gains the columns the library match and the draft's category
  read (category_id, use_case, tags, search_vector), added at its end so its grants stay.
- `exposed.scripts_categories`: a category's id, slug, name, order and whether it is active.
- `exposed.file_template_draft(...)`: inserts a personal draft template made from a fix and
  its version 1 and returns the template's id. SECURITY DEFINER, owned by rf_scripts (so it
  writes with exactly scripts' privileges) with a fixed search_path; the creator must be a
  user of the account the draft is filed in. Only rf_pilot may execute it.
- rf_pilot loses SELECT on scripts.script_categories, SELECT and INSERT on
  scripts.script_templates, INSERT on scripts.script_template_versions and USAGE on schema
  scripts. The downgrade gives them back and restores the view's earlier columns.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "20261202_pilot_views"
down_revision: str | None = "20261202_liveness"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TEMPLATES_VIEW = """
    SELECT id, scope, account_id, team_id, created_by, name, description, usage_count,
           is_active, status, source_fix_id{more}
    FROM scripts.script_templates"""
TEMPLATES_MORE = ", category_id, use_case, tags, search_vector"

CATEGORIES_VIEW = """
    SELECT id, slug, name, sort_order, is_active FROM scripts.script_categories"""

SIGNATURE = (
    "exposed.file_template_draft(uuid, uuid, uuid, text, text, text, text, text, jsonb, text[],"
    " uuid)"
)

FILE_TEMPLATE_DRAFT = """
CREATE FUNCTION exposed.file_template_draft(
    p_category_id uuid, p_account_id uuid, p_created_by uuid, p_name text, p_slug text,
    p_description text, p_use_case text, p_script_body text, p_parameters_schema jsonb,
    p_tags text[], p_source_fix_id uuid
) RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    new_id uuid := gen_random_uuid();
BEGIN
    IF NOT EXISTS (
        SELECT FROM core.users u WHERE u.id = p_created_by AND u.account_id = p_account_id
    ) THEN
        RAISE EXCEPTION 'a draft is filed by a user of its account'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    INSERT INTO scripts.script_templates (
        id, category_id, scope, account_id, team_id, created_by, name, slug, description,
        use_case, script_body, parameters_schema, default_values, validation_rules, tags,
        requires_elevation, requires_modules, acknowledged_findings, usage_count, version,
        is_active, status, source_fix_id, created_at, updated_at
    ) VALUES (
        new_id, p_category_id, 'personal', p_account_id, NULL, p_created_by, p_name, p_slug,
        p_description, p_use_case, p_script_body, p_parameters_schema, '{}'::jsonb,
        '{}'::jsonb, p_tags, false, '{}', '[]'::jsonb, 0, 1, true, 'draft', p_source_fix_id,
        now(), now()
    );
    INSERT INTO scripts.script_template_versions (
        id, template_id, version, script_body, parameters_schema, created_by, created_at,
        updated_at
    ) VALUES (
        gen_random_uuid(), new_id, 1, p_script_body, p_parameters_schema, p_created_by, now(),
        now()
    );
    RETURN new_id;
END
$$
"""

PILOT_SCRIPTS_GRANTS = (
    "GRANT USAGE ON SCHEMA scripts TO rf_pilot",
    "GRANT SELECT ON scripts.script_categories TO rf_pilot",
    "GRANT SELECT, INSERT ON scripts.script_templates TO rf_pilot",
    "GRANT INSERT ON scripts.script_template_versions TO rf_pilot",
)


def upgrade() -> None:
    op.execute(
        f"CREATE OR REPLACE VIEW exposed.scripts_templates AS"
        f" {TEMPLATES_VIEW.format(more=TEMPLATES_MORE)}"
    )
    op.execute(f"CREATE VIEW exposed.scripts_categories AS {CATEGORIES_VIEW}")
    op.execute("GRANT SELECT ON exposed.scripts_categories TO rf_pilot")

    op.execute(FILE_TEMPLATE_DRAFT)
    op.execute(f"REVOKE ALL ON FUNCTION {SIGNATURE} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {SIGNATURE} TO rf_pilot")
    # A new owner needs CREATE on the function's schema (unless a superuser migrates): granted
    # for the change of owner only.
    op.execute("GRANT CREATE ON SCHEMA exposed TO rf_scripts")
    op.execute(f"ALTER FUNCTION {SIGNATURE} OWNER TO rf_scripts")
    op.execute("REVOKE CREATE ON SCHEMA exposed FROM rf_scripts")

    op.execute(
        "REVOKE ALL ON scripts.script_categories, scripts.script_templates,"
        " scripts.script_template_versions FROM rf_pilot"
    )
    op.execute("REVOKE USAGE ON SCHEMA scripts FROM rf_pilot")


def downgrade() -> None:
    for grant in PILOT_SCRIPTS_GRANTS:
        op.execute(grant)
    op.execute(f"DROP FUNCTION {SIGNATURE}")
    op.execute("DROP VIEW exposed.scripts_categories")
    # A view keeps its columns on replace: the earlier one is created anew, with its grant.
    op.execute("DROP VIEW exposed.scripts_templates")
    op.execute(f"CREATE VIEW exposed.scripts_templates AS {TEMPLATES_VIEW.format(more='')}")
    op.execute("GRANT SELECT ON exposed.scripts_templates TO rf_pilot")
