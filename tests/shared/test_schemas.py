"""Each service owns a PostgreSQL schema and runs as its own role; what it holds outside that
schema is exactly the declared list of shared.models.exposed."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg2
import psycopg2.errors
import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.pool import NullPool

from shared.config import PROJECT_ROOT, Settings
from shared.db import db, normalise_database_url, request_role
from shared.models import Base
from shared.models.base import ALL_SCHEMAS, EXPOSED, SERVICE_SCHEMAS
from shared.models.exposed import (
    CROSS_SERVICE_PRIVILEGES,
    FUNCTIONS,
    SERVICE_ROLES,
    VIEWS,
    ExposedBase,
)
from tests.support.servers import admin_database_url, settings_with

# Every privilege granted to the role itself (not to PUBLIC) on anything outside `own` in this
# database, spelled as CROSS_SERVICE_PRIVILEGES spells it.
PRIVILEGES_OUTSIDE_OWN_SCHEMA = """
WITH grantee AS (SELECT oid FROM pg_roles WHERE rolname = :role)
SELECT format('%s ON SCHEMA %s', a.privilege_type, n.nspname)
FROM pg_namespace n, aclexplode(n.nspacl) a, grantee
WHERE a.grantee = grantee.oid AND n.nspname <> :own
UNION ALL
SELECT format('%s ON %s.%s', a.privilege_type, n.nspname, c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(c.relacl) a, grantee
WHERE a.grantee = grantee.oid AND n.nspname <> :own
UNION ALL
SELECT format('%s (%s) ON %s.%s', a.privilege_type,
              string_agg(att.attname, ', ' ORDER BY att.attname), n.nspname, c.relname)
FROM pg_attribute att
JOIN pg_class c ON c.oid = att.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(att.attacl) a, grantee
WHERE a.grantee = grantee.oid AND n.nspname <> :own
GROUP BY a.privilege_type, n.nspname, c.relname
UNION ALL
SELECT format('%s ON FUNCTION %s.%s', a.privilege_type, n.nspname, p.proname)
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace, aclexplode(p.proacl) a, grantee
WHERE a.grantee = grantee.oid AND n.nspname <> :own
UNION ALL
SELECT format('DEFAULT %s ON %s IN SCHEMA %s', a.privilege_type, d.defaclobjtype, n.nspname)
FROM pg_default_acl d
JOIN pg_namespace n ON n.oid = d.defaclnamespace, aclexplode(d.defaclacl) a, grantee
WHERE a.grantee = grantee.oid AND n.nspname <> :own
UNION ALL
SELECT format('%s ON DATABASE', a.privilege_type)
FROM pg_database d, aclexplode(d.datacl) a, grantee
WHERE d.datname = current_database() AND a.grantee = grantee.oid
UNION ALL
SELECT format('MEMBER OF %s', r.rolname)
FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid, grantee
WHERE m.member = grantee.oid
"""

SERVICES = tuple(SERVICE_ROLES.items())


def _privileges(conn: Connection, role: str, own: str) -> set[str]:
    return set(
        conn.execute(text(PRIVILEGES_OUTSIDE_OWN_SCHEMA), {"role": role, "own": own}).scalars()
    )


@contextmanager
def as_role(role: str) -> Iterator[Connection]:
    """A connection of the process's pool running as `role`, the way a service's request runs."""
    request_role(role)
    try:
        with db.engine.connect() as conn:
            yield conn
    finally:
        request_role(None)


def test_every_table_of_the_models_lives_in_a_declared_schema(migrated: Settings) -> None:
    with db.engine.connect() as conn:
        found = {
            (schema, table)
            for schema in ALL_SCHEMAS
            for table in inspect(conn).get_table_names(schema=schema)
        }
    declared = {(table.schema, table.name) for table in Base.metadata.sorted_tables}
    assert all(table.schema in ALL_SCHEMAS for table in Base.metadata.sorted_tables)
    assert found == declared


def test_no_product_table_is_left_in_public(migrated: Settings) -> None:
    with db.engine.connect() as conn:
        assert inspect(conn).get_table_names(schema="public") == ["alembic_version"]


@pytest.mark.parametrize(("service", "role"), SERVICES)
def test_privileges_outside_own_schema_are_the_declared_list(
    migrated: Settings, service: str, role: str
) -> None:
    with db.engine.connect() as conn:
        assert _privileges(conn, role, service) == CROSS_SERVICE_PRIVILEGES[role]


@pytest.mark.parametrize(("service", "role"), SERVICES)
def test_service_role_is_a_plain_role_with_full_dml_on_its_own_schema(
    migrated: Settings, service: str, role: str
) -> None:
    with db.engine.connect() as conn:
        attributes = conn.execute(
            text(
                "SELECT rolcanlogin, rolsuper, rolbypassrls, rolcreaterole, rolcreatedb "
                "FROM pg_roles WHERE rolname = :role"
            ),
            {"role": role},
        ).one()
        assert tuple(attributes) == (False, False, False, False, False)
        missing = conn.execute(
            text(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = :own AND c.relkind = 'r' AND NOT has_table_privilege("
                ":role, c.oid, 'SELECT, INSERT, UPDATE, DELETE')"
            ),
            {"role": role, "own": service},
        ).scalars()
        assert list(missing) == []
    owned = {table.name for table in Base.metadata.sorted_tables if table.schema == service}
    assert owned, f"{service} owns no table"


def test_every_view_is_declared_with_its_readers(migrated: Settings) -> None:
    with db.engine.connect() as conn:
        views = set(inspect(conn).get_view_names(schema=EXPOSED))
        assert views == set(VIEWS)
        for name, (owner, readers) in VIEWS.items():
            assert owner in SERVICE_SCHEMAS
            readers_in_db = {
                service
                for service, role in SERVICE_ROLES.items()
                if f"SELECT ON {EXPOSED}.{name}" in CROSS_SERVICE_PRIVILEGES[role]
            }
            assert readers_in_db == set(readers), name


def test_view_models_map_the_views_columns(migrated: Settings) -> None:
    with db.engine.connect() as conn:
        for table in ExposedBase.metadata.sorted_tables:
            in_db = {c["name"] for c in inspect(conn).get_columns(table.name, schema=EXPOSED)}
            assert {c.name for c in table.columns} == in_db, table.name


def _denied(conn: Connection, statement: str, params: dict[str, object] | None = None) -> None:
    with pytest.raises(ProgrammingError) as caught:
        conn.execute(text(statement), params or {})
    conn.rollback()
    assert isinstance(caught.value.orig, psycopg2.errors.InsufficientPrivilege)


def test_a_service_role_cannot_write_another_services_tables(migrated: Settings) -> None:
    some_id = {"id": uuid.uuid4()}
    with as_role(SERVICE_ROLES["notes"]) as conn:
        assert conn.execute(text("SELECT current_user")).scalar_one() == "rf_notes"
        _denied(conn, "UPDATE pilot.ai_sessions SET state_version = 0 WHERE id = :id", some_id)
        _denied(conn, "DELETE FROM scripts.script_templates WHERE id = :id", some_id)
        _denied(conn, "SELECT count(*) FROM pilot.session_facts")
        _denied(conn, "UPDATE exposed.pilot_sessions SET title = 'x' WHERE id = :id", some_id)
        # What it may read of pilot, it reads through the view.
        assert conn.execute(text("SELECT count(*) FROM exposed.pilot_sessions")).scalar() == 0
    with as_role(SERVICE_ROLES["pilot"]) as conn:
        _denied(conn, "DELETE FROM notes.ticketing_integrations WHERE account_id = :id", some_id)
        _denied(conn, "SELECT url, secret FROM notes.ticketing_integrations")
        _denied(conn, "UPDATE scripts.script_templates SET usage_count = 0 WHERE id = :id", some_id)
        # What it reads of scripts, it reads through the views; the draft goes through
        # exposed.file_template_draft.
        _denied(conn, "SELECT id FROM scripts.script_templates")
        _denied(conn, "SELECT id FROM scripts.script_categories")
        _denied(conn, "INSERT INTO scripts.script_template_versions DEFAULT VALUES")
        assert conn.execute(text("SELECT count(*) FROM exposed.scripts_templates")).scalar() == 0
        assert conn.execute(text("SELECT count(*) FROM exposed.scripts_categories")).scalar() == 0
    with as_role(SERVICE_ROLES["scripts"]) as conn:
        _denied(conn, "DELETE FROM pilot.ai_sessions WHERE id = :id", some_id)
        _denied(conn, "UPDATE pilot.ai_sessions SET title = 'x' WHERE id = :id", some_id)
        _denied(conn, "SELECT problem FROM pilot.ai_sessions")
        _denied(conn, "DELETE FROM notes.resolution_notes WHERE id = :id", some_id)


def test_every_function_is_declared_and_runs_as_its_owning_service(migrated: Settings) -> None:
    with db.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT p.proname, pg_get_userbyid(p.proowner), p.prosecdef, p.proconfig "
                "FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                "WHERE n.nspname = :schema"
            ),
            {"schema": EXPOSED},
        ).all()
    assert {row[0] for row in rows} == set(FUNCTIONS)
    for name, owner_role, definer, config in rows:
        owner, callers = FUNCTIONS[name]
        assert owner_role == SERVICE_ROLES[owner], name
        assert definer, name
        assert config == ["search_path=pg_catalog, pg_temp"], name
        callers_in_db = {
            service
            for service, role in SERVICE_ROLES.items()
            if role != owner_role
            and f"EXECUTE ON FUNCTION {EXPOSED}.{name}" in CROSS_SERVICE_PRIVILEGES[role]
        }
        assert callers_in_db == set(callers), name


def test_a_draft_is_filed_only_by_pilot_for_a_user_of_its_account(
    migrated: Settings, make_user: Any, category_id: uuid.UUID
) -> None:
    engineer = make_user("engineer")
    outsider = make_user("engineer")
    call = text(
        "SELECT exposed.file_template_draft(:category, :account, :user, 'Restart spooler',"
        " :slug, NULL, NULL, 'Restart-Service Spooler', '{}'::jsonb, ARRAY['from-fix'], NULL)"
    )
    values = {
        "category": category_id,
        "account": engineer.account_id,
        "user": engineer.id,
        "slug": f"restart-spooler-{uuid.uuid4().hex[:8]}",
    }
    with as_role(SERVICE_ROLES["notes"]) as conn:
        _denied(conn, call.text, values)
    with as_role(SERVICE_ROLES["pilot"]) as conn:
        # A user of another account cannot be named as the creator.
        _denied(conn, call.text, {**values, "user": outsider.id})
        template_id = conn.execute(call, values).scalar_one()
        conn.commit()
    with db.engine.connect() as conn:
        filed = conn.execute(
            text(
                "SELECT t.scope, t.account_id, t.created_by, t.status, t.category_id, v.version,"
                " v.script_body FROM scripts.script_templates t"
                " JOIN scripts.script_template_versions v ON v.template_id = t.id"
                " WHERE t.id = :id"
            ),
            {"id": template_id},
        ).one()
    assert tuple(filed) == (
        "personal",
        engineer.account_id,
        engineer.id,
        "draft",
        category_id,
        1,
        "Restart-Service Spooler",
    )


def test_connections_return_to_the_owner_after_a_service_request(migrated: Settings) -> None:
    with db.engine.connect() as conn:
        owner = conn.execute(text("SELECT current_user")).scalar_one()
    for role in SERVICE_ROLES.values():
        with as_role(role) as conn:
            assert conn.execute(text("SELECT current_user")).scalar_one() == role
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT current_user")).scalar_one() == owner
    assert owner not in SERVICE_ROLES.values()


@pytest.fixture
def scratch_database(settings: Settings) -> Iterator[str]:
    """A database of its own on the suite's server, beside the suite's (which keeps its grants
    to the same cluster-wide roles)."""
    admin = admin_database_url()
    name = f"rf_schemas_{uuid.uuid4().hex[:10]}"
    conn = psycopg2.connect(admin)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(admin).set(database=name).render_as_string(hide_password=False)
    finally:
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


def _tables_by_schema(url: str) -> dict[str, set[str]]:
    # NullPool: each look is a new connection, with the database's search_path of the moment.
    engine = create_engine(normalise_database_url(url), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            found = {
                schema: set(inspect(conn).get_table_names(schema=schema))
                for schema in ("public", *ALL_SCHEMAS)
            }
            found["unqualified accounts"] = {
                str(conn.execute(text("SELECT count(*) FROM accounts")).scalar_one())
            }
            return found
    finally:
        engine.dispose()


def _downgrade(url: str, revision: str) -> None:
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_ROOT / "shared" / "migrations"))
    config.attributes["database_url"] = url
    command.downgrade(config, revision)


def test_a_second_database_migrates_down_and_up_beside_the_first(
    migrated: Settings, scratch_database: str
) -> None:
    from app.cli import migrate

    scratch = settings_with(migrated, DATABASE_URL=scratch_database)
    # The roles exist already (the suite's database made them): created only when missing.
    migrate(scratch)
    at_head = _tables_by_schema(scratch_database)
    assert at_head["public"] == {"alembic_version"}
    assert at_head["pilot"] == {"ai_sessions", "session_facts", "chat_messages", "suggested_fixes"}
    assert at_head["unqualified accounts"] == {"0"}

    _downgrade(scratch_database, "20261202_kinds")
    below = _tables_by_schema(scratch_database)
    # Every table, back in public; those later migrations created are gone with them.
    later = {"worker_processes"}  # 20261202_liveness
    assert below["public"] == {"alembic_version"} | (
        {t.name for t in Base.metadata.sorted_tables} - later
    )
    assert all(not below[schema] for schema in ALL_SCHEMAS)
    assert below["unqualified accounts"] == {"0"}
    # The downgrade revoked the scratch database's grants only: the suite's are untouched.
    with db.engine.connect() as conn:
        for service, role in SERVICES:
            assert _privileges(conn, role, service) == CROSS_SERVICE_PRIVILEGES[role]

    migrate(scratch)
    assert _tables_by_schema(scratch_database) == at_head
