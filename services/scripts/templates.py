"""Writing templates: create, update, share, delete and the built-in library's saves, each
checked by the engine and the static check, with a version row for every new version. No
Flask; every function takes an open SQLAlchemy session (the caller owns the transaction) and
the acting principal."""

from __future__ import annotations

import re
import uuid
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.scripts.catalogue import get_template, normalise_tags
from services.scripts.engine import (
    ScriptTemplateEngine,
    TemplateDefinitionError,
)
from shared import powershell_check
from shared.errors import (
    CATEGORY_NOT_FOUND,
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
)
from shared.models import (
    ScriptCategory,
    ScriptTemplate,
    ScriptTemplateVersion,
    Team,
    User,
)
from shared.permissions import (
    can_create_content,
    can_manage_template,
)
from shared.powershell_check import Finding
from shared.principal import Principal

engine = ScriptTemplateEngine()


# Fields a PUT may change; changing either of the first two makes a new version.
VERSIONED_FIELDS = ("script_body", "parameters_schema")
EDITABLE_FIELDS = (
    "category_id",
    "name",
    "description",
    "use_case",
    "script_body",
    "parameters_schema",
    "default_values",
    "validation_rules",
    "tags",
    "complexity",
    "estimated_runtime",
    "requires_elevation",
    "requires_modules",
    "acknowledged_findings",
    "secret_delivery",
)
SLUG_MAX = 200


def slugify(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:SLUG_MAX].strip("-")
    return slug or "template"


def _slug_taken(
    session: Session, account_id: uuid.UUID | None, slug: str, exclude: uuid.UUID | None
) -> bool:
    owner = (
        ScriptTemplate.account_id.is_(None)
        if account_id is None
        else ScriptTemplate.account_id == account_id
    )
    query = select(ScriptTemplate.id).where(
        owner, ScriptTemplate.slug == slug, ScriptTemplate.is_active.is_(True)
    )
    if exclude is not None:
        query = query.where(ScriptTemplate.id != exclude)
    return session.execute(query.limit(1)).first() is not None


def unique_slug(
    session: Session,
    account_id: uuid.UUID | None,
    base: str,
    exclude: uuid.UUID | None = None,
) -> str:
    base = slugify(base)
    candidate, n = base, 1
    while _slug_taken(session, account_id, candidate, exclude):
        n += 1
        suffix = f"-{n}"
        candidate = base[: SLUG_MAX - len(suffix)] + suffix
    return candidate


def _validate_definition(values: dict[str, Any]) -> None:
    try:
        engine.validate_template(
            values["script_body"],
            values.get("parameters_schema"),
            values.get("default_values"),
            values.get("validation_rules"),
        )
    except TemplateDefinitionError as exc:
        raise InvalidInput("Invalid template definition", errors=exc.errors) from exc


def check_body(script_body: str, acknowledged: list[dict[str, Any]] | None) -> list[Finding]:
    """The static check's findings; error-severity ones refuse the save unless acknowledged
    (by rule id, with a reason)."""
    findings = powershell_check.check_script(script_body)
    acked = {a["rule"] for a in acknowledged or []}
    unknown = sorted(acked - set(powershell_check.RULES))
    if unknown:
        raise InvalidInput(
            "Unknown rule in acknowledged_findings",
            errors={"acknowledged_findings": [f"no rule {rule}" for rule in unknown]},
        )
    blocking = powershell_check.errors_of(findings, acked)
    if blocking:
        raise InvalidInput(
            "The script has error findings: fix them, or acknowledge each rule with a reason in "
            "acknowledged_findings",
            errors={"script_body": [powershell_check.format_finding(f) for f in blocking]},
        )
    return findings


def _require_category(session: Session, category_id: uuid.UUID) -> None:
    exists = session.execute(
        select(ScriptCategory.id).where(
            ScriptCategory.id == category_id, ScriptCategory.is_active.is_(True)
        )
    ).first()
    if exists is None:
        raise NotFound(CATEGORY_NOT_FOUND, errors={"category_id": ["no such category"]})


def _snapshot(session: Session, template: ScriptTemplate, actor: uuid.UUID | None) -> None:
    session.add(
        ScriptTemplateVersion(
            template_id=template.id,
            version=template.version,
            script_body=template.script_body,
            parameters_schema=template.parameters_schema,
            created_by=actor,
        )
    )


