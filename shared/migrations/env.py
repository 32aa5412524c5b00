"""Alembic environment: the URL comes from the caller (the CLI) or from the settings."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from shared.db import normalise_database_url
from shared.models import Base
from shared.models.base import ALL_SCHEMAS, EXPOSED

config = context.config
target_metadata = Base.metadata
# The models name their schema; autogenerate compares those schemas (the version table stays in
# `public`), and leaves the read-only views of `exposed` to the migrations that define them.
COMPARED_SCHEMAS = frozenset(schema for schema in ALL_SCHEMAS if schema != EXPOSED)


def _include_name(name: str | None, type_: str, _parent: object) -> bool:
    if type_ == "schema":
        return name in COMPARED_SCHEMAS
    return True


def _database_url() -> str:
    url = config.attributes.get("database_url")
    if url:
        return str(url)
    from shared import runtime

    settings = runtime.configure()
    assert settings.DATABASE_URL is not None
    return settings.DATABASE_URL


def run_migrations_offline() -> None:
    context.configure(
        url=normalise_database_url(_database_url()),
        target_metadata=target_metadata,
        literal_binds=True,
        compare_type=True,
        include_schemas=True,
        include_name=_include_name,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    # Migrations name their schemas. With only `public` on the path (from the connection's
    # start, so SQLAlchemy takes `public` for the default schema), PostgreSQL spells the schema
    # of every foreign key's target and autogenerate compares like with like; and an
    # unqualified name in a new migration fails instead of landing in the wrong schema.
    engine = create_engine(
        normalise_database_url(_database_url()),
        poolclass=pool.NullPool,
        connect_args={"options": "-c search_path=public"},
    )
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            compare_type=True,
            include_schemas=True,
            include_name=_include_name,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
