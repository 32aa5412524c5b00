"""The LLM usage ledger: writing it (one row per call, priced), reporting it, and the optional
per-account monthly budget.

Cost: each row's ``cost_usd`` is computed when it is written, from the price table of
:mod:`shared.llm_models` for the row's model on that day (input, cache writes by TTL, cache
reads, output, the batch discount), exactly (9 decimal places); reports sum the stored figures
and round only at the end, so a report is the sum of its rows to the cent.

Budget: ``accounts.monthly_budget_usd`` (USD per calendar month, UTC). Past it, note generations
use the offline generator (``fallback_reason = "budget_exceeded"``) and chat answers 402;
at 80 % owners get a warning (in the usage report, on chat answers, and once a month in the log).
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import Date, bindparam, case, cast, func, literal_column, select, update
from sqlalchemy.orm import Session

from shared.db import db, driver_sql
from shared.llm import LLMResult, LLMUsage
from shared.llm_models import CostInput, cost_usd
from shared.models import Account, LLMUsageRecord, NoteReuse
from shared.observability import get_logger

log = get_logger(__name__)

BUDGET_WARNING_SHARE = Decimal("0.8")
REPORT_FIELDS = (
    "calls",
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "cost_usd",
    "notes_reused",
)


def usage_cost(
    model: str, usage: LLMUsage, *, on: date | None = None, batch: bool = False
) -> Decimal:
    """The exact USD cost of one call's usage (see :func:`shared.llm_models.cost_usd`)."""
    return cost_usd(
        model,
        CostInput(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_creation_input_tokens=usage.cache_creation_input_tokens,
            cache_creation_1h_input_tokens=usage.cache_creation_1h_input_tokens,
            cache_read_input_tokens=usage.cache_read_input_tokens,
        ),
        on=on or datetime.now(UTC).date(),
        batch=batch,
    )


def record_usage(
    session: Session,
    *,
    account_id: uuid.UUID,
    ai_session_id: uuid.UUID | None,
    purpose: str,
    generator: str,
    model: str,
    usage: LLMUsage,
    latency_ms: int = 0,
    llm_calls: int = 1,
    state_version: int | None = None,
    batch: bool = False,
    fallback_reason: str | None = None,
    error: str | None = None,
    rejections: list[list[str]] | None = None,
) -> LLMUsageRecord:
    """One ledger row. ``rejections``: for each answer a validator rejected during this
    generation, the reasons it was rejected for."""
    record = LLMUsageRecord(
        account_id=account_id,
        ai_session_id=ai_session_id,
        purpose=purpose,
        generator=generator,
        model=model,
        state_version=state_version,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_creation_input_tokens=usage.cache_creation_input_tokens,
        cache_creation_1h_input_tokens=usage.cache_creation_1h_input_tokens,
        cache_read_input_tokens=usage.cache_read_input_tokens,
        latency_ms=latency_ms,
        llm_calls=llm_calls,
        cost_usd=usage_cost(model, usage, batch=batch) if llm_calls else Decimal(0),
        batch=batch,
        fallback_reason=fallback_reason,
        error=(error or None) and str(error)[:300],
        rejections=rejections or None,
    )
    session.add(record)
    return record


def record_call(
    session: Session,
    result: LLMResult,
    *,
    account_id: uuid.UUID,
    ai_session_id: uuid.UUID | None,
    purpose: str,
    state_version: int | None = None,
) -> LLMUsageRecord:
    """The ledger row of one completed LLM call: the generator, model, token usage and latency
    come from its result."""
    return record_usage(
        session,
        account_id=account_id,
        ai_session_id=ai_session_id,
        purpose=purpose,
        generator=result.generator,
        model=result.model,
        usage=result.usage,
        latency_ms=result.latency_ms,
        state_version=state_version,
    )


def record_reuse(
    session: Session,
    *,
    account_id: uuid.UUID,
    ai_session_id: uuid.UUID | None,
    purpose: str,
    state_version: int | None,
) -> None:
    """A note served by content-addressed reuse (no LLM call): counted as ``notes_reused``."""
    session.add(
        NoteReuse(
            account_id=account_id,
            ai_session_id=ai_session_id,
            purpose=purpose,
            state_version=state_version,
        )
    )


def llm_calls_for_session(session: Session, ai_session_id: uuid.UUID, purpose: str) -> int:
    return int(
        session.execute(
            select(func.coalesce(func.sum(LLMUsageRecord.llm_calls), 0)).where(
                LLMUsageRecord.ai_session_id == ai_session_id,
                LLMUsageRecord.purpose == purpose,
            )
        ).scalar_one()
    )


