"""What the services' request and response schemas are built from: the base schema, the
trimmed string fields and the paging arguments of a list.

Every service's `schemas` module subclasses `StrictSchema` and takes its fields from here, so a
rule such as "an offset is bounded" or "a length applies to the trimmed text" has one home.
"""

from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, Schema, fields, validate

from shared.hostile_input import MAX_OFFSET


class StrictSchema(Schema):
    """Fields keep their declared order (in the OpenAPI document and in error messages).
    Unknown fields are a 422 naming them (marshmallow's RAISE)."""

    class Meta:
        ordered = True


class IgnoringQuerySchema(StrictSchema):
    """Query arguments where an unknown parameter is ignored (marshmallow's EXCLUDE) instead of
    being a 422."""

    class Meta:
        unknown = EXCLUDE


class TrimmedString(fields.String):
    """A string with surrounding whitespace removed before the validators run, so a length
    limit applies to the trimmed text and whitespace alone fails `Length(min=1)`."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        result = super()._deserialize(value, attr, data, **kwargs)
        return result.strip() if isinstance(result, str) else result


class OptionalTrimmedString(TrimmedString):
    """Like TrimmedString, but blank becomes None (for optional references such as ticket_ref)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        result = super()._deserialize(value, attr, data, **kwargs)
        return result or None

    def _validate(self, value: Any) -> None:
        # A blank value became None: length validators must not see it (a TypeError, a 500).
        if value is not None:
            super()._validate(value)


def page_fields(default: int, maximum: int) -> tuple[fields.Integer, fields.Integer]:
    """`limit` (`default` when absent, 1 to `maximum`) and `offset` (0 when absent) of a list's
    query schema, in that order: `limit, offset = page_fields(50, 200)`. The offset is bounded:
    PostgreSQL's OFFSET is a bigint, and a larger value answered 500."""
    return (
        fields.Integer(load_default=default, validate=validate.Range(min=1, max=maximum)),
        fields.Integer(load_default=0, validate=validate.Range(min=0, max=MAX_OFFSET)),
    )
