"""Script library domain: categories, templates, generation. No Flask; every function takes an
open SQLAlchemy session (the caller owns the transaction) and the acting principal."""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, and_, func, literal_column, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.scripts.engine import (
    CompiledTemplateCache,
    RenderedScript,
    ScriptRenderError,
    ScriptTemplateEngine,
    TemplateDefinitionError,
)
from shared import events, powershell_check
from shared.errors import (
    AI_SESSION_NOT_FOUND,
    CATEGORY_NOT_FOUND,
    TEMPLATE_NOT_FOUND,
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
)
from shared.models import (
    Account,
    ScriptCategory,
    ScriptGeneration,
    ScriptTemplate,
    ScriptTemplateVersion,
    Team,
    User,
)
from shared.models.exposed import PilotSession
from shared.permissions import (
    can_create_content,
    can_manage_template,
    template_manageable,
    template_visibility,
)
from shared.powershell_check import Finding
from shared.principal import Principal

engine = ScriptTemplateEngine()
# Parsed and validated once per (template id, version) in each process; see the class.
compiled_templates = CompiledTemplateCache(engine)

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


# ── Categories ────────────────────────────────────────────────────────────


def list_categories(session: Session, principal: Principal) -> list[dict[str, Any]]:
    counts = (
        select(ScriptTemplate.category_id, func.count().label("n"))
        .where(ScriptTemplate.is_active.is_(True), template_visibility(principal))
        .group_by(ScriptTemplate.category_id)
        .subquery()
    )
    rows = session.execute(
        select(ScriptCategory, func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.category_id == ScriptCategory.id)
        .where(ScriptCategory.is_active.is_(True))
        .order_by(ScriptCategory.sort_order, ScriptCategory.name)
    ).all()
    return [
        {
            "id": cat.id,
            "name": cat.name,
            "slug": cat.slug,
            "description": cat.description,
            "icon": cat.icon,
            "sort_order": cat.sort_order,
            "template_count": int(count),
        }
        for cat, count in rows
    ]


# ── Reading templates ─────────────────────────────────────────────────────


def normalise_tags(tags: Sequence[str] | None) -> list[str]:
    seen: dict[str, None] = {}
    for tag in tags or ():
        cleaned = tag.strip().lower()
        if cleaned:
            seen.setdefault(cleaned, None)
    return list(seen)


SEARCH_CONFIG = "english"
_PLAIN_WORDS_RE = re.compile(r"[^\W_]+(?:['’.-][^\W_]+)*")


@dataclass(frozen=True)
class _Search:
    text: str
    plain: bool
    any_words: str | None


def _search_terms(raw: str | None) -> _Search | None:
    text = " ".join((raw or "").split())
    if not text:
        return None
    words = text.split(" ")
    # Plain words (no quotes, "-exclusions" or "or") may match in part when no template has
    # them all: "printer spooler" still finds the template that says "print spooler".
    plain = all(_PLAIN_WORDS_RE.fullmatch(w) for w in words) and "or" not in (
        w.lower() for w in words
    )
    any_words = " or ".join(words) if plain and len(words) > 1 else None
    return _Search(text=text, plain=plain, any_words=any_words)


def _ts_query(text: str) -> Any:
    return func.websearch_to_tsquery(literal_column(f"'{SEARCH_CONFIG}'"), text)


def _full_text_search(
    query: Select[Any], search: _Search, *, every_word: bool
) -> tuple[Select[Any], Any]:
    """Weighted full-text match (name, tags, description and use case, parameter labels) of
    every word (websearch_to_tsquery syntax), or of any of the plain words."""
    vector = ScriptTemplate.search_vector
    words = _ts_query(search.text if every_word or search.any_words is None else search.any_words)
    return query.where(vector.op("@@")(words)), func.ts_rank(vector, words)


def escape_like(term: str) -> str:
    """Make a user's search text match literally inside LIKE (backslash is the escape)."""
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _literal_search(query: Select[Any], search: _Search) -> tuple[Select[Any], Any]:
    term = f"%{escape_like(search.text)}%"
    return (
        query.where(
            or_(
                ScriptTemplate.name.ilike(term, escape="\\"),
                ScriptTemplate.description.ilike(term, escape="\\"),
                ScriptTemplate.slug.ilike(term, escape="\\"),
            )
        ),
        None,
    )


