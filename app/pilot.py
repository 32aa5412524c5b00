"""The pilot API on its own, as deploy/ runs it (`gunicorn ... "app.pilot:create_app()"`):
FlowPilot's app with the contracts it calls wired (`app.wiring`)."""

from __future__ import annotations

from flask import Flask

from app.wiring import wire
from shared.config import Settings


def create_app(settings: Settings | None = None) -> Flask:
    from services import pilot

    wire()
    return pilot.create_app(settings)
