"""Reading the script library: categories, template search and listing, tags, one template and
its versions. No Flask; every function takes an open SQLAlchemy session (the caller owns the
transaction) and the acting principal, and sees only what the principal may see."""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, literal_column, or_, select
from sqlalchemy.orm import Session

from shared.errors import (
    TEMPLATE_NOT_FOUND,
    NotFound,
)
from shared.models import (
    ScriptCategory,
    ScriptTemplate,
    ScriptTemplateVersion,
)
from shared.permissions import (
    template_manageable,
    template_visibility,
)
from shared.principal import Principal


def list_categories(session: Session, principal: Principal) -> list[dict[str, Any]]:
    counts = (
        select(ScriptTemplate.category_id, func.count().label("n"))
        .where(
            ScriptTemplate.is_active.is_(True),
            ScriptTemplate.status == "published",
            template_visibility(principal),
        )
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
    # A draft made from a fix is opened by id and listed among its creator's drafts, never in
    # the library until it is published.
    query = _visible_templates(principal).where(ScriptTemplate.status == "published")
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
        .where(
            ScriptTemplate.is_active.is_(True),
            ScriptTemplate.status == "published",
            template_visibility(principal),
        )
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
