"""Template drafts made from a fix: listing one's drafts and publishing one to the team.

A draft is written by the FlowPilot service when an engineer decides `draft_template` or
`build_template` on a fix with a script: personal, `status = 'draft'`, linked to the fix. The
library does not list drafts. Publishing runs the same engine validation and static check as
any template save, then moves the template to the publisher's team (or keeps it personal when
they have none) and marks it published. No Flask.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.scripts import catalogue, templates
from services.scripts.engine import ScriptTemplateEngine, TemplateDefinitionError
from shared.errors import Conflict, InvalidInput, PermissionDenied
from shared.models import ScriptTemplate, User
from shared.permissions import template_visibility
from shared.principal import Principal

_engine = ScriptTemplateEngine()


def list_drafts(session: Session, principal: Principal) -> list[ScriptTemplate]:
    """The drafts the principal may see (their own; an owner's view includes the account's),
    newest first."""
    return list(
        session.scalars(
            select(ScriptTemplate)
            .where(
                ScriptTemplate.is_active.is_(True),
                ScriptTemplate.status == "draft",
                template_visibility(principal),
            )
            .order_by(ScriptTemplate.created_at.desc(), ScriptTemplate.id)
        )
    )


def can_publish(principal: Principal, template: ScriptTemplate) -> bool:
    """The draft's creator, or an owner of its account."""
    if template.account_id != principal.account_id:
        return principal.is_super_admin
    return template.created_by == principal.id or principal.is_owner


def publish_template(
    session: Session, principal: Principal, template_id: uuid.UUID
) -> ScriptTemplate:
    template = catalogue.get_template(session, principal, template_id, for_update=True)
    if not can_publish(principal, template):
        raise PermissionDenied("Only the draft's creator or an account owner can publish it")
    if template.status != "draft":
        raise Conflict("This template is already published", errors={"status": ["published"]})
    try:
        _engine.validate_template(
            template.script_body,
            template.parameters_schema,
            template.default_values,
            template.validation_rules,
        )
    except TemplateDefinitionError as exc:
        raise InvalidInput("Invalid template definition", errors=exc.errors) from exc
    templates.check_body(template.script_body, template.acknowledged_findings)
    team_id = _creator_team(session, template) or principal.team_id
    if team_id is not None:
        template.scope, template.team_id = "team", team_id
    template.status = "published"
    session.flush()
    return template


def _creator_team(session: Session, template: ScriptTemplate) -> uuid.UUID | None:
    if template.created_by is None:
        return None
    return session.scalar(
        select(User.team_id).where(
            User.id == template.created_by, User.account_id == template.account_id
        )
    )
