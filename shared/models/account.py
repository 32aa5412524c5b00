"""Accounts (tenants), their teams and users."""

from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Numeric,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from shared.models.base import CORE, Base, Timestamps, UUIDPrimaryKey

ACCOUNT_ROLES = ("owner", "engineer", "viewer")


class Account(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "accounts"
    __table_args__ = {"schema": CORE}

    name: Mapped[str] = mapped_column(String(200))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, server_default="true")
    # How sensitive script parameters reach a script when neither the call nor the template
    # says (inline, env or prompt; unset means inline).
    default_secret_delivery: Mapped[str | None] = mapped_column(String(10))
    # Optional monthly LLM budget (USD, calendar month, UTC); past it the offline generator
    # answers. The month ("2026-12") whose 80 % warning was already sent.
    monthly_budget_usd: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))
    budget_warned_month: Mapped[str | None] = mapped_column(String(7))


class Team(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "teams"
    __table_args__ = (
        UniqueConstraint("account_id", "name", name="uq_teams_account_name"),
        {"schema": CORE},
    )

    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("core.accounts.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))


class User(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(
            "account_role IN ('owner', 'engineer', 'viewer')", name="account_role_valid"
        ),
        Index("uq_users_email_lower", text("lower(email)"), unique=True),
        {"schema": CORE},
    )

    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("core.accounts.id", ondelete="CASCADE"), index=True
    )
    team_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("core.teams.id", ondelete="SET NULL"), index=True
    )
    email: Mapped[str] = mapped_column(String(320))
    password_hash: Mapped[str | None] = mapped_column(String(256))
    account_role: Mapped[str] = mapped_column(String(20), default="engineer")
    is_super_admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, server_default="true")
