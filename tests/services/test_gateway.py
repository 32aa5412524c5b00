"""The local gateway: each API path reaches its own service app; health reports dependencies."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from werkzeug.test import Client

from services.gateway import ROUTES, PathDispatcher


@pytest.fixture(scope="module")
def gateway(migrated: Any) -> PathDispatcher:
    from services.gateway import create_app

    return create_app(migrated)


@pytest.mark.parametrize(
    ("path", "service"),
    [
        ("/api/v1/auth/token", "scripts"),
        ("/api/v1/scripts/templates", "scripts"),
        ("/api/v1/openapi/scripts.json", "scripts"),
        ("/api/v1/openapi/pilot.json", "pilot"),
        ("/api/v1/openapi/notes.json", "notes"),
        ("/api/v1/ai-sessions", "pilot"),
        ("/api/v1/ai-sessions/abc/facts", "pilot"),
        ("/api/v1/ai-sessions/abc/resolution-note", "notes"),
        ("/api/v1/ai-sessions/abc/resolution-note/preview", "notes"),
        ("/api/v1/ai-sessions/abc/resolution-notes-other", "pilot"),
        ("/api/v1/integrations/ticketing", "notes"),
        ("/api/v1/usage", "pilot"),
        ("/api/v1/ai-sessions/x/usage", "pilot"),
        ("/api/v1/scriptsx", None),
        ("/", None),
    ],
)
def test_routing_table(gateway: PathDispatcher, path: str, service: str | None) -> None:
    app = gateway.app_for(path)
    if service is None:
        assert app is gateway.fallback
    else:
        assert app.config["SERVICE_NAME"] == service


def test_every_route_family_is_served(gateway: PathDispatcher) -> None:
    client = Client(gateway)
    for name in ("scripts", "pilot", "notes"):
        response = client.get(f"/api/v1/openapi/{name}.json")
        assert response.status_code == 200, name
        assert response.json["info"]["title"].startswith("ResolutionFlow")
    assert client.get("/api/v1/scripts/categories").status_code == 401
    assert client.get("/api/v1/ai-sessions").status_code == 401
    docs = client.get("/api/docs")
    assert docs.status_code == 200 and b"openapi/pilot.json" in docs.data
    assert len(ROUTES) >= 7


def test_healthz_reports_dependencies(gateway: PathDispatcher) -> None:
    response = Client(gateway).get("/healthz")
    assert response.status_code == 200
    assert response.json["checks"] == {"database": "ok", "redis": "ok"}


def test_healthz_is_503_naming_the_failed_dependency(migrated: Any) -> None:
    from services.scripts import create_app

    dead_redis = replace(migrated, REDIS_URL="redis://127.0.0.1:1/0")
    try:
        response = create_app(dead_redis).test_client().get("/healthz")
    finally:
        from shared import runtime

        runtime.configure(migrated)
    assert response.status_code == 503
    assert response.json["checks"]["database"] == "ok"
    assert response.json["checks"]["redis"].startswith("error")