def _near_match_search(query: Select[Any], search: _Search) -> tuple[Select[Any], Any]:
    """For text no lexeme matches (a typo: "spooller"): trigram word similarity, served by the
    trigram index through `%>` (pg_trgm's word-similarity threshold, 0.6)."""
    lowered = search.text.lower()
    return (
        query.where(ScriptTemplate.search_text.op("%>")(lowered)),
        func.word_similarity(lowered, ScriptTemplate.search_text),
    )


@dataclass(frozen=True)
class TemplateFilters:
    category_slug: str | None = None
    search: str | None = None
    tags: tuple[str, ...] = ()
    managed: bool | None = None
    mine: bool = False
    shared: bool = False
    limit: int = 200
    offset: int = 0


def _visible_templates(principal: Principal) -> Select[ScriptTemplate]:
    return select(ScriptTemplate).where(
        ScriptTemplate.is_active.is_(True), template_visibility(principal)
    )


def list_templates(
    session: Session, principal: Principal, filters: TemplateFilters
) -> tuple[list[ScriptTemplate], int]:
    query = _filtered_templates(principal, filters)
    if query is None:
        return [], 0
    search = _search_terms(filters.search)
    if search is None:
        return _page(session, query, None, filters)
    # Widening stages, each only when the one before found nothing: templates with every
    # word; with some of the words; a trigram near match for a typo ("spooller"), computed
    # only then so the common search costs the full-text index alone; text with no words at
    # all ("100%") looked for literally.
    stages: list[Callable[[Select[Any], _Search], tuple[Select[Any], Any]]] = [
        functools.partial(_full_text_search, every_word=True)
    ]
    if search.any_words is not None:
        stages.append(functools.partial(_full_text_search, every_word=False))
    stages.append(_near_match_search if search.plain else _literal_search)
    rows: list[ScriptTemplate] = []
    total = 0
    for stage in stages:
        matched, rank = stage(query, search)
        rows, total = _page(session, matched, rank, filters)
        if total:
            break
    return rows, total


def _filtered_templates(principal: Principal, filters: TemplateFilters) -> Select[Any] | None:
    query = _visible_templates(principal)
    if filters.category_slug:
        query = query.join(ScriptCategory, ScriptTemplate.category_id == ScriptCategory.id).where(
            ScriptCategory.slug == filters.category_slug
        )
    tags = normalise_tags(filters.tags)
    if tags:
        # Tags are stored lower-cased, so any-of is an indexed array overlap.
        query = query.where(ScriptTemplate.tags.overlap(tags))
    if filters.managed:
        query = query.where(template_manageable(principal))
    if filters.mine:
        query = query.where(ScriptTemplate.created_by == principal.id)
    if filters.shared:
        if principal.team_id is None:
            return None
        query = query.where(
            ScriptTemplate.scope == "team",
            ScriptTemplate.team_id == principal.team_id,
            ScriptTemplate.account_id == principal.account_id,
        )
    return query


def _page(
    session: Session, query: Select[Any], rank: Any, filters: TemplateFilters
) -> tuple[list[ScriptTemplate], int]:
    # One round trip: the window count gives the unpaged total beside the page itself.
    order = (ScriptTemplate.name, ScriptTemplate.id)
    rows = session.execute(
        query.add_columns(func.count().over().label("total"))
        .order_by(*((rank.desc(), *order) if rank is not None else order))
        .limit(filters.limit)
        .offset(filters.offset)
    ).all()
    if rows:
        return [row[0] for row in rows], int(rows[0].total)
    if filters.offset == 0:
        return [], 0
    total = session.execute(select(func.count()).select_from(query.subquery())).scalar_one()
    return [], int(total)


def list_tags(session: Session, principal: Principal) -> list[dict[str, Any]]:
    """Every tag on a template the caller can see, with how many such templates carry it."""
    tag = func.unnest(ScriptTemplate.tags).table_valued("tag").render_derived()
    rows = session.execute(
        select(tag.c.tag, func.count().label("n"))
        .select_from(ScriptTemplate)
        .join(tag, literal_column("true"))
        .where(ScriptTemplate.is_active.is_(True), template_visibility(principal))
        .group_by(tag.c.tag)
        .order_by(tag.c.tag)
    ).all()
    return [{"tag": name, "template_count": int(count)} for name, count in rows]


