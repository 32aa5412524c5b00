"""Script library HTTP API (/api/v1/scripts) and token issuing (/api/v1/auth)."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response, current_app, request, url_for
from flask.views import MethodView

from services.scripts import catalogue, drafts, generations, templates
from services.scripts.schemas import (
    CategoryResponseSchema,
    GenerateRequestSchema,
    GenerateResponseSchema,
    GenerationQueryArgsSchema,
    GenerationRecordSchema,
    MeResponseSchema,
    ScriptSettingsSchema,
    ShareArgsSchema,
    TagResponseSchema,
    TemplateCreateSchema,
    TemplateDetailSchema,
    TemplateListItemSchema,
    TemplateQueryArgsSchema,
    TemplateUpdateSchema,
    TemplateVersionSchema,
    TokenRequestSchema,
    TokenResponseSchema,
)
from shared import login, powershell_check
from shared.auth import (
    current_principal,
    issue_token,
    load_principal,
)
from shared.db import db
from shared.endpoints import (
    ApiBlueprint,
    BearerView,
    paging,
    read_as_caller,
    read_page,
    with_total,
    write_as_caller,
)
from shared.errors import Unauthenticated
from shared.events import write_transaction

auth_blp = ApiBlueprint("auth", __name__, url_prefix="/api/v1/auth", description="Bearer tokens")
scripts_blp = ApiBlueprint(
    "scripts", __name__, url_prefix="/api/v1/scripts", description="Script library"
)


# The errors each route can answer besides 422 (documented in the OpenAPI spec with the error
# schema). A new route must be listed here: the spec test fails otherwise.
ERROR_RESPONSES: dict[str, dict[str, tuple[int, ...]]] = {
    "/api/v1/auth/token": {"post": (401,)},
    "/api/v1/auth/me": {"get": (401,)},
    "/api/v1/scripts/categories": {"get": (401,)},
    "/api/v1/scripts/templates": {"get": (401,), "post": (401, 403, 404, 409)},
    "/api/v1/scripts/templates/{template_id}": {
        "get": (401, 404),
        "put": (401, 403, 404, 409),
        "delete": (401, 403, 404),
    },
    "/api/v1/scripts/templates/{template_id}/share": {"patch": (401, 403, 404, 409)},
    "/api/v1/scripts/templates/{template_id}/publish": {"post": (401, 403, 404, 409)},
    "/api/v1/scripts/templates/drafts": {"get": (401,)},
    "/api/v1/scripts/templates/{template_id}/versions": {"get": (401, 404)},
    "/api/v1/scripts/generate": {"post": (401, 403, 404, 409)},
    "/api/v1/scripts/generations": {"get": (401,)},
    "/api/v1/scripts/generations/{generation_id}/download": {"get": (401, 404)},
    "/api/v1/scripts/tags": {"get": (401,)},
    "/api/v1/scripts/templates/by-slug/{slug}": {"get": (401, 404)},
    "/api/v1/scripts/settings": {"get": (401,), "put": (401, 403)},
}


def _register_sensitive(values: dict[str, Any]) -> None:
    try:
        from shared.observability import register_sensitive_value
    except ImportError:  # pragma: no cover
        return
    for value in values.values():
        if isinstance(value, str) and value:
            register_sensitive_value(value)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, str) and item:
                    register_sensitive_value(item)


# ── Auth ──────────────────────────────────────────────────────────────────


def _login_guard() -> login.LoginGuard:
    guard = current_app.extensions.get("rf_login_guard")
    if guard is None:
        settings = current_app.config["SETTINGS"]
        guard = login.LoginGuard(
            settings.REDIS_URL,
            login.LoginPolicy(
                per_ip=settings.LOGIN_RATE_PER_IP,
                per_account=settings.LOGIN_RATE_PER_ACCOUNT,
                lockout_failures=settings.LOGIN_LOCKOUT_FAILURES,
                lockout_s=settings.LOGIN_LOCKOUT_S,
                key_prefix=settings.REDIS_KEY_PREFIX,
            ),
        )
        current_app.extensions["rf_login_guard"] = guard
    return guard


@auth_blp.route("/token")
class TokenView(MethodView):
    @auth_blp.endpoint(200, TokenResponseSchema, args=TokenRequestSchema, public=True)
    def post(self, data: dict[str, Any]) -> dict[str, Any]:
        """Exchange email and password for a bearer token."""
        settings = current_app.config["SETTINGS"]
        with db.transaction() as session:
            user_id = login.authenticate(
                session,
                _login_guard(),
                email=data["email"],
                password=data["password"],
                ip=request.remote_addr or "unknown",
            )
            principal = load_principal(session, user_id) if user_id is not None else None
        if principal is None:
            raise Unauthenticated("invalid email or password")
        return {
            "access_token": issue_token(settings.secret_key, principal.id, settings.TOKEN_TTL_S),
            "token_type": "bearer",
            "expires_in": settings.TOKEN_TTL_S,
        }


@auth_blp.route("/me")
class MeView(BearerView):
    @auth_blp.endpoint(200, MeResponseSchema)
    def get(self) -> dict[str, Any]:
        """The caller's identity and role."""
        p = current_principal()
        return {
            "id": p.id,
            "email": p.email,
            "account_id": p.account_id,
            "team_id": p.team_id,
            "role": p.role,
            "is_super_admin": p.is_super_admin,
        }


