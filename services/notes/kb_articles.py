"""The knowledge base: KB articles engineers keep from resolved sessions, listed and searched
per account.

Keeping takes the session's current ``kb_article`` note (the preview: the cache, fingerprint
reuse or one generation, as any note) and stores it as the session's article; keeping again
replaces the text with the then-current one. Everything is scoped by account: another
account's article or session is never found (404).

No Flask; the API passes ids and plain values.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, literal_column, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from services.notes.bundle import load_bundle, session_state
from services.notes.context import NotesContext
from services.notes.preview import preview_note
from shared.db import db
from shared.errors import AI_SESSION_NOT_FOUND, Conflict, NotFound, PermissionDenied
from shared.models import KbArticle

KB_KIND = "kb_article"
KB_ARTICLE_NOT_FOUND = "KB article not found"
SEARCH_CONFIG = "english"
TITLE_MAX = 300


@dataclass(frozen=True)
class KeptArticle:
    id: uuid.UUID
    session_id: uuid.UUID
    state_version: int
    title: str
    markdown: str
    citations: list[Any]
    generator: str | None
    model: str | None
    kept_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    # True when this keep replaced an article kept earlier for the session.
    replaced: bool = False


def _kept(row: KbArticle, *, replaced: bool = False) -> KeptArticle:
    return KeptArticle(
        id=row.id,
        session_id=row.session_id,
        state_version=row.state_version,
        title=row.title,
        markdown=row.markdown,
        citations=list(row.citations or []),
        generator=row.generator,
        model=row.model,
        kept_by=row.kept_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
        replaced=replaced,
    )


def _title(session_id: uuid.UUID) -> str:
    """The article's title: the session's title (else its problem), generalised like the
    article itself, since the bundle of the kind is."""
    loaded = load_bundle(session_id, KB_KIND)
    if loaded is None:
        raise NotFound(KB_ARTICLE_NOT_FOUND)
    bundle = loaded.bundle
    title = " ".join(((bundle.title or "").strip() or bundle.problem_statement()).split())
    return (title or "Untitled article")[:TITLE_MAX]


def keep_article(
    ctx: NotesContext,
    *,
    account_id: uuid.UUID,
    session_id: uuid.UUID,
    user_id: uuid.UUID,
    wait_s: float,
    may_write: bool = True,
) -> KeptArticle:
    """Keep the session's current KB article. 404: no such session in the account (whoever
    asks); 403: ``may_write`` is false (viewers read only); 409: the session is not resolved,
    or the article is still being generated after ``wait_s``."""
    if session_state(session_id, account_id=account_id) is None:
        raise NotFound(AI_SESSION_NOT_FOUND)
    if not may_write:
        raise PermissionDenied("Engineer access required to keep KB articles")
    outcome = preview_note(
        ctx, session_id=session_id, account_id=account_id, kind=KB_KIND, wait_s=wait_s
    )
    if outcome.payload is None:
        raise Conflict(
            "the KB article is still being generated; keep it again in a moment",
            errors={"retry_after": outcome.retry_after},
        )
    payload = outcome.payload
    title = _title(session_id)
    values: dict[str, Any] = {
        "state_version": outcome.state_version,
        "title": title,
        "markdown": str(payload["markdown"]),
        "citations": payload.get("citations") or [],
        "generator": payload.get("generator"),
        "model": payload.get("model"),
        "fingerprint": payload.get("fingerprint"),
        "kept_by": user_id,
    }
    with db.transaction() as session:
        # One statement, so two engineers keeping at once get one row; `xmax = 0` tells an
        # inserted row from an updated one.
        upserted: Any = session.execute(
            pg_insert(KbArticle)
            .values(id=uuid.uuid4(), account_id=account_id, session_id=session_id, **values)
            .on_conflict_do_update(
                index_elements=[KbArticle.session_id],
                set_={**values, "updated_at": func.now()},
                # A session belongs to one account for good; never touch another's row.
                where=KbArticle.account_id == account_id,
            )
            .returning(KbArticle.id, literal_column("xmax = 0").label("inserted"))
        ).one()
        row = session.get(KbArticle, upserted.id, populate_existing=True)
        assert row is not None
        return _kept(row, replaced=not bool(upserted.inserted))


def _escape_like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def list_articles(
    session: Session,
    *,
    account_id: uuid.UUID,
    search: str | None = None,
    limit: int = 20,
    offset: int = 0,
) -> tuple[list[KeptArticle], int]:
    """The account's kept articles and their unpaged total: newest first, or, with
    ``search``, best match first (full text over the title and the article, weighted to the
    title, websearch syntax; a literal match of the text counts too, so a part of a word or an
    error code is found)."""
    conditions: list[Any] = [KbArticle.account_id == account_id]
    order: list[Any] = []
    if search:
        words = func.websearch_to_tsquery(literal_column(f"'{SEARCH_CONFIG}'"), search)
        term = f"%{_escape_like(search)}%"
        conditions.append(
            or_(
                KbArticle.search_vector.op("@@")(words),
                KbArticle.title.ilike(term, escape="\\"),
                KbArticle.markdown.ilike(term, escape="\\"),
            )
        )
        order.append(func.ts_rank(KbArticle.search_vector, words).desc())
    order += [KbArticle.updated_at.desc(), KbArticle.id.desc()]
    total = session.execute(
        select(func.count()).select_from(KbArticle).where(*conditions)
    ).scalar_one()
    rows = session.scalars(
        select(KbArticle).where(*conditions).order_by(*order).limit(limit).offset(offset)
    ).all()
    return [_kept(row) for row in rows], int(total)


def get_article(session: Session, *, account_id: uuid.UUID, article_id: uuid.UUID) -> KeptArticle:
    row = session.scalars(
        select(KbArticle).where(KbArticle.id == article_id, KbArticle.account_id == account_id)
    ).one_or_none()
    if row is None:
        raise NotFound(KB_ARTICLE_NOT_FOUND)
    return _kept(row)
