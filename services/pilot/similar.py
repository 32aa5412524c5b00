"""Similar past sessions: the account's resolved sessions whose problem and facts are closest
to a session's, with what caused and fixed each and the templates used.

Ranked in PostgreSQL alone: full-text rank of title, problem and facts (any of the session's
words, as the library search widens to) plus trigram similarity of the problem statements
(pg_trgm), so a session worded differently but about the same machine, error code or product
still ranks. No vector store: each resolved session's search document is stored on resolve
(services.pilot.search_document; a generated tsvector and a trigram index), so a request reads
only the sessions that match (bench/test_bench_similar.py has the cost).
Always scoped to the session's account: another account's session is never read, whatever
its similarity. No Flask.
"""

from __future__ import annotations

import re
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from services.pilot import sessions
from services.pilot.search_document import MAX_TEXT_CHARS, PROBLEM_KINDS
from shared.models import SessionFact, SuggestedFix
from shared.models.exposed import ScriptSessionRun, ScriptTemplateSummary
from shared.permissions import template_visibility
from shared.principal import Principal

MAX_RESULTS = 5
MAX_QUERY_WORDS = 60
# A session that shares no word with this one is a candidate only when its problem
# statement's trigram similarity reaches this (a typo, another spelling): found through the
# trigram index (`%` is similarity at least pg_trgm.similarity_threshold, set to this for the
# transaction). Sessions that share a word are found through the full-text index.
TRIGRAM_ONLY = 0.3

_WORD_RE = re.compile(r"[^\W_]+", re.UNICODE)

_THRESHOLD_SQL = text("SELECT set_config('pg_trgm.similarity_threshold', :threshold, true)")
# Only the candidates the two GIN indexes find are ranked: full-text rank of the stored
# document plus trigram similarity of the statement.
_SIMILAR_SQL = text(
    """
    WITH asked AS MATERIALIZED (
        SELECT websearch_to_tsquery('english', :words) AS query
    ),
    candidates AS MATERIALIZED (
        SELECT s.id
        FROM pilot.ai_sessions s, asked
        WHERE s.search_vector @@ asked.query
          AND s.account_id = :account_id AND s.status = 'resolved' AND s.id <> :session_id
        UNION
        SELECT s.id
        FROM pilot.ai_sessions s
        WHERE s.search_statement % :statement
          AND s.account_id = :account_id AND s.status = 'resolved' AND s.id <> :session_id
    ),
    scored AS MATERIALIZED (
        SELECT s.id, s.title, s.ticket_ref, s.resolved_at,
               ts_rank(s.search_vector, asked.query) AS rank,
               similarity(s.search_statement, :statement) AS trigram
        FROM candidates c
        JOIN pilot.ai_sessions s ON s.id = c.id, asked
    )
    SELECT id, title, ticket_ref, resolved_at, rank, trigram
    FROM scored
    ORDER BY rank + trigram DESC, resolved_at DESC NULLS LAST, id
    LIMIT :limit
    """
)


@dataclass(frozen=True)
class SimilarSession:
    session_id: uuid.UUID
    title: str
    ticket_ref: str | None
    resolved_at: datetime | None
    score: float
    root_cause: list[str] = field(default_factory=list)
    resolution: list[str] = field(default_factory=list)
    templates_used: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "title": self.title,
            "ticket_ref": self.ticket_ref,
            "resolved_at": self.resolved_at,
            "score": self.score,
            "root_cause": self.root_cause,
            "resolution": self.resolution,
            "templates_used": self.templates_used,
        }


def _words(text_: str) -> str | None:
    seen: list[str] = []
    for word in _WORD_RE.findall(text_):
        if word not in seen and word != "or":
            seen.append(word)
        if len(seen) == MAX_QUERY_WORDS:
            break
    return " or ".join(seen) if seen else None


def problem_text(session: Session, principal: Principal, session_id: uuid.UUID) -> tuple[str, str]:
    """(title, problem and facts; title and problem), lower-cased, whitespace folded."""
    found = sessions.get_session(session, principal, session_id)
    facts = session.scalars(
        select(SessionFact.text)
        .where(
            SessionFact.session_id == session_id,
            SessionFact.account_id == principal.account_id,
            SessionFact.kind.in_(PROBLEM_KINDS),
        )
        .order_by(SessionFact.created_at, SessionFact.id)
    ).all()
    statement = " ".join(f"{found.title} {found.problem or ''}".split()).lower()
    body = " ".join(" ".join([statement, *facts]).split()).lower()
    return body[:MAX_TEXT_CHARS], statement[:MAX_TEXT_CHARS]