def _insert_with_unique_slug(
    session: Session, template: ScriptTemplate, slug_base: str
) -> ScriptTemplate:
    """Concurrent creates may pick the same free slug; the partial unique index decides and the
    loser tries the next one."""
    for _ in range(10):
        template.slug = unique_slug(session, template.account_id, slug_base, exclude=template.id)
        try:
            with session.begin_nested():
                session.add(template)
                session.flush()
            return template
        except IntegrityError as exc:
            if "slug" not in str(exc.orig):
                raise
    raise Conflict("Could not find a free slug; try again", errors={"slug": ["taken"]})


def create_template(session: Session, principal: Principal, data: dict[str, Any]) -> ScriptTemplate:
    if not can_create_content(principal):
        raise PermissionDenied("Engineer access required to create templates")
    _require_category(session, data["category_id"])
    _validate_definition(data)
    check_body(data["script_body"], data.get("acknowledged_findings"))

    builtin = bool(data.get("builtin"))
    if builtin and not principal.is_super_admin:
        raise PermissionDenied("Only super admins create built-in templates")
    shared = data.get("shared")
    if builtin:
        scope, account_id, team_id = "builtin", None, None
    elif principal.team_id is not None and shared is not False:
        # A team member's template is filed with their team by default.
        scope, account_id, team_id = "team", principal.account_id, principal.team_id
    else:
        if shared:
            raise InvalidInput(
                "You belong to no team to share with", errors={"shared": ["no team"]}
            )
        scope, account_id, team_id = "personal", principal.account_id, None

    template = ScriptTemplate(
        id=uuid.uuid4(),
        category_id=data["category_id"],
        scope=scope,
        account_id=account_id,
        team_id=team_id,
        created_by=principal.id,
        name=data["name"],
        description=data.get("description"),
        use_case=data.get("use_case"),
        script_body=data["script_body"],
        parameters_schema=data.get("parameters_schema") or {"parameters": []},
        default_values=data.get("default_values") or {},
        validation_rules=data.get("validation_rules") or {},
        tags=normalise_tags(data.get("tags")),
        complexity=data.get("complexity"),
        estimated_runtime=data.get("estimated_runtime"),
        requires_elevation=bool(data.get("requires_elevation", False)),
        requires_modules=list(data.get("requires_modules") or []),
        secret_delivery=data.get("secret_delivery"),
        acknowledged_findings=_normalised(
            "acknowledged_findings", data.get("acknowledged_findings")
        ),
        usage_count=0,
        version=1,
        is_active=True,
    )
    _insert_with_unique_slug(session, template, data.get("slug") or data["name"])
    _snapshot(session, template, principal.id)
    return template


BUILTIN_FIELDS = tuple(field for field in EDITABLE_FIELDS if field != "category_id")


def _normalised(key: str, value: Any) -> Any:
    if key == "tags":
        return normalise_tags(value)
    if key == "parameters_schema":
        return value or {"parameters": []}
    if key in ("default_values", "validation_rules"):
        return value or {}
    if key == "requires_modules":
        return list(value or [])
    if key == "requires_elevation":
        return bool(value)
    if key == "acknowledged_findings":
        return [{"rule": a["rule"], "reason": a["reason"]} for a in value or []]
    return value


def save_builtin_template(session: Session, spec: dict[str, Any], *, category_id: uuid.UUID) -> str:
    """Create or update the built-in template ``spec["slug"]`` from the shipped library.
    Returns "created", "updated" or "unchanged"; a changed body or parameter schema becomes a
    new version, exactly as an edit through the API does."""
    _validate_definition(spec)
    check_body(spec["script_body"], spec.get("acknowledged_findings"))
    values = {field: _normalised(field, spec.get(field)) for field in BUILTIN_FIELDS}
    template = session.scalars(
        select(ScriptTemplate)
        .where(
            ScriptTemplate.account_id.is_(None),
            ScriptTemplate.slug == spec["slug"],
            ScriptTemplate.is_active.is_(True),
        )
        # Two loaders at once must not both bump a changed template's version.
        .with_for_update()
    ).one_or_none()
    if template is None:
        template = ScriptTemplate(
            id=uuid.uuid4(),
            scope="builtin",
            slug=spec["slug"],
            category_id=category_id,
            version=1,
            usage_count=0,
            is_active=True,
            **values,
        )
        session.add(template)
        session.flush()
        _snapshot(session, template, None)
        return "created"
    changed = template.category_id != category_id or any(
        getattr(template, field) != value for field, value in values.items()
    )
    if not changed:
        return "unchanged"
    new_version = any(getattr(template, f) != values[f] for f in VERSIONED_FIELDS)
    template.category_id = category_id
    for field, value in values.items():
        setattr(template, field, value)
    if new_version:
        template.version += 1
        session.flush()
        _snapshot(session, template, None)
    return "updated"


