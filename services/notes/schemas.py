"""Request and response schemas of the notes API."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marshmallow import fields, validate

from services.notes.adapters import KINDS
from services.notes.kinds import preview_kinds
from services.notes.preview_body import citation_body
from services.notes.vocabulary import NOTE_KINDS
from shared.api_schemas import IgnoringQuerySchema, StrictSchema

MAX_PREVIEW_WAIT_S = 120.0


class NoteKindArgsSchema(IgnoringQuerySchema):
    kind = fields.String(load_default=NOTE_KINDS[0], validate=validate.OneOf(NOTE_KINDS))


class PreviewQueryArgsSchema(NoteKindArgsSchema):
    kind = fields.String(
        load_default=NOTE_KINDS[0],
        validate=validate.OneOf(preview_kinds()),
        metadata={
            "description": "resolution_note (default); kb_article: an internal knowledge-base "
            "article of a resolved session, customer details generalised; escalation: a "
            "handoff of an active session to the next tier"
        },
    )
    wait = fields.Float(
        validate=validate.Range(min=0, max=MAX_PREVIEW_WAIT_S),
        metadata={
            "description": "Seconds to wait for a generation before answering 202 "
            "(default NOTES_PREVIEW_WAIT_S, 30; 0 answers at once)"
        },
    )


def plain_preview_args(data: Mapping[str, Any]) -> dict[str, Any] | None:
    """What PreviewQueryArgsSchema loads from `data` (the query's first values), when it
    loads without an error; None for anything else. The console polls this query at every
    edit, and the lane that answers a ready poll in front of Flask
    (services.notes.preview_lane) loads it here instead of through webargs and marshmallow (a
    test holds the two to the same answers)."""
    kind = data.get("kind")
    if kind is None:
        kind = NOTE_KINDS[0]
    if not isinstance(kind, str) or kind not in preview_kinds():
        return None
    args: dict[str, Any] = {"kind": kind}
    raw_wait = data.get("wait")
    if raw_wait is None:
        return args
    if not isinstance(raw_wait, str):
        return None
    try:
        wait = float(raw_wait)
    except ValueError:
        return None
    if not 0 <= wait <= MAX_PREVIEW_WAIT_S:  # NaN fails both comparisons
        return None
    args["wait"] = wait
    return args


class CitationSchema(StrictSchema):
    section = fields.String(dump_only=True)
    text = fields.String(dump_only=True, metadata={"description": "one sentence, bullet or step"})
    cites = fields.List(
        fields.String(),
        dump_only=True,
        metadata={"description": "ids it rests on: facts F1.., script runs S1.., the fix X1"},
    )
    fact_ids = fields.List(fields.UUID(), dump_only=True)


class PreviewResponseSchema(StrictSchema):
    kind = fields.String(dump_only=True)
    session_id = fields.UUID(dump_only=True)
    state_version = fields.Integer(dump_only=True)
    markdown = fields.String(dump_only=True)
    citations = fields.List(fields.Nested(CitationSchema), dump_only=True)
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


# The response's fields, in the schema's order (preview_response_body follows the schema).
_PREVIEW_FIELDS = tuple(PreviewResponseSchema._declared_fields)


def preview_response_body(body: dict[str, Any]) -> dict[str, Any]:
    """A ready preview's body as PreviewResponseSchema dumps it, without marshmallow: the
    schema's fields in its order, citations with CitationSchema's fields only, uuids as
    strings. The hot path's serialisation; tests hold it equal to the schema's dump."""
    shaped = {name: body.get(name) for name in _PREVIEW_FIELDS if name in body}
    if "session_id" in shaped and shaped["session_id"] is not None:
        shaped["session_id"] = str(shaped["session_id"])
    citations = shaped.get("citations")
    if citations is not None:
        shaped["citations"] = [citation_body(item) for item in citations]
    return shaped


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
    error = fields.String(
        dump_only=True,
        allow_none=True,
        metadata={"description": "Why the attempt failed, in our words (owners only)"},
    )
    detail = fields.String(
        dump_only=True,
        allow_none=True,
        metadata={"description": "A sanitised excerpt of the answer (owners only)"},
    )
    kind = fields.String(dump_only=True, allow_none=True)
    request_id = fields.String(
        dump_only=True,
        allow_none=True,
        metadata={"description": "The target's own id of the request, when it gives one"},
    )
    duration_ms = fields.Integer(dump_only=True)
    created_at = fields.DateTime(dump_only=True)


class DeliveredToSchema(StrictSchema):
    kind = fields.String(dump_only=True)
    label = fields.String(dump_only=True)
    ticket = fields.String(dump_only=True, allow_none=True)
    ref = fields.String(
        dump_only=True, allow_none=True, metadata={"description": "The target's id of the note"}
    )
    link = fields.String(dump_only=True, allow_none=True)


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
    citations = fields.List(fields.Nested(CitationSchema), dump_only=True, allow_none=True)
    generator = fields.String(dump_only=True, allow_none=True)
    model = fields.String(dump_only=True, allow_none=True)
    generated_at = fields.DateTime(dump_only=True, allow_none=True)
    delivery_status = fields.String(dump_only=True)
    attempts = fields.Integer(dump_only=True)
    last_error = fields.String(dump_only=True, allow_none=True)
    last_error_detail = fields.String(dump_only=True, allow_none=True)
    delivered_at = fields.DateTime(dump_only=True, allow_none=True)
    next_attempt_at = fields.DateTime(dump_only=True, allow_none=True)
    delivered_to = fields.Nested(
        DeliveredToSchema,
        dump_only=True,
        allow_none=True,
        metadata={"description": "Where the note landed (delivered notes only)"},
    )
    delivery_attempts = fields.List(fields.Nested(DeliveryAttemptSchema), dump_only=True)


class RedeliverResponseSchema(StrictSchema):
    note_id = fields.UUID(dump_only=True)
    delivery_status = fields.String(dump_only=True)


class TicketingUpdateSchema(StrictSchema):
    """Either ``{kind, base_url, credentials, options}`` or the webhook's ``{url, secret?}``."""

    kind = fields.String(
        load_default="webhook",
        validate=validate.OneOf(KINDS),
        metadata={"description": "GET /integrations/ticketing/kinds lists them"},
    )
    base_url = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=2000))
    url = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(min=1, max=2000),
        metadata={"description": "The webhook's endpoint (same as base_url)"},
    )
    secret = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(min=10, max=200),
        metadata={"description": "whsec_<base64>; generated when absent, kept on a URL change"},
    )
    credentials = fields.Dict(
        keys=fields.String(validate=validate.Length(max=100)),
        load_default=dict,
        metadata={"description": "The kind's credential fields; a secret one left out is kept"},
    )
    options = fields.Dict(keys=fields.String(validate=validate.Length(max=100)), load_default=dict)


