"""Which library templates fit a session: the session's problem and facts ranked against the
templates the account can see, with the library's own ranked search documents.

The scripts service keeps each template's weighted search vector (name A, tags B, description
and use case C, parameter labels D) in PostgreSQL; this reads the same column, through the view
exposed.scripts_templates, with the same any-of-the-words full-text query the library's search
widens to, so the copilot and the library agree on what a template is about. No Flask.

The match score is in [0, 1]: the share of the template's name words the session mentions
(half of it), of its tags (a little), and how many of the session's words the template's
document has (capped at five), so a template whose title the facts spell out scores high and
one sharing a single common word ("printer") does not.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import String, bindparam, func, literal_column, select, text
from sqlalchemy.orm import Session

from shared.models.exposed import ScriptTemplateSummary as Template
from shared.permissions import template_visibility
from shared.principal import Principal

SEARCH_CONFIG = "english"
# Words of the session's text sent to the query: enough for a long problem statement.
MAX_QUERY_WORDS = 60
MAX_QUERY_CHARS = 4000
# A proposal needs this score and this many of the session's words in the template.
PROPOSE_SCORE = 0.5
PROPOSE_MIN_MATCHED = 2
# How many of the session's words it takes to count as fully answered.
MATCHED_FOR_FULL_SCORE = 5
_NAME_WEIGHT = 0.5
_TAG_WEIGHT = 0.15

_WORD_RE = re.compile(r"[^\W_]+", re.UNICODE)


@dataclass(frozen=True)
class TemplateMatch:
    template_id: uuid.UUID
    name: str
    description: str | None
    use_case: str | None
    rank: float
    matched: int
    score: float
    # The template's category: what a draft made from a fix this template matches is filed
    # under (services.pilot.drafts).
    category_id: uuid.UUID | None = None

    @property
    def confidence(self) -> int:
        """The score as a fix's confidence (0-100); never certain from words alone."""
        return max(0, min(90, round(self.score * 100)))

    @property
    def proposable(self) -> bool:
        return self.score >= PROPOSE_SCORE and self.matched >= PROPOSE_MIN_MATCHED


def session_text(problem: str | None, title: str | None, facts: Sequence[str]) -> str:
    return " ".join(part for part in (title, problem, *facts) if part)[:MAX_QUERY_CHARS]


def _any_words(text_: str) -> str | None:
    words: list[str] = []
    seen: set[str] = set()
    for word in _WORD_RE.findall(text_.lower()):
        # "or" is websearch_to_tsquery's operator; digits alone say nothing about a template.
        if word in seen or word == "or" or word.isdigit():
            continue
        seen.add(word)
        words.append(word)
        if len(words) == MAX_QUERY_WORDS:
            break
    return " or ".join(words) if words else None


def rank_templates(
    session: Session, account_id: uuid.UUID, query_text: str, *, limit: int = 5
) -> list[TemplateMatch]:
    """The account's visible, published templates that share words with ``query_text``,
    best first."""
    words = _any_words(query_text)
    if words is None:
        return []
    config = literal_column(f"'{SEARCH_CONFIG}'", type_=String)
    query = func.websearch_to_tsquery(config, bindparam("words", words, type_=String))
    asked = set(
        session.scalar(
            select(
                func.tsvector_to_array(
                    func.to_tsvector(config, bindparam("asked", query_text, type_=String))
                )
            )
        )
        or []
    )
    name_lexemes = func.tsvector_to_array(func.to_tsvector(config, Template.name))
    tag_lexemes = func.tsvector_to_array(
        func.to_tsvector(config, func.replace(func.array_to_string(Template.tags, " "), "-", " "))
    )
    rows = session.execute(
        select(
            Template.id,
            Template.category_id,
            Template.name,
            Template.description,
            Template.use_case,
            func.ts_rank(Template.search_vector, query).label("rank"),
            name_lexemes.label("name_lexemes"),
            tag_lexemes.label("tag_lexemes"),
            func.tsvector_to_array(Template.search_vector).label("lexemes"),
        )
        .where(
            Template.is_active.is_(True),
            Template.status == "published",
            template_visibility(_account_principal(account_id), Template),
            Template.search_vector.op("@@")(query),
        )
        .order_by(text("rank DESC"), Template.usage_count.desc(), Template.id)
        .limit(max(limit * 4, 20))
    ).all()
    matches = []
    for row in rows:
        score, matched = match_score(
            asked, set(row.name_lexemes or []), set(row.tag_lexemes or []), set(row.lexemes or [])
        )
        matches.append(
            TemplateMatch(
                template_id=row.id,
                name=row.name,
                description=row.description,
                use_case=row.use_case,
                rank=float(row.rank),
                matched=matched,
                score=round(score, 4),
                category_id=row.category_id,
            )
        )
    matches.sort(key=lambda m: (-m.score, -m.rank, m.name))
    return matches[:limit]


def match_score(
    asked: set[str], name: set[str], tags: set[str], document: set[str]
) -> tuple[float, int]:
    """(score in [0, 1], how many of the asked lexemes the template's document has)."""
    matched = len(asked & document)
    name_share = len(asked & name) / len(name) if name else 0.0
    tag_share = len(asked & tags) / len(tags) if tags else 0.0
    score = (
        _NAME_WEIGHT * name_share
        + _TAG_WEIGHT * tag_share
        + (1 - _NAME_WEIGHT - _TAG_WEIGHT) * min(1.0, matched / MATCHED_FOR_FULL_SCORE)
    )
    return round(score, 4), matched


def _account_principal(account_id: uuid.UUID) -> Principal:
    # The account as a whole (an owner of it): every template any of its engineers could name.
    return Principal(
        id=uuid.UUID(int=0),
        account_id=account_id,
        team_id=None,
        role="owner",
        is_super_admin=False,
        email="",
    )