# ── Categories and templates ──────────────────────────────────────────────


@scripts_blp.route("/categories")
class CategoriesView(BearerView):
    @scripts_blp.endpoint(200, CategoryResponseSchema(many=True))
    def get(self) -> list[dict[str, Any]]:
        """Active categories by sort order, with the number of templates you can see."""
        return read_as_caller(catalogue.list_categories)


@scripts_blp.route("/templates")
class TemplatesView(BearerView):
    @scripts_blp.list_endpoint(TemplateListItemSchema, args=TemplateQueryArgsSchema)
    def get(self, args: dict[str, Any]) -> Any:
        """Templates you can see, ordered by name, or by relevance when `search` is given
        (`websearch_to_tsquery` syntax: words, "quoted phrases", -excluded; typos tolerated).
        `X-Total-Count` gives the unpaged total."""
        filters = catalogue.TemplateFilters(
            category_slug=args.get("category_slug"),
            search=args.get("search"),
            tags=tuple((args.get("tags") or "").split(",")),
            managed=args.get("managed"),
            mine=args["mine"],
            shared=args["shared"],
            **paging(args),
        )
        return read_page(catalogue.list_templates, current_principal(), filters)

    @scripts_blp.endpoint(201, TemplateDetailSchema, args=TemplateCreateSchema)
    def post(self, data: dict[str, Any]) -> Any:
        """Create a template (engineers and owners)."""
        return write_as_caller(templates.create_template, data)


@scripts_blp.route("/tags")
class TagsView(BearerView):
    @scripts_blp.endpoint(200, TagResponseSchema(many=True))
    def get(self) -> list[dict[str, Any]]:
        """Every tag on a template you can see, with its template count, sorted by tag."""
        return read_as_caller(catalogue.list_tags)


@scripts_blp.route("/templates/by-slug/<string:slug>")
class TemplateBySlugView(BearerView):
    @scripts_blp.endpoint(200, TemplateDetailSchema)
    def get(self, slug: str) -> Any:
        """The template of that slug: your account's own, else the built-in one."""
        return read_as_caller(catalogue.get_template_by_slug, slug)


@scripts_blp.route("/templates/<uuid:template_id>")
class TemplateView(BearerView):
    @scripts_blp.endpoint(200, TemplateDetailSchema)
    def get(self, template_id: uuid.UUID) -> Any:
        """One template with its body, parameters, defaults and validation rules."""
        return read_as_caller(catalogue.get_template, template_id)

    @scripts_blp.endpoint(200, TemplateDetailSchema, args=TemplateUpdateSchema)
    def put(self, data: dict[str, Any], template_id: uuid.UUID) -> Any:
        """Partial update; `version` grows when `script_body` or `parameters_schema` changes."""
        return write_as_caller(templates.update_template, template_id, data)

    @scripts_blp.endpoint(204)
    def delete(self, template_id: uuid.UUID) -> None:
        """Soft delete."""
        write_as_caller(templates.delete_template, template_id)


@scripts_blp.route("/templates/<uuid:template_id>/share")
class TemplateShareView(BearerView):
    @scripts_blp.endpoint(200, TemplateDetailSchema, args=ShareArgsSchema, location="query")
    def patch(self, args: dict[str, Any], template_id: uuid.UUID) -> Any:
        """Share with the team (true) or make personal (false). Owners and super admins."""
        return write_as_caller(templates.share_template, template_id, args["shared"])


@scripts_blp.route("/templates/drafts")
class TemplateDraftsView(BearerView):
    @scripts_blp.endpoint(200, TemplateDetailSchema(many=True))
    def get(self) -> Any:
        """Your template drafts made from fixes (not in the library until published)."""
        return read_as_caller(drafts.list_drafts)


@scripts_blp.route("/templates/<uuid:template_id>/publish")
class TemplatePublishView(BearerView):
    @scripts_blp.endpoint(200, TemplateDetailSchema)
    def post(self, template_id: uuid.UUID) -> Any:
        """Publish a draft to your team's library (its creator or an account owner), after
        the same validation and static check as any template save. 409 when already
        published."""
        return write_as_caller(drafts.publish_template, template_id)


@scripts_blp.route("/templates/<uuid:template_id>/versions")
class TemplateVersionsView(BearerView):
    @scripts_blp.endpoint(200, TemplateVersionSchema(many=True))
    def get(self, template_id: uuid.UUID) -> Any:
        """Every version of the template's body and parameters, newest first."""
        return read_as_caller(catalogue.list_versions, template_id)


# ── Generate and history ──────────────────────────────────────────────────