class TicketingResponseSchema(StrictSchema):
    kind = fields.String(dump_only=True)
    label = fields.String(dump_only=True)
    url = fields.String(dump_only=True)
    base_url = fields.String(dump_only=True)
    status = fields.String(dump_only=True)
    disabled_reason = fields.String(dump_only=True, allow_none=True)
    credentials_set = fields.List(
        fields.String(),
        dump_only=True,
        metadata={"description": "Names of the stored credential fields (never their values)"},
    )
    options = fields.Dict(dump_only=True)
    updated_at = fields.DateTime(dump_only=True)


class TicketingCreatedSchema(StrictSchema):
    kind = fields.String(dump_only=True)
    url = fields.String(dump_only=True)
    base_url = fields.String(dump_only=True)
    status = fields.String(dump_only=True)
    secret = fields.String(
        dump_only=True,
        allow_none=True,
        metadata={"description": "The webhook's signing secret: shown in this response only"},
    )
    secret_generated = fields.Boolean(dump_only=True)
    secret_kept = fields.Boolean(dump_only=True)
    credentials_set = fields.List(fields.String(), dump_only=True)
    options = fields.Dict(dump_only=True)


class TicketingKindsResponseSchema(StrictSchema):
    kinds = fields.List(fields.Dict(), dump_only=True)


class TicketingTestArgsSchema(StrictSchema):
    ticket_ref = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(max=200),
        metadata={"description": "A ticket to read; without it the system's who-am-I is used"},
    )


class TicketingTestResponseSchema(StrictSchema):
    ok = fields.Boolean(dump_only=True)
    detail = fields.String(dump_only=True)
    answer = fields.String(dump_only=True, allow_none=True)
    request_id = fields.String(dump_only=True, allow_none=True)