def get_template_by_slug(session: Session, principal: Principal, slug: str) -> ScriptTemplate:
    """The caller's own account's template of that slug, else the built-in one."""
    template = session.scalars(
        _visible_templates(principal)
        .where(ScriptTemplate.slug == slug)
        # Slugs are unique per account and among built-ins: the account's own comes first.
        .order_by(ScriptTemplate.account_id.is_(None))
        .limit(1)
    ).first()
    if template is None:
        raise NotFound(TEMPLATE_NOT_FOUND, errors={"slug": [f"no template '{slug}'"]})
    return template


def get_template(
    session: Session, principal: Principal, template_id: uuid.UUID, *, for_update: bool = False
) -> ScriptTemplate:
    query = _visible_templates(principal).where(ScriptTemplate.id == template_id)
    if for_update:
        query = query.with_for_update()
    template = session.scalars(query).one_or_none()
    if template is None:
        raise NotFound(TEMPLATE_NOT_FOUND)
    return template


def list_versions(
    session: Session, principal: Principal, template_id: uuid.UUID
) -> list[ScriptTemplateVersion]:
    get_template(session, principal, template_id)
    return list(
        session.scalars(
            select(ScriptTemplateVersion)
            .where(ScriptTemplateVersion.template_id == template_id)
            .order_by(ScriptTemplateVersion.version.desc())
        )
    )


# ── Writing templates ─────────────────────────────────────────────────────


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
        # The seed files a team member's template with their team; keep that default.
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


# ── Generation ────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class GenerationResult:
    generation: ScriptGeneration
    template: ScriptTemplate
    rendered: RenderedScript
    state_version: int | None
    findings: list[Finding]


def _secret_delivery(
    session: Session, principal: Principal, template: ScriptTemplate, asked: str | None
) -> str:
    """The call's choice, else the template's default, else the account's, else inline."""
    if asked:
        return asked
    if template.secret_delivery:
        return template.secret_delivery
    account_default = session.execute(
        select(Account.default_secret_delivery).where(Account.id == principal.account_id)
    ).scalar_one_or_none()
    return account_default or "inline"


def generate_script(
    session: Session,
    principal: Principal,
    *,
    template_id: uuid.UUID,
    parameters: dict[str, Any],
    session_id: uuid.UUID | None = None,
    ai_session_id: uuid.UUID | None = None,
    secret_delivery: str | None = None,
) -> GenerationResult:
    template = get_template(session, principal, template_id)
    if ai_session_id is not None and not can_create_content(principal):
        # Linking a run bumps the session and adds the run to its note: a write, which viewers
        # may not make. Another account's session still reads as missing.
        owner_account = session.scalars(
            select(PilotSession.account_id).where(PilotSession.id == ai_session_id)
        ).one_or_none()
        if owner_account != principal.account_id:
            raise NotFound("AI session not found", errors={"ai_session_id": ["no such session"]})
        raise PermissionDenied(
            "linking a run to a session needs write access to that session",
            errors={"ai_session_id": ["viewers cannot change sessions"]},
        )
    delivery = _secret_delivery(session, principal, template, secret_delivery)
    try:
        rendered = compiled_templates.get(
            (template.id, template.version),
            template.script_body,
            template.parameters_schema,
            template.default_values,
            template.validation_rules,
        ).render(parameters, secret_delivery=delivery)
    except ScriptRenderError as exc:
        raise InvalidInput("Invalid parameters", errors={"parameters": exc.errors}) from exc
    except TemplateDefinitionError as exc:
        # Saved before a stricter rule (e.g. the preamble grammar): it renders nothing until
        # it is edited to pass.
        raise InvalidInput(
            "the template no longer passes validation; edit it first",
            errors={
                "template_id": [f"{key}: {'; '.join(msgs)}" for key, msgs in exc.errors.items()]
            },
        ) from exc
    # The stored copy is what is checked: it is the script with no secret in it, and a
    # finding's excerpt may be shown or logged.
    findings = powershell_check.check_script(rendered.stored_script)

    state_version = None
    if ai_session_id is not None:
        # Only a session of the caller's own account can be named; the account is part of the
        # UPDATE, so another account's session is untouched and reads as missing.
        try:
            state_version = events.bump(
                session,
                session_id=ai_session_id,
                account_id=principal.account_id,
                cause="script_generated",
            )
        except events.SessionNotFound as exc:
            raise NotFound(
                AI_SESSION_NOT_FOUND, errors={"ai_session_id": ["no such session"]}
            ) from exc
        except events.SessionReadOnly as exc:
            raise Conflict(
                "AI session is resolved; reopen it first",
                errors={"ai_session_id": ["session is resolved"]},
            ) from exc

    generation = ScriptGeneration(
        template_id=template.id,
        template_version=template.version,
        user_id=principal.id,
        account_id=principal.account_id,
        team_id=principal.team_id,
        session_id=session_id,
        ai_session_id=ai_session_id,
        parameters_used=rendered.redacted_values,
        generated_script=rendered.stored_script,
        secret_delivery=delivery,
    )
    session.add(generation)
    # One atomic increment: concurrent generations never lose a count.
    session.execute(
        update(ScriptTemplate)
        .where(ScriptTemplate.id == template.id)
        .values(usage_count=ScriptTemplate.usage_count + 1)
    )
    session.flush()
    return GenerationResult(
        generation=generation,
        template=template,
        rendered=rendered,
        state_version=state_version,
        findings=findings,
    )


