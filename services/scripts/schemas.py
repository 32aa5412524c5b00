"""Request and response schemas of the script library API."""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields, validate, validates_schema

from shared import powershell_check
from shared.api_schemas import IgnoringQuerySchema, StrictSchema, page_fields

COMPLEXITIES = ("basic", "intermediate", "advanced")
SECRET_DELIVERY = ("inline", "env", "prompt")
_DELIVERY_HELP = (
    "how sensitive parameters reach the script: inline (written in it), env (read from "
    "$env:RF_<KEY>) or prompt (Read-Host -AsSecureString when it runs)"
)


class TokenRequestSchema(StrictSchema):
    email = fields.Email(required=True)
    password = fields.String(required=True, validate=validate.Length(min=1, max=1024))


class TokenResponseSchema(StrictSchema):
    access_token = fields.String(required=True)
    token_type = fields.String(required=True)
    expires_in = fields.Integer(required=True)


class MeResponseSchema(StrictSchema):
    id = fields.UUID()
    email = fields.String()
    account_id = fields.UUID()
    team_id = fields.UUID(allow_none=True)
    role = fields.String()
    is_super_admin = fields.Boolean()


class CategoryResponseSchema(StrictSchema):
    id = fields.UUID(dump_only=True)
    name = fields.String()
    slug = fields.String()
    description = fields.String(allow_none=True)
    icon = fields.String(allow_none=True)
    sort_order = fields.Integer()
    template_count = fields.Integer()


class TemplateQueryArgsSchema(IgnoringQuerySchema):
    category_slug = fields.String(validate=validate.Length(max=100))
    search = fields.String(validate=validate.Length(max=200))
    tags = fields.String(
        validate=validate.Length(max=1000), metadata={"description": "Comma-separated tags"}
    )
    managed = fields.Boolean(metadata={"description": "Only templates you can edit"})
    mine = fields.Boolean(load_default=False)
    shared = fields.Boolean(load_default=False)
    limit, offset = page_fields(200, 1000)


class TagResponseSchema(StrictSchema):
    tag = fields.String()
    template_count = fields.Integer()


class TemplateListItemSchema(StrictSchema):
    id = fields.UUID(dump_only=True)
    category_id = fields.UUID()
    scope = fields.String()
    account_id = fields.UUID(allow_none=True)
    team_id = fields.UUID(allow_none=True)
    created_by = fields.UUID(allow_none=True)
    name = fields.String()
    slug = fields.String()
    description = fields.String(allow_none=True)
    use_case = fields.String(allow_none=True)
    tags = fields.List(fields.String())
    complexity = fields.String(allow_none=True)
    estimated_runtime = fields.String(allow_none=True)
    requires_elevation = fields.Boolean()
    requires_modules = fields.List(fields.String())
    secret_delivery = fields.String(allow_none=True, metadata={"description": _DELIVERY_HELP})
    usage_count = fields.Integer()
    version = fields.Integer()
    is_active = fields.Boolean()
    status = fields.String(
        metadata={
            "enum": ["draft", "published"],
            "description": "draft: made from a fix, not in the library until published",
        }
    )
    source_fix_id = fields.UUID(
        allow_none=True, metadata={"description": "the suggested fix a draft was made from"}
    )
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class FindingSchema(StrictSchema):
    rule = fields.String(metadata={"description": "rule id, e.g. RF2002"})
    name = fields.String()
    severity = fields.String(metadata={"description": "error, warning or information"})
    line = fields.Integer()
    column = fields.Integer()
    why = fields.String()
    excerpt = fields.String()


class AcknowledgedFindingSchema(StrictSchema):
    rule = fields.String(required=True, validate=validate.Length(min=1, max=20))
    reason = fields.String(required=True, validate=validate.Length(min=3, max=500))


class TemplateDetailSchema(TemplateListItemSchema):
    script_body = fields.String()
    parameters_schema = fields.Dict()
    default_values = fields.Dict()
    validation_rules = fields.Dict()
    acknowledged_findings = fields.List(fields.Nested(AcknowledgedFindingSchema))
    findings = fields.Method(
        "get_findings",
        metadata={"description": "the static check of script_body (rule, severity, line, why)"},
    )

    def get_findings(self, template: Any) -> list[dict[str, Any]]:
        return [f.as_dict() for f in powershell_check.check_script(template.script_body)]


