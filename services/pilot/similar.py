"""Similar past sessions: the account's resolved sessions whose problem and facts are closest
to a session's, with what caused and fixed each and the templates used.

Ranked in PostgreSQL alone: full-text rank of title, problem and facts (any of the session's
words, as the library search widens to) plus trigram similarity of the problem statements
(pg_trgm), so a session worded differently but about the same machine, error code or product
still ranks. No vector store; computed per request over the account's newest resolved
sessions (bench/test_bench_similar.py has the cost).
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

from sqlalchemy import bindparam, select, text
from sqlalchemy.orm import Session

from services.pilot import sessions
from shared.models import ScriptTemplate, SessionFact, SuggestedFix
from shared.models.exposed import ScriptSessionRun
from shared.permissions import template_visibility
from shared.principal import Principal

MAX_RESULTS = 5
# The newest resolved sessions of the account that are compared: bounds the work per request.
SCAN_LIMIT = 5000
MAX_QUERY_WORDS = 60
MAX_TEXT_CHARS = 8000
# Below this, a candidate shares no word and only chance trigrams: not similar.
MIN_TRIGRAM = 0.08
PREFIX_LETTERS = 5
# The kinds that describe the problem (a resolution says how it ended, not what it was).
PROBLEM_KINDS = ("symptom", "observation", "confirmed", "ruled_out", "environment", "root_cause")

_WORD_RE = re.compile(r"[^\W_]+", re.UNICODE)

_SIMILAR_SQL = text(
    """
    WITH asked AS MATERIALIZED (
        SELECT websearch_to_tsquery('english', :words) AS query
    ),
    candidates AS MATERIALIZED (
        SELECT s.id, s.title, s.problem, s.ticket_ref, s.resolved_at
        FROM ai_sessions s
        WHERE s.account_id = :account_id AND s.status = 'resolved' AND s.id <> :session_id
        ORDER BY s.resolved_at DESC NULLS LAST, s.id
        LIMIT :scan_limit
    ),
    fact_text AS MATERIALIZED (
        SELECT f.session_id, string_agg(f.text, ' ' ORDER BY f.created_at, f.id) AS facts
        FROM session_facts f
        JOIN candidates c ON c.id = f.session_id
        WHERE f.account_id = :account_id AND f.kind IN :kinds
        GROUP BY f.session_id
    ),
    docs AS MATERIALIZED (
        SELECT c.id, c.title, c.ticket_ref, c.resolved_at,
               left(lower(concat_ws(' ', c.title, c.problem, ft.facts)), :max_chars) AS body,
               left(lower(concat_ws(' ', c.title, c.problem)), :max_chars) AS statement
        FROM candidates c
        LEFT JOIN fact_text ft ON ft.session_id = c.id
    ),
    scored AS MATERIALIZED (
        SELECT d.id, d.title, d.ticket_ref, d.resolved_at,
               -- Stemming every document is the cost: only those sharing a word's first
               -- letters with the session are ranked (the rest can still match on trigrams).
               CASE WHEN d.body ~ :prefixes
                    THEN ts_rank(to_tsvector('english', d.body), asked.query) ELSE 0 END AS rank,
               -- Trigrams of the problem statement only: the facts are many and long, and
               -- similarity() costs more than stemming; the full text covers them.
               similarity(d.statement, :statement) AS trigram
        FROM docs d, asked
    )
    SELECT id, title, ticket_ref, resolved_at, rank, trigram
    FROM scored
    WHERE rank > 0 OR trigram >= :min_trigram
    ORDER BY rank + trigram DESC, resolved_at DESC NULLS LAST, id
    LIMIT :limit
    """
).bindparams(bindparam("kinds", expanding=True))


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


def _prefixes(text_: str) -> str:
    """A regular expression matching a word that starts like one of the text's words (their
    first five letters: "printer" finds "printing")."""
    starts = sorted({w[:PREFIX_LETTERS] for w in _WORD_RE.findall(text_) if len(w) >= 3})
    return r"\m(?:" + "|".join(starts) + ")" if starts else "$^"


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
    rows = session.execute(
        _SIMILAR_SQL,
        {
            "account_id": principal.account_id,
            "session_id": session_id,
            "scan_limit": SCAN_LIMIT,
            "kinds": list(PROBLEM_KINDS),
            "max_chars": MAX_TEXT_CHARS,
            "words": words,
            "prefixes": _prefixes(body),
            "statement": statement,
            "min_trigram": MIN_TRIGRAM,
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
    visible = template_visibility(principal)
    found: dict[uuid.UUID, dict[uuid.UUID, dict[str, Any]]] = defaultdict(dict)
    if not ids:
        return {}
    generated = session.execute(
        select(ScriptSessionRun.ai_session_id, ScriptTemplate.id, ScriptTemplate.name)
        .join(ScriptTemplate, ScriptTemplate.id == ScriptSessionRun.template_id)
        .where(
            ScriptSessionRun.ai_session_id.in_(ids),
            ScriptSessionRun.account_id == account_id,
            visible,
        )
        .order_by(ScriptSessionRun.created_at, ScriptSessionRun.id)
    ).all()
    named = session.execute(
        select(SuggestedFix.session_id, ScriptTemplate.id, ScriptTemplate.name)
        .join(ScriptTemplate, ScriptTemplate.id == SuggestedFix.template_id)
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
