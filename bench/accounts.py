"""The account and owner every bench that fills its own tables starts from."""

from __future__ import annotations

import uuid
from typing import Any

from shared.config import Settings


def bench_owner(settings: Settings, account_name: str) -> tuple[uuid.UUID, dict[str, Any]]:
    """A new account named `account_name` and its owner (the CLI's user record, with a token)."""
    from app.cli import create_account, create_user

    account = uuid.UUID(create_account(account_name)["id"])
    user = create_user(
        settings,
        account=str(account),
        email=f"bench-{uuid.uuid4().hex[:6]}@b.test",
        role="owner",
        team="Bench",
        super_admin=False,
        password=None,
    )
    return account, user
