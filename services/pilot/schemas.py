"""Request and response schemas of the FlowPilot sessions API."""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields, validate, validates_schema

from shared.api_schemas import (
    IgnoringQuerySchema,
    OptionalTrimmedString,
    StrictSchema,
    TrimmedString,
    page_fields,
)
from shared.models import FACT_KINDS, FIX_DECISIONS, SESSION_STATUSES
from shared.powershell_check import check_script

FACT_TEXT_MAX = 4000
MESSAGE_MAX = 20000
PROBLEM_MAX = 20000


def _at_least_one(data: dict[str, Any], names: tuple[str, ...]) -> None:
    if not any(name in data for name in names):
        raise ValidationError(f"provide at least one of: {', '.join(names)}", "_schema")


# ── Sessions ──────────────────────────────────────────────────────────────


class SessionCreateSchema(StrictSchema):
    title = TrimmedString(required=True, validate=validate.Length(min=1, max=300))
    ticket_ref = OptionalTrimmedString(allow_none=True, validate=validate.Length(max=200))
    problem = TrimmedString(allow_none=True, validate=validate.Length(max=PROBLEM_MAX))


class SessionUpdateSchema(StrictSchema):
    title = TrimmedString(validate=validate.Length(min=1, max=300))
    ticket_ref = OptionalTrimmedString(allow_none=True, validate=validate.Length(max=200))
    problem = OptionalTrimmedString(
        allow_none=True,
        validate=validate.Length(max=PROBLEM_MAX),
        metadata={"description": "the ticket's problem statement (blank or null clears it)"},
    )

    @validates_schema
    def not_empty(self, data: dict[str, Any], **_: object) -> None:
        _at_least_one(data, ("title", "ticket_ref", "problem"))


class SessionQueryArgsSchema(StrictSchema):
    """Unknown query parameters are a 422 naming them (marshmallow's default RAISE), so a typo
    such as `?stauts=active` is never silently ignored."""

    search = TrimmedString(
        validate=validate.Length(max=200),
        metadata={"description": "case-insensitive text in the title, ticket ref or problem"},
    )
    ticket_ref = TrimmedString(
        validate=validate.Length(min=1, max=200),
        metadata={"description": "exactly this ticket reference (case-insensitive)"},
    )
    status = fields.String(validate=validate.OneOf(SESSION_STATUSES))
    limit, offset = page_fields(50, 200)


