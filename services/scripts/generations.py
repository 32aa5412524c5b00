"""Generating scripts from templates, their downloads and history, and the account's script
settings. No Flask; every function takes an open SQLAlchemy session (the caller owns the
transaction) and the acting principal."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, select, update
from sqlalchemy.orm import Session

from services.scripts.catalogue import get_template
from services.scripts.engine import (
    CompiledTemplateCache,
    RenderedScript,
    ScriptRenderError,
    TemplateDefinitionError,
)
from services.scripts.templates import engine
from shared import events, powershell_check
from shared.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
)
from shared.models import (
    Account,
    ScriptGeneration,
    ScriptTemplate,
)
from shared.models.exposed import PilotSession
from shared.permissions import (
    can_create_content,
)
from shared.powershell_check import Finding
from shared.principal import Principal
from shared.session_errors import session_write_errors

# Parsed and validated once per (template id, version) in each process; see the class.
compiled_templates = CompiledTemplateCache(engine)


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
        with session_write_errors(
            read_only="AI session is resolved; reopen it first", field="ai_session_id"
        ):
            state_version = events.bump(
                session,
                session_id=ai_session_id,
                account_id=principal.account_id,
                cause="script_generated",
            )

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
