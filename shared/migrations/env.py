"""Alembic environment: the URL comes from the caller (the CLI) or from the settings."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from shared.db import normalise_database_url
from shared.models import Base

config = context.config
target_metadata = Base.metadata


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
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(normalise_database_url(_database_url()), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
