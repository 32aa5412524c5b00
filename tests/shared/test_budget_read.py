"""The worker's one-statement budget read answers as budget_status does (no budget, under it,
at the warning share, past it), and the month's warning is still claimed once."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from shared.db import db
from shared.models import Account, LLMUsageRecord
from shared.models.base import NOTES
from shared.models.exposed import SERVICE_ROLES
from shared.usage import budget_status, read_budget_status, set_budget

TODAY = date(2026, 5, 20)


def _spend(account_id: uuid.UUID, usd: str, at: datetime) -> None:
    with db.transaction() as session:
        session.add(
            LLMUsageRecord(
                account_id=account_id,
                purpose="resolution_note",
                generator="anthropic",
                model="claude-test",
                cost_usd=Decimal(usd),
                created_at=at,
            )
        )


@contextmanager
def _as_notes() -> Iterator[None]:
    # The worker reads as the notes service.
    previous = db.role
    db.run_as(SERVICE_ROLES[NOTES])
    try:
        yield
    finally:
        db.run_as(previous)


@pytest.mark.parametrize(
    ("budget", "exceeded", "warning"),
    [(None, False, False), ("100", False, False), ("10", False, True), ("7", True, True)],
)
def test_the_one_statement_read_is_budget_status(
    make_account: Any, budget: str | None, exceeded: bool, warning: bool
) -> None:
    account = make_account()
    _spend(account, "4.5", datetime(2026, 5, 2, tzinfo=UTC))
    _spend(account, "3.5", datetime(2026, 5, 19, 23, 59, tzinfo=UTC))
    _spend(account, "50", datetime(2026, 4, 30, 23, 59, tzinfo=UTC))  # last month
    if budget is not None:
        with db.transaction() as session:
            set_budget(session, account, Decimal(budget))
    with _as_notes():
        read = read_budget_status(account, TODAY)
    with db.transaction() as session:
        expected = budget_status(session, account, TODAY)
    assert read == expected
    assert read.exceeded is exceeded and read.warning is warning
    assert read.spent_usd == (Decimal("8.0") if budget is not None else Decimal(0))
    with db.session() as session:
        warned = session.get(Account, account)
        assert warned is not None
        assert warned.budget_warned_month == ("2026-05" if warning else None)


def test_an_unknown_account_has_no_budget(migrated: Any) -> None:
    with _as_notes():
        status = read_budget_status(uuid.uuid4(), TODAY)
    assert status.monthly_usd is None and status.spent_usd == 0 and not status.exceeded
