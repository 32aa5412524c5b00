"""Declarative base and the columns every table shares."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, MetaData, func
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Each service owns one PostgreSQL schema; `core` holds what shared/ writes for all of them
# (tenants and their users, the outbox, the LLM usage ledger). What a service reads of another
# service's schema goes through the read-only views of `exposed` (shared.models.exposed).
CORE = "core"
SCRIPTS = "scripts"
PILOT = "pilot"
NOTES = "notes"
EXPOSED = "exposed"
SERVICE_SCHEMAS = (SCRIPTS, PILOT, NOTES)
ALL_SCHEMAS = (CORE, *SERVICE_SCHEMAS, EXPOSED)

# Stable constraint names so alembic migrations can refer to them. (Index names are spelled
# from the table's name, not `column_0_label`, which would prefix the schema.)
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        dict[str, Any]: JSONB,
        uuid.UUID: UUID(as_uuid=True),
        datetime: DateTime(timezone=True),
    }


class UUIDPrimaryKey:
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)


class Timestamps:
    created_at: Mapped[datetime] = mapped_column(
        default=utcnow, server_default=func.now(), nullable=False
    )
    updated_at: Mapped[datetime] = mapped_column(
        default=utcnow, server_default=func.now(), onupdate=utcnow, nullable=False
    )
