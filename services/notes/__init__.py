"""Resolution notes: preview, resolve-time materialisation and ticketing webhooks."""

from __future__ import annotations

from flask import Flask

from shared.config import Settings


def create_app(settings: Settings | None = None) -> Flask:
    from services.notes import kb_api
    from services.notes.api import ERROR_RESPONSES, blueprints
    from shared.web import create_service_app

    app = create_service_app(
        "notes",
        title="ResolutionFlow resolution notes",
        description="Resolution-note previews, final notes and ticketing webhook delivery.",
        blueprints=[*blueprints(), *kb_api.blueprints()],
        error_responses={**ERROR_RESPONSES, **kb_api.ERROR_RESPONSES},
        settings=settings,
    )
    install_preview_lane(app)
    return app


def install_preview_lane(app: Flask) -> None:
    """The console's poll of a ready preview answered in front of Flask (see
    services.notes.preview_lane)."""
    from services.notes.api import PreviewView
    from services.notes.context import context_for
    from services.notes.preview_lane import PreviewLane
    from shared.models.exposed import SERVICE_ROLES
    from shared.observability import request_recorder

    settings = app.config["SETTINGS"]
    # The rule PreviewView is routed at, as Flask matches it (blueprint prefix included).
    (rule,) = (
        r.rule
        for r in app.url_map.iter_rules()
        if app.view_functions[r.endpoint].__name__ == PreviewView.__name__
    )
    app.wsgi_app = PreviewLane(  # type: ignore[method-assign]
        app.wsgi_app,
        rule=rule,
        secret_key=settings.secret_key,
        service_role=SERVICE_ROLES.get("notes"),
        recorder=request_recorder(app),
        context=lambda: context_for(settings),
    )
