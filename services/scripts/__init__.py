"""Script library service: categories, parameterised PowerShell templates, generation."""

from __future__ import annotations

from flask import Flask

from shared.config import Settings


def create_app(settings: Settings | None = None) -> Flask:
    from services.scripts.api import ERROR_RESPONSES, auth_blp, scripts_blp
    from shared.web import create_service_app

    return create_service_app(
        "scripts",
        title="ResolutionFlow script library",
        description="Categories, parameterised PowerShell templates, rendering and history.",
        blueprints=[auth_blp, scripts_blp],
        error_responses=ERROR_RESPONSES,
        settings=settings,
    )
