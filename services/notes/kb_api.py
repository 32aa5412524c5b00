"""Knowledge-base HTTP API: keep a resolved session's KB article, list and search the account's
kept articles, read one. Thin views over services.notes.kb_articles."""

from __future__ import annotations

import uuid
from typing import Any

from flask import current_app
from marshmallow import RAISE

from services.notes import kb_articles
from services.notes.context import context_for
from services.notes.kb_schemas import (
    KbArticleQueryArgsSchema,
    KbArticleResponseSchema,
    KbArticleSummarySchema,
    KeepArgsSchema,
    KeptArticleResponseSchema,
)
from shared.auth import current_principal
from shared.db import db
from shared.endpoints import ApiBlueprint, BearerView, paging, read_page
from shared.permissions import can_create_content

kb_blp = ApiBlueprint(
    "kb_articles",
    __name__,
    url_prefix="/api/v1/kb-articles",
    description="The account's knowledge base: KB articles kept from resolved sessions",
)
keep_blp = ApiBlueprint(
    "kb_keep",
    __name__,
    url_prefix="/api/v1/ai-sessions",
    description="Keep a resolved session's KB article in the account's knowledge base",
)

ERROR_RESPONSES: dict[str, dict[str, tuple[int, ...]]] = {
    "/api/v1/kb-articles": {"get": (401,)},
    "/api/v1/kb-articles/{article_id}": {"get": (401, 404)},
    "/api/v1/ai-sessions/{session_id}/resolution-note/keep": {"post": (401, 403, 404, 409)},
}


def blueprints() -> list[ApiBlueprint]:
    return [kb_blp, keep_blp]


@keep_blp.route("/<uuid:session_id>/resolution-note/keep")
class KeepView(BearerView):
    @keep_blp.endpoint(
        200, KeptArticleResponseSchema, args=KeepArgsSchema, location="query", unknown=RAISE
    )
    def post(self, args: dict[str, Any], session_id: uuid.UUID) -> Any:
        """Keep the session's current KB article (`kind=kb_article`, a resolved session) in
        the account's knowledge base; keeping again replaces it with the current text
        (engineers and owners). 409 while the article is still being generated after `wait`
        seconds."""
        settings = current_app.config["SETTINGS"]
        principal = current_principal()
        wait = args.get("wait")
        return kb_articles.keep_article(
            context_for(settings),
            account_id=principal.account_id,
            session_id=session_id,
            user_id=principal.id,
            wait_s=settings.NOTES_PREVIEW_WAIT_S if wait is None else float(wait),
            may_write=can_create_content(principal),
        )


@kb_blp.route("")
class KbArticlesView(BearerView):
    @kb_blp.list_endpoint(KbArticleSummarySchema, args=KbArticleQueryArgsSchema, unknown=RAISE)
    def get(self, args: dict[str, Any]) -> Any:
        """The account's kept KB articles: newest first, or best match first with `search`.
        `X-Total-Count` gives the unpaged total."""
        return read_page(
            kb_articles.list_articles,
            account_id=current_principal().account_id,
            search=args.get("search") or None,
            **paging(args),
        )


@kb_blp.route("/<uuid:article_id>")
class KbArticleView(BearerView):
    @kb_blp.endpoint(200, KbArticleResponseSchema)
    def get(self, article_id: uuid.UUID) -> Any:
        """One kept KB article of the account, with its markdown and citations."""
        with db.session() as session:
            return kb_articles.get_article(
                session, account_id=current_principal().account_id, article_id=article_id
            )
