"""The models and the migrations describe one schema: alembic's autogenerate comparison of the
models' metadata against the database the migrations built finds nothing to change."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from shared.config import Settings


def test_the_migrated_schema_matches_the_models(migrated: Settings) -> None:
    from shared.db import db
    from shared.models import Base

    with db.engine.connect() as conn:
        # Column types and server defaults too, not only tables, columns, indexes and keys.
        # Nothing is filtered: every object the models declare is comparable today. A generated
        # column or an expression index alembic cannot compare would be left out here by an
        # explicit `include_object`, with the reason beside it.
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        differences = compare_metadata(context, Base.metadata)
    assert differences == [], "\n".join(str(d) for d in differences)


def test_the_comparison_sees_a_model_the_migrations_lack(migrated: Settings) -> None:
    """The check above is not blind: a table only the models declare is reported."""
    from sqlalchemy import Column, Integer, MetaData, Table

    from shared.db import db
    from shared.models import Base

    extended = MetaData()
    for table in Base.metadata.tables.values():
        table.to_metadata(extended)
    Table("only_in_the_models", extended, Column("id", Integer, primary_key=True))
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        found = compare_metadata(context, extended)
    assert [(d[0], d[1].name) for d in found] == [("add_table", "only_in_the_models")]