# ── Reports ─────────────────────────────────────────────────────────────────────────────────


def _round_usd(value: Decimal) -> float:
    return float(value.quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP))


def _empty() -> dict[str, Any]:
    return {name: (Decimal(0) if name == "cost_usd" else 0) for name in REPORT_FIELDS}


def _bounds(start: date | None, end: date | None) -> tuple[datetime | None, datetime | None]:
    lower = datetime.combine(start, time.min, tzinfo=UTC) if start else None
    upper = datetime.combine(end + timedelta(days=1), time.min, tzinfo=UTC) if end else None
    return lower, upper


def usage_report(
    session: Session,
    *,
    account_id: uuid.UUID,
    ai_session_id: uuid.UUID | None = None,
    start: date | None = None,
    end: date | None = None,
) -> dict[str, Any]:
    """Totals of the ledger for an account (or one of its sessions) between ``start`` and
    ``end`` (inclusive UTC days; open when None), and the same figures ``by_day`` and
    ``by_purpose``. ``cost_usd`` is rounded to 6 decimals once summed."""
    lower, upper = _bounds(start, end)
    day = cast(func.timezone("UTC", LLMUsageRecord.created_at), Date)
    where = [LLMUsageRecord.account_id == account_id]
    if ai_session_id is not None:
        where.append(LLMUsageRecord.ai_session_id == ai_session_id)
    if lower is not None:
        where.append(LLMUsageRecord.created_at >= lower)
    if upper is not None:
        where.append(LLMUsageRecord.created_at < upper)
    rows = session.execute(
        select(
            day.label("day"),
            LLMUsageRecord.purpose,
            func.coalesce(func.sum(LLMUsageRecord.llm_calls), 0),
            func.coalesce(func.sum(LLMUsageRecord.input_tokens), 0),
            func.coalesce(func.sum(LLMUsageRecord.output_tokens), 0),
            func.coalesce(func.sum(LLMUsageRecord.cache_creation_input_tokens), 0),
            func.coalesce(func.sum(LLMUsageRecord.cache_read_input_tokens), 0),
            func.coalesce(func.sum(LLMUsageRecord.cost_usd), 0),
        )
        .where(*where)
        .group_by(day, LLMUsageRecord.purpose)
    ).all()

    reuse_day = cast(func.timezone("UTC", NoteReuse.created_at), Date)
    reuse_where = [NoteReuse.account_id == account_id]
    if ai_session_id is not None:
        reuse_where.append(NoteReuse.ai_session_id == ai_session_id)
    if lower is not None:
        reuse_where.append(NoteReuse.created_at >= lower)
    if upper is not None:
        reuse_where.append(NoteReuse.created_at < upper)
    reuses = session.execute(
        select(reuse_day, NoteReuse.purpose, func.count())
        .where(*reuse_where)
        .group_by(reuse_day, NoteReuse.purpose)
    ).all()

    total = _empty()
    days: dict[date, dict[str, Any]] = {}
    purposes: dict[str, dict[str, Any]] = {}
    for row_day, purpose, calls, inp, out, write, read, cost in rows:
        figures = {
            "calls": int(calls),
            "input_tokens": int(inp),
            "output_tokens": int(out),
            "cache_creation_input_tokens": int(write),
            "cache_read_input_tokens": int(read),
            "cost_usd": Decimal(cost),
        }
        for bucket in (
            total,
            days.setdefault(row_day, _empty()),
            purposes.setdefault(purpose, _empty()),
        ):
            for name, value in figures.items():
                bucket[name] += value
    for row_day, purpose, count in reuses:
        for bucket in (
            total,
            days.setdefault(row_day, _empty()),
            purposes.setdefault(purpose, _empty()),
        ):
            bucket["notes_reused"] += int(count)

    def shaped(bucket: dict[str, Any]) -> dict[str, Any]:
        return {**bucket, "cost_usd": _round_usd(bucket["cost_usd"])}

    return {
        "from": start.isoformat() if start else None,
        "to": end.isoformat() if end else None,
        **shaped(total),
        "by_day": [{"day": d.isoformat(), **shaped(days[d])} for d in sorted(days)],
        "by_purpose": [{"purpose": p, **shaped(purposes[p])} for p in sorted(purposes)],
    }


# ── Budget ──────────────────────────────────────────────────────────────────────────────────


def month_start(today: date | None = None) -> date:
    today = today or datetime.now(UTC).date()
    return today.replace(day=1)