def get_generation_download(
    session: Session, principal: Principal, generation_id: uuid.UUID
) -> tuple[ScriptGeneration, str]:
    """The caller's own generation made with env or prompt delivery, and its template's slug.
    Inline generations are not downloadable: their stored copy has the secrets redacted, so
    it would not run."""
    row = session.execute(
        select(ScriptGeneration, ScriptTemplate.slug)
        .join(ScriptTemplate, ScriptGeneration.template_id == ScriptTemplate.id)
        .where(
            ScriptGeneration.id == generation_id,
            ScriptGeneration.user_id == principal.id,
            ScriptGeneration.account_id == principal.account_id,
        )
    ).one_or_none()
    if row is None:
        raise NotFound("Generation not found")
    generation, slug = row
    if generation.secret_delivery == "inline":
        raise Conflict(
            "This script was generated with inline secrets, which are redacted from every stored "
            "copy; generate it again with secret_delivery env or prompt to download it",
            errors={"secret_delivery": ["download needs env or prompt delivery"]},
        )
    return generation, slug


def get_script_settings(session: Session, principal: Principal) -> dict[str, Any]:
    delivery = session.execute(
        select(Account.default_secret_delivery).where(Account.id == principal.account_id)
    ).scalar_one()
    return {"default_secret_delivery": delivery or "inline"}


def update_script_settings(
    session: Session, principal: Principal, data: dict[str, Any]
) -> dict[str, Any]:
    if not (principal.is_owner or principal.is_super_admin):
        raise PermissionDenied("Only account owners change the script settings")
    session.execute(
        update(Account)
        .where(Account.id == principal.account_id)
        .values(default_secret_delivery=data["default_secret_delivery"])
    )
    return get_script_settings(session, principal)


def list_generations(
    session: Session, principal: Principal, *, limit: int, offset: int
) -> tuple[list[tuple[ScriptGeneration, str]], int]:
    """The caller's generations, newest first, and their unpaged total."""
    mine = and_(
        ScriptGeneration.user_id == principal.id,
        ScriptGeneration.account_id == principal.account_id,
    )
    total = session.execute(
        select(func.count()).select_from(ScriptGeneration).where(mine)
    ).scalar_one()
    rows = session.execute(
        select(ScriptGeneration, ScriptTemplate.name)
        .join(ScriptTemplate, ScriptGeneration.template_id == ScriptTemplate.id)
        .where(mine)
        .order_by(ScriptGeneration.created_at.desc(), ScriptGeneration.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return [(gen, name) for gen, name in rows], int(total)