def similar_sessions(
    session: Session, principal: Principal, session_id: uuid.UUID, *, limit: int = MAX_RESULTS
) -> list[SimilarSession]:
    """Up to ``limit`` resolved sessions of the principal's account closest to the session
    (404 when the session is not the principal's account's)."""
    body, statement = problem_text(session, principal, session_id)
    words = _words(body)
    if words is None:
        return []
    session.execute(_THRESHOLD_SQL, {"threshold": str(TRIGRAM_ONLY)})
    rows = session.execute(
        _SIMILAR_SQL,
        {
            "account_id": principal.account_id,
            "session_id": session_id,
            "words": words,
            "statement": statement,
            "limit": min(max(limit, 1), MAX_RESULTS),
        },
    ).all()
    ids = [row.id for row in rows]
    causes, resolutions = _facts(session, principal.account_id, ids)
    fixed_by = _decided_fixes(session, principal.account_id, ids)
    used = _templates_used(session, principal, ids)
    return [
        SimilarSession(
            session_id=row.id,
            title=row.title,
            ticket_ref=row.ticket_ref,
            resolved_at=row.resolved_at,
            score=round(float(row.rank) + float(row.trigram), 4),
            root_cause=causes.get(row.id, []),
            resolution=resolutions.get(row.id) or fixed_by.get(row.id, []),
            templates_used=used.get(row.id, []),
        )
        for row in rows
    ]


def _facts(
    session: Session, account_id: uuid.UUID, ids: list[uuid.UUID]
) -> tuple[dict[uuid.UUID, list[str]], dict[uuid.UUID, list[str]]]:
    causes: dict[uuid.UUID, list[str]] = defaultdict(list)
    resolutions: dict[uuid.UUID, list[str]] = defaultdict(list)
    if not ids:
        return causes, resolutions
    rows = session.execute(
        select(SessionFact.session_id, SessionFact.kind, SessionFact.text)
        .where(
            SessionFact.session_id.in_(ids),
            SessionFact.account_id == account_id,
            SessionFact.kind.in_(("root_cause", "resolution")),
        )
        .order_by(SessionFact.created_at, SessionFact.id)
    ).all()
    for sid, kind, fact_text in rows:
        (causes if kind == "root_cause" else resolutions)[sid].append(fact_text)
    return causes, resolutions


def _decided_fixes(
    session: Session, account_id: uuid.UUID, ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[str]]:
    found: dict[uuid.UUID, list[str]] = defaultdict(list)
    if not ids:
        return found
    rows = session.execute(
        select(SuggestedFix.session_id, SuggestedFix.title)
        .where(
            SuggestedFix.session_id.in_(ids),
            SuggestedFix.account_id == account_id,
            SuggestedFix.decision.is_not(None),
            SuggestedFix.decision != "dismissed",
        )
        .order_by(SuggestedFix.created_at, SuggestedFix.id)
    ).all()
    for sid, title in rows:
        found[sid].append(title)
    return found


def _templates_used(
    session: Session, principal: Principal, ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[dict[str, Any]]]:
    """Templates generated for the session, and the template its carried-out fix named (those
    the principal can see)."""
    account_id = principal.account_id
    visible = template_visibility(principal, ScriptTemplateSummary)
    found: dict[uuid.UUID, dict[uuid.UUID, dict[str, Any]]] = defaultdict(dict)
    if not ids:
        return {}
    generated = session.execute(
        select(ScriptSessionRun.ai_session_id, ScriptTemplateSummary.id, ScriptTemplateSummary.name)
        .join(ScriptTemplateSummary, ScriptTemplateSummary.id == ScriptSessionRun.template_id)
        .where(
            ScriptSessionRun.ai_session_id.in_(ids),
            ScriptSessionRun.account_id == account_id,
            visible,
        )
        .order_by(ScriptSessionRun.created_at, ScriptSessionRun.id)
    ).all()
    named = session.execute(
        select(SuggestedFix.session_id, ScriptTemplateSummary.id, ScriptTemplateSummary.name)
        .join(ScriptTemplateSummary, ScriptTemplateSummary.id == SuggestedFix.template_id)
        .where(
            SuggestedFix.session_id.in_(ids),
            SuggestedFix.account_id == account_id,
            SuggestedFix.decision.is_not(None),
            SuggestedFix.decision != "dismissed",
            visible,
        )
    ).all()
    for sid, template_id, name in [*generated, *named]:
        if sid is not None:
            found[sid].setdefault(template_id, {"template_id": template_id, "name": name})
    return {sid: list(templates.values()) for sid, templates in found.items()}
