"""The LLM usage ledger over HTTP: an account's usage (owners), a session's usage (anyone who can
read the session), and the monthly budget (owners). Thin views over :mod:`shared.usage`."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from marshmallow import ValidationError, fields, validate, validates_schema

from services.pilot import sessions
from shared.api_schemas import StrictSchema
from shared.auth import current_principal
from shared.db import db
from shared.endpoints import ApiBlueprint, BearerView
from shared.errors import PermissionDenied
from shared.permissions import can_administer_account
from shared.usage import budget_status, month_start, set_budget, usage_report

usage_blp = ApiBlueprint(
    "usage", __name__, url_prefix="/api/v1/usage", description="LLM usage, cost and budget"
)
session_usage_blp = ApiBlueprint(
    "session_usage",
    __name__,
    url_prefix="/api/v1/ai-sessions",
    description="LLM usage of one session",
)

# Bounds a report to something one query answers quickly.
MAX_REPORT_DAYS = 366


class UsageQueryArgsSchema(StrictSchema):
    from_ = fields.Date(
        data_key="from", metadata={"description": "first UTC day (YYYY-MM-DD), inclusive"}
    )
    to = fields.Date(metadata={"description": "last UTC day (YYYY-MM-DD), inclusive"})

    @validates_schema
    def ordered(self, data: dict[str, Any], **_: object) -> None:
        start, end = data.get("from_"), data.get("to")
        if start and end:
            if end < start:
                raise ValidationError("must not be before 'from'", "to")
            if (end - start).days >= MAX_REPORT_DAYS:
                raise ValidationError(f"a report covers at most {MAX_REPORT_DAYS} days", "to")


class UsageFiguresSchema(StrictSchema):
    calls = fields.Integer(dump_only=True)
    input_tokens = fields.Integer(dump_only=True)
    output_tokens = fields.Integer(dump_only=True)
    cache_creation_input_tokens = fields.Integer(dump_only=True)
    cache_read_input_tokens = fields.Integer(dump_only=True)
    cost_usd = fields.Float(dump_only=True)
    notes_reused = fields.Integer(dump_only=True)


class UsageDaySchema(UsageFiguresSchema):
    day = fields.String(dump_only=True)


class UsagePurposeSchema(UsageFiguresSchema):
    purpose = fields.String(dump_only=True, metadata={"description": "chat, resolution_note, ..."})


class BudgetSchema(StrictSchema):
    month = fields.String(dump_only=True)
    monthly_budget_usd = fields.Float(dump_only=True, allow_none=True)
    spent_usd = fields.Float(dump_only=True)
    used_share = fields.Float(dump_only=True, allow_none=True)
    warning = fields.Boolean(dump_only=True, metadata={"description": "80 % or more spent"})
    exceeded = fields.Boolean(dump_only=True)


class UsageReportSchema(UsageFiguresSchema):
    from_ = fields.String(data_key="from", attribute="from", dump_only=True, allow_none=True)
    to = fields.String(dump_only=True, allow_none=True)
    by_day = fields.List(fields.Nested(UsageDaySchema), dump_only=True)
    by_purpose = fields.List(fields.Nested(UsagePurposeSchema), dump_only=True)
    budget = fields.Nested(BudgetSchema, dump_only=True)


class BudgetUpdateSchema(StrictSchema):
    monthly_budget_usd = fields.Decimal(
        required=True,
        allow_none=True,
        places=2,
        validate=validate.Range(min=Decimal("0"), max=Decimal("1000000")),
        metadata={"description": "USD per calendar month (UTC); null removes the budget"},
    )


def blueprints() -> list[ApiBlueprint]:
    return [usage_blp, session_usage_blp]


def _require_owner() -> None:
    if not can_administer_account(current_principal()):
        raise PermissionDenied("only the account's owners can see the account's usage")


@usage_blp.route("")
class UsageView(BearerView):
    @usage_blp.endpoint(200, UsageReportSchema, args=UsageQueryArgsSchema, location="query")
    def get(self, args: dict[str, Any]) -> Any:
        """The account's LLM usage and cost between `from` and `to` (UTC days, inclusive; the
        current month so far when both are absent), with by_day and by_purpose breakdowns and
        the budget status. Owners only."""
        _require_owner()
        principal = current_principal()
        start, end = args.get("from_"), args.get("to")
        if start is None and end is None:
            start = month_start()
            end = datetime.now(UTC).date()
        with db.transaction() as session:
            report = usage_report(session, account_id=principal.account_id, start=start, end=end)
            report["budget"] = budget_status(session, principal.account_id).body()
        return report


@usage_blp.route("/budget")
class BudgetView(BearerView):
    @usage_blp.endpoint(200, BudgetSchema, args=BudgetUpdateSchema)
    def put(self, data: dict[str, Any]) -> Any:
        """Set (or, with null, remove) the account's monthly LLM budget. Past it, notes come
        from the offline generator (flagged `budget_exceeded`) and chat answers 402. Owners."""
        _require_owner()
        principal = current_principal()
        with db.transaction() as session:
            set_budget(session, principal.account_id, data["monthly_budget_usd"])
            return budget_status(session, principal.account_id).body()


@session_usage_blp.route("/<uuid:session_id>/usage")
class SessionUsageView(BearerView):
    @session_usage_blp.endpoint(200, UsageReportSchema, args=UsageQueryArgsSchema, location="query")
    def get(self, args: dict[str, Any], session_id: uuid.UUID) -> Any:
        """The session's LLM usage and cost (all time unless `from` / `to` narrow it), for
        anyone who can read the session."""
        principal = current_principal()
        with db.session() as session:
            sessions.get_session(session, principal, session_id)
            return usage_report(
                session,
                account_id=principal.account_id,
                ai_session_id=session_id,
                start=args.get("from_"),
                end=args.get("to"),
            )
