"""A fix becomes a template: the draft made when an engineer decides `draft_template` or
`build_template` on a fix that carries a script.

The script's ticket-specific literals become typed parameters whose defaults are the fix's
values (shared.powershell_literals, on the syntax tree, offline); with an API key the LLM's
proposal of names, labels, types and which literals to lift is used where it passes the checks
of services.pilot.draft_params. The rest of the script is kept as written. The draft is a
personal template of the deciding engineer, `status: "draft"` and linked to the fix, so the
library does not list it until it is published (the scripts service's publish route, which
runs the engine's validation and the static check first, as it does for every template it
saves). Pilot writes no scripts table itself: the draft and its version 1 are filed by the
scripts schema's function exposed.file_template_draft, and the category is read through the
exposed views. No Flask.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from sqlalchemy import String, Uuid, bindparam, select, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Session

from services.pilot import library_match
from services.pilot.draft_params import ChosenParameters, Proposal, choose_parameters
from shared import powershell_check
from shared.models import AISession
from shared.models.ai_session import SuggestedFix
from shared.models.exposed import ScriptCategorySummary, ScriptTemplateSummary
from shared.permissions import can_create_content
from shared.principal import Principal

TEMPLATE_DECISIONS = frozenset({"draft_template", "build_template"})
DRAFT_TAG = "from-fix"
_SLUG_RE = re.compile(r"[^a-z0-9]+")

# Inserts the draft (personal, status draft, linked to the fix) and its version 1 with the
# scripts role's privileges, after checking the creator is a user of the account; the id back.
_FILE_DRAFT = text(
    "SELECT exposed.file_template_draft(:category_id, :account_id, :created_by, :name, :slug,"
    " :description, :use_case, :script_body, :parameters_schema, :tags, :source_fix_id)"
).bindparams(
    *(
        bindparam(key, type_=Uuid())
        for key in ("category_id", "account_id", "created_by", "source_fix_id")
    ),
    *(
        bindparam(key, type_=String())
        for key in ("name", "slug", "description", "use_case", "script_body")
    ),
    bindparam("parameters_schema", type_=JSONB()),
    bindparam("tags", type_=ARRAY(String())),
)


@dataclass(frozen=True)
class DraftTemplate:
    """The filed draft, as the decision's answer names it."""

    id: uuid.UUID
    name: str
    slug: str
    status: str = "draft"


@dataclass(frozen=True)
class Draft:
    template: DraftTemplate
    chosen: ChosenParameters
    findings: list[powershell_check.Finding]

    def as_dict(self) -> dict[str, object]:
        return {
            "template_id": self.template.id,
            "status": self.template.status,
            "name": self.template.name,
            "slug": self.template.slug,
            "parameters": [p.as_schema() for p in self.chosen.lifted.parameters],
            "script_findings": [f.as_dict() for f in self.findings],
            "generator": self.chosen.generator,
            "parameter_sources": dict(self.chosen.sources),
            "rejected_proposals": list(self.chosen.rejected),
        }


def _slug(title: str, fix_id: uuid.UUID) -> str:
    base = _SLUG_RE.sub("-", title.lower()).strip("-")[:180] or "fix"
    # One draft per fix (a fix takes one template decision), so the fix id keeps it unique.
    return f"{base}-{fix_id.hex[:8]}"


def _category(session: Session, fix: SuggestedFix, problem: str | None) -> uuid.UUID | None:
    """The category of the template the fix named, else of the library template that best
    matches what the fix does, else the first category."""
    if fix.template_id is not None:
        found = session.scalar(
            select(ScriptTemplateSummary.category_id).where(
                ScriptTemplateSummary.id == fix.template_id
            )
        )
        if found is not None:
            return found
    about = library_match.session_text(problem, fix.title, [fix.summary or ""])
    for match in library_match.rank_templates(session, fix.account_id, about, limit=1):
        return match.category_id
    return session.scalar(
        select(ScriptCategorySummary.id)
        .where(ScriptCategorySummary.is_active.is_(True))
        .order_by(ScriptCategorySummary.sort_order, ScriptCategorySummary.slug)
    )


def draft_from_fix(
    session: Session,
    principal: Principal,
    fix: SuggestedFix,
    decision: str,
    proposal: Proposal | None = None,
) -> Draft | None:
    """The draft template for a template decision on a fix with a script, in the caller's
    transaction; None for any other decision or a fix without a script. ``proposal``: what
    the LLM proposed for the script's parameters (asked before the transaction), checked here
    literal by literal."""
    if decision not in TEMPLATE_DECISIONS or not (fix.script or "").strip():
        return None
    if not can_create_content(principal):  # pragma: no cover - deciding already needs this
        return None
    assert fix.script is not None
    chosen = choose_parameters(fix.script, proposal)
    lifted = chosen.lifted
    problem = session.scalar(select(AISession.problem).where(AISession.id == fix.session_id))
    category_id = _category(session, fix, problem)
    if category_id is None:  # no library loaded at all: nothing to file the draft under
        return None
    name, slug = fix.title[:200], _slug(fix.title, fix.id)
    template_id: uuid.UUID = session.execute(
        _FILE_DRAFT,
        {
            "category_id": category_id,
            "account_id": principal.account_id,
            "created_by": principal.id,
            "name": name,
            "slug": slug,
            "description": fix.summary,
            "use_case": problem,
            "script_body": lifted.body,
            "parameters_schema": lifted.parameters_schema,
            "tags": [DRAFT_TAG],
            "source_fix_id": fix.id,
        },
    ).scalar_one()
    template = DraftTemplate(id=template_id, name=name, slug=slug)
    return Draft(template, chosen, powershell_check.check_script(lifted.body))