class _TemplateWriteFields(StrictSchema):
    category_id = fields.UUID()
    name = fields.String(validate=validate.Length(min=1, max=200))
    slug = fields.String(validate=validate.Length(min=1, max=200))
    description = fields.String(allow_none=True, validate=validate.Length(max=4000))
    use_case = fields.String(allow_none=True, validate=validate.Length(max=4000))
    script_body = fields.String(validate=validate.Length(min=1, max=100_000))
    parameters_schema = fields.Dict(allow_none=True)
    default_values = fields.Dict(allow_none=True)
    validation_rules = fields.Dict(allow_none=True)
    tags = fields.List(
        fields.String(validate=validate.Length(min=1, max=64)),
        validate=validate.Length(max=30),
    )
    complexity = fields.String(allow_none=True, validate=validate.OneOf(COMPLEXITIES))
    estimated_runtime = fields.String(allow_none=True, validate=validate.Length(max=50))
    requires_elevation = fields.Boolean()
    requires_modules = fields.List(
        fields.String(validate=validate.Length(min=1, max=100)),
        validate=validate.Length(max=30),
    )
    secret_delivery = fields.String(
        allow_none=True,
        validate=validate.OneOf(SECRET_DELIVERY),
        metadata={"description": "this template's default; " + _DELIVERY_HELP},
    )
    acknowledged_findings = fields.List(
        fields.Nested(AcknowledgedFindingSchema),
        validate=validate.Length(max=20),
        metadata={"description": "error findings of the static check accepted, with a reason"},
    )

    @validates_schema
    def name_not_blank(self, data: dict[str, Any], **_: object) -> None:
        if "name" in data and not data["name"].strip():
            raise ValidationError("must not be blank", "name")
        if "script_body" in data and not data["script_body"].strip():
            raise ValidationError("must not be blank", "script_body")


class TemplateCreateSchema(_TemplateWriteFields):
    category_id = fields.UUID(required=True)
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    script_body = fields.String(required=True, validate=validate.Length(min=1, max=100_000))
    shared = fields.Boolean(
        metadata={"description": "false keeps it personal; default: your team's if you have one"}
    )
    builtin = fields.Boolean(load_default=False, metadata={"description": "super admins only"})


class TemplateUpdateSchema(_TemplateWriteFields):
    regenerate_slug = fields.Boolean(
        load_default=False, metadata={"description": "derive a new slug from the new name"}
    )


class ShareArgsSchema(StrictSchema):
    shared = fields.Boolean(
        required=True, metadata={"description": "true to share with team, false for personal"}
    )


class TemplateVersionSchema(StrictSchema):
    version = fields.Integer()
    script_body = fields.String()
    parameters_schema = fields.Dict()
    created_by = fields.UUID(allow_none=True)
    created_at = fields.DateTime()


class GenerateRequestSchema(StrictSchema):
    """`ai_session_id` links the run to a FlowPilot session. There is no other kind of session
    to link: any other field (`session_id` included) is a 422 naming it, so a
    session id sent under the wrong name is never silently left unlinked."""

    template_id = fields.UUID(required=True)
    parameters = fields.Dict(keys=fields.String(), load_default=dict)
    ai_session_id = fields.UUID(
        allow_none=True,
        load_default=None,
        metadata={"description": "a FlowPilot session to link the run to (write access needed)"},
    )
    secret_delivery = fields.String(
        allow_none=True,
        load_default=None,
        validate=validate.OneOf(SECRET_DELIVERY),
        metadata={
            "description": "default: the template's, else the account's, else inline. "
            + _DELIVERY_HELP
        },
    )


class SecretInputSchema(StrictSchema):
    parameter = fields.String()
    label = fields.String()
    delivery = fields.String()
    environment_variable = fields.String(allow_none=True)


class GenerateResponseSchema(StrictSchema):
    id = fields.UUID()
    script = fields.String()
    warnings = fields.List(fields.String())
    findings = fields.List(
        fields.Nested(FindingSchema),
        metadata={"description": "the static check of the rendered script"},
    )
    secret_delivery = fields.String()
    secret_inputs = fields.List(
        fields.Nested(SecretInputSchema),
        metadata={"description": "what to set (env) or answer (prompt) when the script runs"},
    )
    download_url = fields.String(
        allow_none=True, metadata={"description": "the .ps1 file (env and prompt delivery)"}
    )
    metadata = fields.Dict()
    state_version = fields.Integer(
        allow_none=True, metadata={"description": "the linked AI session's new state_version"}
    )


class ScriptSettingsSchema(StrictSchema):
    default_secret_delivery = fields.String(
        required=True,
        validate=validate.OneOf(SECRET_DELIVERY),
        metadata={"description": "the account's default; " + _DELIVERY_HELP},
    )


class GenerationQueryArgsSchema(IgnoringQuerySchema):
    limit, offset = page_fields(20, 100)


class GenerationRecordSchema(StrictSchema):
    id = fields.UUID()
    template_id = fields.UUID()
    template_name = fields.String()
    template_version = fields.Integer()
    parameters_used = fields.Dict()
    secret_delivery = fields.String()
    ai_session_id = fields.UUID(allow_none=True)
    created_at = fields.DateTime()
