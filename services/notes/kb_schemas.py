"""Request and response schemas of the knowledge-base API (services/notes/kb_api.py)."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from services.notes.schemas import MAX_PREVIEW_WAIT_S, CitationSchema
from shared.hostile_input import MAX_OFFSET


class _TrimmedString(fields.String):
    """Surrounding whitespace removed before the validators run."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        result = super()._deserialize(value, attr, data, **kwargs)
        return result.strip() if isinstance(result, str) else result


class KbArticleQueryArgsSchema(Schema):
    class Meta:
        ordered = True

    search = _TrimmedString(
        validate=validate.Length(max=200),
        metadata={
            "description": "words to find in the title and the article (websearch syntax: "
            '"quoted phrases", -excluded), best match first'
        },
    )
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))
    offset = fields.Integer(load_default=0, validate=validate.Range(min=0, max=MAX_OFFSET))


class KeepArgsSchema(Schema):
    class Meta:
        ordered = True

    kind = fields.String(
        required=True,
        validate=validate.OneOf(["kb_article"]),
        metadata={"description": "what to keep: only kb_article is kept"},
    )
    wait = fields.Float(
        validate=validate.Range(min=0, max=MAX_PREVIEW_WAIT_S),
        metadata={"description": "seconds to wait for the article to be generated (default 30)"},
    )


class KbArticleSummarySchema(Schema):
    class Meta:
        ordered = True

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
