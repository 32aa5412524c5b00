"""The authenticated caller as a plain value, usable by domain code without Flask."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Protocol


class UserColumns(Protocol):
    """What a principal is read from: a `User`, or a row of `shared.auth.principal_select`."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def account_id(self) -> uuid.UUID: ...
    @property
    def team_id(self) -> uuid.UUID | None: ...
    @property
    def account_role(self) -> str: ...
    @property
    def is_super_admin(self) -> bool: ...
    @property
    def email(self) -> str: ...


@dataclass(frozen=True)
class Principal:
    id: uuid.UUID
    account_id: uuid.UUID
    team_id: uuid.UUID | None
    role: str
    is_super_admin: bool
    email: str

    @property
    def is_owner(self) -> bool:
        return self.role == "owner"

    @classmethod
    def from_user(cls, user: UserColumns) -> Principal:
        return cls(
            id=user.id,
            account_id=user.account_id,
            team_id=user.team_id,
            role=user.account_role,
            is_super_admin=user.is_super_admin,
            email=user.email,
        )
