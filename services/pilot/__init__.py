"""FlowPilot: AI troubleshooting sessions, facts, chat and suggested fixes."""

from __future__ import annotations

from flask import Flask

from shared.config import Settings


def create_app(settings: Settings | None = None) -> Flask:
    from services.pilot import chat
    from services.pilot.api import ERROR_RESPONSES, blueprints
    from shared import resolution_snapshot
    from shared.web import create_service_app

    # Resolve calls the notes service's snapshot through this contract; the composition root
    # (app.pilot, the gateway) provides it. Fail at start-up, not at the first resolve.
    resolution_snapshot.require_provided()
    app = create_service_app(
        "pilot",
        title="ResolutionFlow FlowPilot",
        description="AI troubleshooting sessions: facts, chat, suggested fixes, resolve.",
        blueprints=blueprints(),
        error_responses=ERROR_RESPONSES,
        settings=settings,
    )
    chat.configure_streams(app.config["SETTINGS"].CHAT_STREAM_CONCURRENCY)
    return app
