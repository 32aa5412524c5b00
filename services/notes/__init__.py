"""Resolution notes: preview, resolve-time materialisation and ticketing webhooks."""

from __future__ import annotations

from flask import Flask

from shared.config import Settings


def create_app(settings: Settings | None = None) -> Flask:
    from services.notes import kb_api
    from services.notes.api import ERROR_RESPONSES, blueprints
    from shared.web import create_service_app

    return create_service_app(
        "notes",
        title="ResolutionFlow resolution notes",
        description="Resolution-note previews, final notes and ticketing webhook delivery.",
        blueprints=[*blueprints(), *kb_api.blueprints()],
        error_responses={**ERROR_RESPONSES, **kb_api.ERROR_RESPONSES},
        settings=settings,
    )