def month_spend(session: Session, account_id: uuid.UUID, today: date | None = None) -> Decimal:
    lower, _ = _bounds(month_start(today), None)
    assert lower is not None
    spent = session.execute(
        select(func.coalesce(func.sum(LLMUsageRecord.cost_usd), 0)).where(
            LLMUsageRecord.account_id == account_id, LLMUsageRecord.created_at >= lower
        )
    ).scalar_one()
    return Decimal(spent)


@dataclass(frozen=True)
class BudgetStatus:
    monthly_usd: Decimal | None
    spent_usd: Decimal
    month: str  # "2026-12"

    @property
    def exceeded(self) -> bool:
        return self.monthly_usd is not None and self.spent_usd >= self.monthly_usd

    @property
    def warning(self) -> bool:
        """At or past 80 % of the budget."""
        return (
            self.monthly_usd is not None
            and self.monthly_usd > 0
            and self.spent_usd >= self.monthly_usd * BUDGET_WARNING_SHARE
        ) or self.exceeded

    def body(self) -> dict[str, Any]:
        share = (
            float((self.spent_usd / self.monthly_usd).quantize(Decimal("0.0001")))
            if self.monthly_usd
            else None
        )
        return {
            "month": self.month,
            "monthly_budget_usd": float(self.monthly_usd) if self.monthly_usd is not None else None,
            "spent_usd": _round_usd(self.spent_usd),
            "used_share": share,
            "warning": self.warning,
            "exceeded": self.exceeded,
        }


def budget_status(
    session: Session, account_id: uuid.UUID, today: date | None = None
) -> BudgetStatus:
    today = today or datetime.now(UTC).date()
    budget = session.execute(
        select(Account.monthly_budget_usd).where(Account.id == account_id)
    ).scalar_one_or_none()
    spent = month_spend(session, account_id, today) if budget is not None else Decimal(0)
    status = BudgetStatus(
        monthly_usd=Decimal(budget) if budget is not None else None,
        spent_usd=spent,
        month=today.strftime("%Y-%m"),
    )
    if status.warning:
        _warn_once(session, account_id, status)
    return status


@functools.cache
def _budget_sql() -> str:
    """budget_status's reads in ONE statement, compiled once (`%(account_id)s`, `%(lower)s`):
    the account's budget and, only when it has one, the month's spend."""
    spend = (
        select(func.coalesce(func.sum(LLMUsageRecord.cost_usd), literal_column("0")))
        .where(
            LLMUsageRecord.account_id == bindparam("account_id"),
            LLMUsageRecord.created_at >= bindparam("lower"),
        )
        .scalar_subquery()
    )
    statement = select(
        Account.monthly_budget_usd,
        case((Account.monthly_budget_usd.is_(None), literal_column("0")), else_=spend).label(
            "spent"
        ),
    ).where(Account.id == bindparam("account_id"))
    return driver_sql(statement)


def read_budget_status(account_id: uuid.UUID, today: date | None = None) -> BudgetStatus:
    """:func:`budget_status` outside any transaction: its reads are one statement on the
    autocommit engine (one round trip), and only an account at or past its warning share
    opens a transaction, for the once-a-month warning. What a worker asks before each
    generation."""
    today = today or datetime.now(UTC).date()
    lower, _ = _bounds(month_start(today), None)
    row = db.read_row_sql(_budget_sql(), {"account_id": account_id, "lower": lower})
    budget = row.monthly_budget_usd if row is not None else None
    status = BudgetStatus(
        monthly_usd=Decimal(budget) if budget is not None else None,
        spent_usd=Decimal(row.spent) if row is not None and budget is not None else Decimal(0),
        month=today.strftime("%Y-%m"),
    )
    if status.warning:
        with db.transaction() as session:
            _warn_once(session, account_id, status)
    return status


def _warn_once(session: Session, account_id: uuid.UUID, status: BudgetStatus) -> None:
    # One atomic UPDATE: of concurrent callers, exactly one logs the month's warning.
    claimed = session.execute(
        update(Account)
        .where(
            Account.id == account_id,
            (Account.budget_warned_month.is_(None)) | (Account.budget_warned_month != status.month),
        )
        .values(budget_warned_month=status.month)
        .returning(Account.id)
    ).first()
    if claimed is not None:
        log.warning(
            "llm budget warning",
            account_id=str(account_id),
            month=status.month,
            spent_usd=_round_usd(status.spent_usd),
            monthly_budget_usd=float(status.monthly_usd or 0),
        )


def set_budget(session: Session, account_id: uuid.UUID, monthly_usd: Decimal | None) -> None:
    session.execute(
        update(Account)
        .where(Account.id == account_id)
        .values(monthly_budget_usd=monthly_usd, budget_warned_month=None)
    )