@scripts_blp.route("/generate")
class GenerateView(BearerView):
    @scripts_blp.endpoint(200, GenerateResponseSchema, args=GenerateRequestSchema)
    def post(self, data: dict[str, Any]) -> dict[str, Any]:
        """Render a template. The real script is in this response only; every stored copy has
        sensitive values replaced by the redaction marker."""
        principal = current_principal()
        _register_sensitive(data["parameters"])
        with write_transaction() as session:
            result = generations.generate_script(
                session,
                principal,
                template_id=data["template_id"],
                parameters=data["parameters"],
                ai_session_id=data["ai_session_id"],
                secret_delivery=data["secret_delivery"],
            )
            template, generation, rendered = result.template, result.generation, result.rendered
            warnings: list[str] = []
            if template.requires_elevation:
                warnings.append("This script requires 'Run as Administrator'")
            if template.requires_modules:
                warnings.append(
                    "This script needs the PowerShell modules: "
                    + ", ".join(template.requires_modules)
                )
            warnings.extend(_delivery_warnings(result))
            warnings.extend(powershell_check.format_finding(f) for f in result.findings)
            downloadable = rendered.secret_delivery != "inline"
            body = {
                "id": generation.id,
                "script": rendered.script,
                "warnings": warnings,
                "findings": [f.as_dict() for f in result.findings],
                "secret_delivery": rendered.secret_delivery,
                "secret_inputs": [
                    {
                        "parameter": s.key,
                        "label": s.label,
                        "delivery": s.delivery,
                        "environment_variable": s.variable,
                    }
                    for s in rendered.secret_inputs
                ],
                "download_url": (
                    url_for("scripts.GenerationDownloadView", generation_id=generation.id)
                    if downloadable
                    else None
                ),
                "metadata": {
                    "template_name": template.name,
                    "template_version": template.version,
                    "requires_elevation": template.requires_elevation,
                    "requires_modules": template.requires_modules,
                    "generated_at": generation.created_at.isoformat(),
                    "estimated_runtime": template.estimated_runtime,
                },
                "state_version": result.state_version,
            }
        return body


def _delivery_warnings(result: generations.GenerationResult) -> list[str]:
    rendered = result.rendered
    warnings = []
    env = [s.variable for s in rendered.secret_inputs if s.variable]
    if env:
        warnings.append(
            "Set these environment variables before the script runs (e.g. as the RMM's secure "
            "variables): " + ", ".join(env)
        )
    if any(s.delivery == "prompt" for s in rendered.secret_inputs):
        warnings.append("The script asks for its secrets when it runs: run it interactively")
    if rendered.ignored_values:
        warnings.append(
            "Values given for " + ", ".join(rendered.ignored_values) + " were not used: the "
            f"script reads them when it runs ({rendered.secret_delivery} delivery)"
        )
    if not rendered.script.isascii():
        warnings.append(
            "The script contains non-ASCII characters: save it as UTF-8 with a byte-order mark "
            "(the download does), because Windows PowerShell 5.1 reads a .ps1 file without one "
            "in the ANSI code page and would change those characters"
        )
    return warnings


@scripts_blp.route("/generations/<uuid:generation_id>/download")
class GenerationDownloadView(BearerView):
    @scripts_blp.endpoint(
        200, content_type="application/octet-stream", description="the .ps1 file (UTF-8 with BOM)"
    )
    def get(self, generation_id: uuid.UUID) -> Response:
        """Your own generation made with env or prompt delivery, as a .ps1 file with a UTF-8
        byte-order mark (Windows PowerShell 5.1 reads a file without one in the ANSI code
        page). Inline generations answer 409: their stored copy has the secrets redacted."""
        with db.session() as session:
            generation, slug = generations.get_generation_download(
                session, current_principal(), generation_id
            )
            script = generation.generated_script
        return Response(
            "\ufeff".encode() + script.encode("utf-8"),
            mimetype="application/octet-stream",
            headers={
                "Content-Disposition": f'attachment; filename="{slug}.ps1"',
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
            },
        )


@scripts_blp.route("/settings")
class ScriptSettingsView(BearerView):
    @scripts_blp.endpoint(200, ScriptSettingsSchema)
    def get(self) -> dict[str, Any]:
        """The account's script settings."""
        return read_as_caller(generations.get_script_settings)

    @scripts_blp.endpoint(200, ScriptSettingsSchema, args=ScriptSettingsSchema)
    def put(self, data: dict[str, Any]) -> dict[str, Any]:
        """Set the account's default secret delivery (owners)."""
        return write_as_caller(generations.update_script_settings, data)


@scripts_blp.route("/generations")
class GenerationsView(BearerView):
    @scripts_blp.list_endpoint(GenerationRecordSchema, args=GenerationQueryArgsSchema)
    def get(self, args: dict[str, Any]) -> Any:
        """Your own generations, newest first (parameters as stored: redacted). `X-Total-Count`
        gives the unpaged total."""
        rows, total = read_as_caller(generations.list_generations, **paging(args))
        return with_total(
            [
                {
                    "id": gen.id,
                    "template_id": gen.template_id,
                    "template_name": name,
                    "template_version": gen.template_version,
                    "parameters_used": gen.parameters_used,
                    "secret_delivery": gen.secret_delivery,
                    "ai_session_id": gen.ai_session_id,
                    "created_at": gen.created_at,
                }
                for gen, name in rows
            ],
            total,
        )
