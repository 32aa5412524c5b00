"""The models and the migrations describe one schema: alembic's autogenerate comparison of the
models' metadata against the database the migrations built finds nothing to change."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, MetaData, create_engine, pool

from shared.config import Settings
from shared.models.base import ALL_SCHEMAS, EXPOSED

# As shared/migrations/env.py compares: each service's schema (the version table stays in
# `public`); the read-only views of `exposed` belong to the migrations that define them.
COMPARED_SCHEMAS = frozenset(schema for schema in ALL_SCHEMAS if schema != EXPOSED)


def _include_name(name: str | None, type_: str, _parent: object) -> bool:
    if type_ == "schema":
        return name in COMPARED_SCHEMAS
    return True


@contextmanager
def _migration_connection() -> Iterator[Connection]:
    """A connection as the migrations get one: only `public` on the search_path, so PostgreSQL
    spells the schema of every foreign key's target and the comparison is like with like."""
    from shared.db import db

    engine = create_engine(
        db.engine.url, poolclass=pool.NullPool, connect_args={"options": "-c search_path=public"}
    )
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def _compare(conn: Connection, metadata: MetaData, **opts: Any) -> list[Any]:
    context = MigrationContext.configure(
        conn, opts={"include_schemas": True, "include_name": _include_name, **opts}
    )
    return list(compare_metadata(context, metadata))


def test_the_migrated_schema_matches_the_models(migrated: Settings) -> None:
    from shared.models import Base

    with _migration_connection() as conn:
        # Column types and server defaults too, not only tables, columns, indexes and keys.
        # Nothing is filtered: every object the models declare is comparable today. A generated
        # column or an expression index alembic cannot compare would be left out here by an
        # explicit `include_object`, with the reason beside it.
        differences = _compare(conn, Base.metadata, compare_type=True, compare_server_default=True)
    assert differences == [], "\n".join(str(d) for d in differences)


def test_the_comparison_sees_a_model_the_migrations_lack(migrated: Settings) -> None:
    """The check above is not blind: a table only the models declare is reported."""
    from sqlalchemy import Column, Integer, Table

    from shared.models import Base

    extended = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.tables.values():
        table.to_metadata(extended)
    Table("only_in_the_models", extended, Column("id", Integer, primary_key=True), schema="core")
    with _migration_connection() as conn:
        found = _compare(conn, extended, compare_type=True)
    assert [(d[0], d[1].name) for d in found] == [("add_table", "only_in_the_models")]