def update_template(
    session: Session, principal: Principal, template_id: uuid.UUID, data: dict[str, Any]
) -> ScriptTemplate:
    # The row lock serialises concurrent edits, so each version bump is counted once.
    template = get_template(session, principal, template_id, for_update=True)
    if not can_manage_template(principal, template):
        raise PermissionDenied("You don't have permission to edit this template")
    if "category_id" in data:
        _require_category(session, data["category_id"])

    merged = {
        "script_body": data.get("script_body", template.script_body),
        "parameters_schema": data.get("parameters_schema", template.parameters_schema),
        "default_values": data.get("default_values", template.default_values),
        "validation_rules": data.get("validation_rules", template.validation_rules),
    }
    if any(key in data for key in merged):
        _validate_definition(merged)
    if "script_body" in data or "acknowledged_findings" in data:
        check_body(
            merged["script_body"],
            data.get("acknowledged_findings", template.acknowledged_findings),
        )

    new_version = any(
        key in data and data[key] != getattr(template, key) for key in VERSIONED_FIELDS
    )
    for key in EDITABLE_FIELDS:
        if key not in data:
            continue
        setattr(template, key, _normalised(key, data[key]))

    if data.get("slug") or data.get("regenerate_slug"):
        base = data.get("slug") or template.name
        template.slug = unique_slug(session, template.account_id, base, exclude=template.id)

    if new_version:
        template.version = session.execute(
            update(ScriptTemplate)
            .where(ScriptTemplate.id == template.id)
            .values(version=ScriptTemplate.version + 1)
            .returning(ScriptTemplate.version)
        ).scalar_one()
    try:
        session.flush()
    except IntegrityError as exc:
        raise Conflict("That slug is already used", errors={"slug": ["taken"]}) from exc
    if new_version:
        _snapshot(session, template, principal.id)
    return template


def delete_template(session: Session, principal: Principal, template_id: uuid.UUID) -> None:
    template = get_template(session, principal, template_id, for_update=True)
    if not can_manage_template(principal, template):
        raise PermissionDenied("You don't have permission to delete this template")
    template.is_active = False


def share_template(
    session: Session, principal: Principal, template_id: uuid.UUID, shared: bool
) -> ScriptTemplate:
    template = get_template(session, principal, template_id, for_update=True)
    if not (principal.is_super_admin or principal.is_owner):
        raise PermissionDenied("Only account owners and admins can share templates")
    if template.scope == "builtin":
        raise Conflict("Built-in templates are visible to everyone and cannot be re-scoped")
    if shared:
        team_id = None
        if template.created_by is not None:
            team_id = session.execute(
                select(User.team_id).where(
                    User.id == template.created_by, User.account_id == template.account_id
                )
            ).scalar_one_or_none()
        if team_id is None and principal.account_id == template.account_id:
            team_id = principal.team_id
        if team_id is None:
            raise InvalidInput(
                "Neither the template's creator nor you belong to a team to share it with",
                errors={"shared": ["no team to share with"]},
            )
        in_account = session.execute(
            select(Team.id).where(Team.id == team_id, Team.account_id == template.account_id)
        ).first()
        if in_account is None:
            raise InvalidInput(
                "Team is not in the template's account", errors={"shared": ["bad team"]}
            )
        template.scope, template.team_id = "team", team_id
    else:
        # Personal stays inside its account: creator, owners and super admins only.
        template.scope, template.team_id = "personal", None
    session.flush()
    return template