class SessionResponseSchema(StrictSchema):
    id = fields.UUID(dump_only=True)
    title = fields.String()
    ticket_ref = fields.String(allow_none=True)
    problem = fields.String(allow_none=True)
    status = fields.String(metadata={"enum": list(SESSION_STATUSES)})
    state_version = fields.Integer(
        metadata={"description": "grows by exactly one with every write to the session"}
    )
    created_by = fields.UUID(allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    resolved_at = fields.DateTime(allow_none=True)
    resolved_by = fields.UUID(allow_none=True)
    resolved_version = fields.Integer(allow_none=True)


class ResolveRequestSchema(StrictSchema):
    ticket_ref = OptionalTrimmedString(allow_none=True, validate=validate.Length(max=200))
    resolution = OptionalTrimmedString(
        allow_none=True,
        validate=validate.Length(max=FACT_TEXT_MAX),
        metadata={"description": "what fixed it: recorded as a `resolution` fact in this write"},
    )
    force = fields.Boolean(
        load_default=False,
        metadata={
            "description": "resolve even though nothing says what fixed it (the note then "
            "says that no resolution was recorded)"
        },
    )


class ResolveResponseSchema(StrictSchema):
    id = fields.UUID()
    status = fields.String()
    state_version = fields.Integer()
    resolved_version = fields.Integer(
        metadata={"description": "the state_version being resolved (the note's version)"}
    )
    ticket_ref = fields.String(allow_none=True)


# ── Facts ─────────────────────────────────────────────────────────────────


class FactCreateSchema(StrictSchema):
    text = TrimmedString(required=True, validate=validate.Length(min=1, max=FACT_TEXT_MAX))
    kind = fields.String(load_default="observation", validate=validate.OneOf(FACT_KINDS))


class FactUpdateSchema(StrictSchema):
    text = TrimmedString(validate=validate.Length(min=1, max=FACT_TEXT_MAX))
    kind = fields.String(validate=validate.OneOf(FACT_KINDS))

    @validates_schema
    def not_empty(self, data: dict[str, Any], **_: object) -> None:
        _at_least_one(data, ("text", "kind"))


class FactSchema(StrictSchema):
    id = fields.UUID(dump_only=True)
    session_id = fields.UUID()
    text = fields.String()
    kind = fields.String(metadata={"enum": list(FACT_KINDS)})
    source = fields.String()
    created_by = fields.UUID(allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class FactWriteResponseSchema(FactSchema):
    state_version = fields.Integer()


class FactDeleteResponseSchema(StrictSchema):
    id = fields.UUID()
    deleted = fields.Boolean()
    state_version = fields.Integer()


# ── Chat ──────────────────────────────────────────────────────────────────


class MessageCreateSchema(StrictSchema):
    content = TrimmedString(required=True, validate=validate.Length(min=1, max=MESSAGE_MAX))


class MessageQueryArgsSchema(IgnoringQuerySchema):
    limit, offset = page_fields(200, 1000)


class ChatMessageSchema(StrictSchema):
    id = fields.UUID()
    session_id = fields.UUID()
    role = fields.String(metadata={"enum": ["user", "assistant"]})
    content = fields.String()
    generator = fields.String(allow_none=True)
    model = fields.String(allow_none=True)
    created_by = fields.UUID(allow_none=True)
    created_at = fields.DateTime()


class SuggestedFixSchema(StrictSchema):
    id = fields.UUID()
    session_id = fields.UUID()
    source_message_id = fields.UUID(allow_none=True)
    title = fields.String()
    summary = fields.String(allow_none=True)
    steps = fields.List(fields.String())
    script = fields.String(allow_none=True)
    script_findings = fields.Method(
        "get_script_findings",
        metadata={
            "description": "the static check of the AI-written script (rule, severity, line, "
            "why): shown on the fix card beside Copy"
        },
    )
    script_origin = fields.Method(
        "get_script_origin",
        metadata={
            "description": "'ai' when the fix carries a script the assistant wrote: it is not a "
            "library template and has none of the library's injection-safety guarantee"
        },
    )
    template_id = fields.UUID(allow_none=True)
    confidence = fields.Integer(allow_none=True)
    active = fields.Method("get_active", metadata={"description": "not superseded"})
    superseded_at = fields.DateTime(allow_none=True)
    decision = fields.String(allow_none=True, metadata={"enum": list(FIX_DECISIONS)})
    decided_by = fields.UUID(allow_none=True)
    decided_at = fields.DateTime(allow_none=True)
    decision_history = fields.List(
        fields.Dict(),
        metadata={"description": "every decision recorded on the fix, oldest first"},
    )
    created_at = fields.DateTime()

    @staticmethod
    def _script(fix: Any) -> str | None:
        script = fix.get("script") if isinstance(fix, dict) else getattr(fix, "script", None)
        return script if isinstance(script, str) and script.strip() else None

    def get_script_findings(self, fix: Any) -> list[dict[str, Any]]:
        script = self._script(fix)
        return [f.as_dict() for f in check_script(script)] if script else []

    def get_script_origin(self, fix: Any) -> str | None:
        return "ai" if self._script(fix) else None

    def get_active(self, fix: Any) -> bool:
        if isinstance(fix, dict):
            return fix.get("superseded_at") is None
        return getattr(fix, "superseded_at", None) is None


class ChatTurnResponseSchema(StrictSchema):
    user_message = fields.Nested(ChatMessageSchema)
    assistant_message = fields.Nested(ChatMessageSchema)
    suggested_fix = fields.Nested(SuggestedFixSchema, allow_none=True)
    state_version = fields.Integer()
    generator = fields.String(metadata={"description": "anthropic, or offline"})
    model = fields.String()


class ChatUnavailableSchema(StrictSchema):
    code = fields.Integer()
    status = fields.String()
    message = fields.String()
    reason = fields.String()
    retryable = fields.Boolean()
    user_message = fields.Nested(ChatMessageSchema)
    state_version = fields.Integer(metadata={"description": "after storing the user's message"})


# ── Suggested fixes ───────────────────────────────────────────────────────


class DecisionRequestSchema(StrictSchema):
    decision = fields.String(required=True, validate=validate.OneOf(FIX_DECISIONS))


class DraftTemplateSchema(StrictSchema):
    template_id = fields.UUID()
    status = fields.String(metadata={"enum": ["draft", "published"]})
    name = fields.String()
    slug = fields.String()
    parameters = fields.List(
        fields.Dict(),
        metadata={"description": "the literals lifted from the fix's script, with their defaults"},
    )
    script_findings = fields.List(fields.Dict())
    generator = fields.String(
        metadata={
            "description": "what chose the parameters: anthropic (the LLM's checked proposal), "
            "offline (the syntax-tree lifter, no API key) or offline-fallback (the LLM could "
            "not be used)"
        }
    )
    parameter_sources = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        metadata={"description": "per parameter key: llm or lifter"},
    )
    rejected_proposals = fields.List(
        fields.Dict(),
        metadata={
            "description": "each LLM proposal that failed the checks ({literal, reason}); its "
            "literal kept the deterministic lift"
        },
    )


class DecisionResponseSchema(SuggestedFixSchema):
    state_version = fields.Integer()
    draft_template = fields.Nested(
        DraftTemplateSchema,
        allow_none=True,
        metadata={
            "description": "draft_template / build_template on a fix with a script: the draft "
            "made from it (personal, hidden from the library until published)"
        },
    )


# ── Similar past sessions ─────────────────────────────────────────────────


class SimilarQueryArgsSchema(StrictSchema):
    """Unknown query parameters are a 422 naming them."""

    limit = fields.Integer(load_default=5, validate=validate.Range(min=1, max=5))


class TemplateUsedSchema(StrictSchema):
    template_id = fields.UUID()
    name = fields.String()


class SimilarSessionSchema(StrictSchema):
    session_id = fields.UUID()
    title = fields.String()
    ticket_ref = fields.String(allow_none=True)
    resolved_at = fields.DateTime(allow_none=True)
    score = fields.Float(
        metadata={"description": "full-text rank plus trigram similarity; higher is closer"}
    )
    root_cause = fields.List(fields.String(), metadata={"description": "root_cause facts"})
    resolution = fields.List(
        fields.String(),
        metadata={"description": "resolution facts, else the title of the fix carried out"},
    )
    templates_used = fields.List(fields.Nested(TemplateUsedSchema))
