"""The LLM request for a chat turn: what is read of the session (facts, active fix, script runs,
templates, history) and how it is laid out. The stable system prompt is the first system
block, marked for prompt caching; the per-turn context is a second block after the cache
breakpoint, so the cached prefix stays byte-identical across turns and sessions."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.pilot import fixes
from services.pilot.chat import offline
from services.pilot.chat.offline import next_step
from services.pilot.facts import facts_by_kind, list_facts
from services.pilot.prompts import (
    ASSISTANT_SYSTEM_PROMPT,
    format_context_block,
)
from shared.llm import (
    fit_history,
)
from shared.models import (
    AISession,
    ChatMessage,
    SuggestedFix,
)
from shared.models.exposed import ScriptSessionRun, ScriptTemplateSummary
from shared.permissions import template_visibility

CHAT_MAX_TOKENS = 2048
# Upper bound on the messages read for the history; fit_history then trims to the budget.
HISTORY_LOAD_LIMIT = 200
SCRIPT_RUNS_LIMIT = 20
TEMPLATES_LIMIT = 25


_CACHE_CONTROL = {"type": "ephemeral"}


@dataclass(frozen=True)
class LLMRequest:
    system: list[dict[str, Any]]
    messages: list[dict[str, Any]]
    max_tokens: int
    offline_text: str


# ── Reading the session for a request ──────────────────────────────────────


def _fix_context(fix: SuggestedFix | None) -> dict[str, Any] | None:
    if fix is None:
        return None
    return {
        "title": fix.title,
        "summary": fix.summary,
        "steps": list(fix.steps or []),
        "script": fix.script,
        "confidence": fix.confidence,
        "template_id": str(fix.template_id) if fix.template_id else None,
        "status": f"decided: {fix.decision}" if fix.decision else "proposed, no decision yet",
    }


def script_runs(
    session: Session, account_id: uuid.UUID, session_id: uuid.UUID
) -> list[dict[str, Any]]:
    """Scripts generated for the session, oldest first, with their parameters as stored:
    the scripts service replaced every sensitive value by the redaction marker before
    storing. The generated script text itself is not sent."""
    rows = session.scalars(
        select(ScriptSessionRun)
        .where(
            ScriptSessionRun.ai_session_id == session_id,
            ScriptSessionRun.account_id == account_id,
        )
        .order_by(ScriptSessionRun.created_at.desc(), ScriptSessionRun.id.desc())
        .limit(SCRIPT_RUNS_LIMIT)
    ).all()
    return [
        {
            "script_name": run.template_name,
            "status": "generated",
            "ran_at": run.created_at.isoformat(),
            "parameters": dict(run.parameters_used or {}),
        }
        for run in reversed(rows)
    ]


def fix_templates(session: Session, account_id: uuid.UUID) -> list[dict[str, Any]]:
    """Templates the account can see that a fix may name, most used first."""
    rows = session.scalars(
        select(ScriptTemplateSummary)
        .where(
            ScriptTemplateSummary.is_active.is_(True),
            ScriptTemplateSummary.status == "published",
            template_visibility(fixes.account_principal(account_id), ScriptTemplateSummary),
        )
        .order_by(
            ScriptTemplateSummary.usage_count.desc(),
            ScriptTemplateSummary.name,
            ScriptTemplateSummary.id,
        )
        .limit(TEMPLATES_LIMIT)
    ).all()
    return [{"id": str(t.id), "name": t.name, "description": t.description} for t in rows]


def history(session: Session, account_id: uuid.UUID, session_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(ChatMessage)
        .where(ChatMessage.session_id == session_id, ChatMessage.account_id == account_id)
        .order_by(ChatMessage.created_at.desc(), ChatMessage.id.desc())
        .limit(HISTORY_LOAD_LIMIT)
    ).all()
    return [{"role": m.role, "content": m.content} for m in reversed(rows)]


# ── Building the request ───────────────────────────────────────────────────


def build_request(
    session: Session, *, account_id: uuid.UUID, session_id: uuid.UUID, history_budget: int
) -> LLMRequest:
    facts = list_facts(session, fixes.account_principal(account_id), session_id)
    grouped = facts_by_kind(facts)
    fix = fixes.active_fix(session, account_id, session_id)
    about = session.execute(
        select(AISession.title, AISession.problem).where(
            AISession.id == session_id, AISession.account_id == account_id
        )
    ).one()
    matches = offline.session_matches(
        session, account_id, title=about.title, problem=about.problem, grouped=grouped
    )
    context = format_context_block(
        grouped,
        _fix_context(fix),
        script_runs(session, account_id, session_id),
        offline.context_templates(matches, fix_templates(session, account_id), TEMPLATES_LIMIT),
    )
    said = history(session, account_id, session_id)
    system: list[dict[str, Any]] = [
        {"type": "text", "text": ASSISTANT_SYSTEM_PROMPT, "cache_control": dict(_CACHE_CONTROL)},
        {"type": "text", "text": context},
    ]
    return LLMRequest(
        system=system,
        messages=fit_history(said, history_budget),
        max_tokens=CHAT_MAX_TOKENS,
        offline_text=offline.offline_answer(
            grouped,
            _fix_context(fix),
            next((m["content"] for m in reversed(said) if m["role"] == "user"), None),
            matches,
            next_step(grouped, fix.title if fix else None),
        ),
    )
