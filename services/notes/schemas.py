"""Request and response schemas of the notes API."""

from __future__ import annotations

from marshmallow import EXCLUDE, Schema, fields, validate

from services.notes.generator import NOTE_KINDS

MAX_PREVIEW_WAIT_S = 120.0


class StrictSchema(Schema):
    class Meta:
        ordered = True


class NoteKindArgsSchema(StrictSchema):
    class Meta:
        unknown = EXCLUDE

    kind = fields.String(load_default=NOTE_KINDS[0], validate=validate.OneOf(NOTE_KINDS))


class PreviewQueryArgsSchema(NoteKindArgsSchema):
    wait = fields.Float(
        validate=validate.Range(min=0, max=MAX_PREVIEW_WAIT_S),
        metadata={
            "description": "Seconds to wait for a generation before answering 202 "
            "(default NOTES_PREVIEW_WAIT_S, 30; 0 answers at once)"
        },
    )


class PreviewResponseSchema(StrictSchema):
    kind = fields.String(dump_only=True)
    session_id = fields.UUID(dump_only=True)
    state_version = fields.Integer(dump_only=True)
    markdown = fields.String(dump_only=True)
    from_cache = fields.Boolean(
        dump_only=True, metadata={"description": "True when this request started no generation"}
    )
    generator = fields.String(dump_only=True)
    model = fields.String(dump_only=True)
    generated_at = fields.String(dump_only=True)
    ticket_ref = fields.String(dump_only=True, allow_none=True)
    fallback_reason = fields.String(
        dump_only=True,
        allow_none=True,
        metadata={
            "description": "why the offline generator wrote this note although an LLM is "
            "configured: permanent_error, llm_unavailable (final note) or budget_exceeded"
        },
    )


class PreviewPendingSchema(StrictSchema):
    status = fields.String(dump_only=True, metadata={"description": '"pending"'})
    kind = fields.String(dump_only=True)
    session_id = fields.UUID(dump_only=True)
    state_version = fields.Integer(dump_only=True)
    retry_after = fields.Integer(dump_only=True)


class DeliveryAttemptSchema(StrictSchema):
    attempt_number = fields.Integer(dump_only=True)
    outcome = fields.String(dump_only=True)
    status_code = fields.Integer(dump_only=True, allow_none=True)
    error = fields.String(dump_only=True, allow_none=True)
    duration_ms = fields.Integer(dump_only=True)
    created_at = fields.DateTime(dump_only=True)


class FinalNoteResponseSchema(StrictSchema):
    id = fields.UUID(dump_only=True)
    kind = fields.String(dump_only=True)
    session_id = fields.UUID(dump_only=True)
    state_version = fields.Integer(dump_only=True)
    ticket_ref = fields.String(dump_only=True, allow_none=True)
    status = fields.String(
        dump_only=True, metadata={"description": '"generating" until the markdown is stored'}
    )
    markdown = fields.String(dump_only=True, allow_none=True)
    generator = fields.String(dump_only=True, allow_none=True)
    model = fields.String(dump_only=True, allow_none=True)
    generated_at = fields.DateTime(dump_only=True, allow_none=True)
    delivery_status = fields.String(dump_only=True)
    attempts = fields.Integer(dump_only=True)
    last_error = fields.String(dump_only=True, allow_none=True)
    delivered_at = fields.DateTime(dump_only=True, allow_none=True)
    next_attempt_at = fields.DateTime(dump_only=True, allow_none=True)
    delivery_attempts = fields.List(fields.Nested(DeliveryAttemptSchema), dump_only=True)


class RedeliverResponseSchema(StrictSchema):
    note_id = fields.UUID(dump_only=True)
    delivery_status = fields.String(dump_only=True)


class TicketingUpdateSchema(StrictSchema):
    url = fields.String(required=True, validate=validate.Length(min=1, max=2000))
    secret = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(min=10, max=200),
        metadata={"description": "whsec_<base64>; generated when absent"},
    )


class TicketingResponseSchema(StrictSchema):
    url = fields.String(dump_only=True)
    status = fields.String(dump_only=True)
    disabled_reason = fields.String(dump_only=True, allow_none=True)
    updated_at = fields.DateTime(dump_only=True)


class TicketingCreatedSchema(StrictSchema):
    url = fields.String(dump_only=True)
    status = fields.String(dump_only=True)
    secret = fields.String(
        dump_only=True, metadata={"description": "The signing secret: shown in this response only"}
    )
    secret_generated = fields.Boolean(dump_only=True)
