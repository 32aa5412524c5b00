"""Request and response schemas of the knowledge-base API (services/notes/kb_api.py)."""

from __future__ import annotations

from marshmallow import fields, validate

from services.notes.schemas import MAX_PREVIEW_WAIT_S, CitationSchema
from shared.api_schemas import StrictSchema, TrimmedString, page_fields


class KbArticleQueryArgsSchema(StrictSchema):
    search = TrimmedString(
        validate=validate.Length(max=200),
        metadata={
            "description": "words to find in the title and the article (websearch syntax: "
            '"quoted phrases", -excluded), best match first'
        },
    )
    limit, offset = page_fields(20, 100)


class KeepArgsSchema(StrictSchema):
    kind = fields.String(
        required=True,
        validate=validate.OneOf(["kb_article"]),
        metadata={"description": "what to keep: only kb_article is kept"},
    )
    wait = fields.Float(
        validate=validate.Range(min=0, max=MAX_PREVIEW_WAIT_S),
        metadata={"description": "seconds to wait for the article to be generated (default 30)"},
    )


class KbArticleSummarySchema(StrictSchema):
    id = fields.UUID(dump_only=True)
    session_id = fields.UUID(dump_only=True)
    title = fields.String(dump_only=True)
    state_version = fields.Integer(dump_only=True)
    generator = fields.String(dump_only=True, allow_none=True)
    kept_by = fields.UUID(dump_only=True, allow_none=True)
    created_at = fields.DateTime(dump_only=True)
    updated_at = fields.DateTime(dump_only=True)


class KbArticleResponseSchema(KbArticleSummarySchema):
    markdown = fields.String(dump_only=True)
    citations = fields.List(fields.Nested(CitationSchema), dump_only=True)
    model = fields.String(dump_only=True, allow_none=True)


class KeptArticleResponseSchema(KbArticleResponseSchema):
    replaced = fields.Boolean(
        dump_only=True,
        metadata={"description": "true when this replaced the article kept earlier"},
    )
