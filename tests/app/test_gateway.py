"""The local gateway: each API path reaches its own service app; health reports dependencies."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest
from werkzeug.test import Client

from app.gateway import ROUTES, PathDispatcher


@pytest.fixture(scope="module")
def gateway(migrated: Any) -> PathDispatcher:
    from app.gateway import create_app

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
        ("/api/v1/kb-articles", "notes"),
        ("/api/v1/kb-articles/abc", "notes"),
        ("/api/v1/ai-sessions/abc/resolution-note/keep", "notes"),
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


# ── One JSON error shape under /api/ ─────────────────────────────────────────────────────────


def _assert_error_shape(response: Any, code: int) -> dict[str, Any]:
    assert response.status_code == code
    assert response.mimetype == "application/json", response.data[:200]
    body: dict[str, Any] = response.json
    assert body["code"] == code and isinstance(body["status"], str)
    assert isinstance(body["message"], str) and body["message"]
    return body


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/nope",  # the gateway's own app: no service owns it
        "/api/nothing",
        "/api/v1/scripts/nope",  # inside a service
        "/api/v1/ai-sessions/00000000-0000-0000-0000-000000000000/nope",
        "/api/v1/integrations/nope",
    ],
)
def test_unknown_api_path_is_json_404_with_message(gateway: PathDispatcher, path: str) -> None:
    body = _assert_error_shape(Client(gateway).get(path), 404)
    assert path in body["message"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", "/api/v1/scripts/categories"),
        ("PUT", "/api/v1/ai-sessions"),
        ("POST", "/api/docs"),
        ("PATCH", "/api/v1/integrations/ticketing"),
    ],
)
def test_wrong_method_is_json_405_with_allow(
    gateway: PathDispatcher, method: str, path: str
) -> None:
    response = Client(gateway).open(path, method=method)
    body = _assert_error_shape(response, 405)
    assert "GET" in response.headers["Allow"]
    assert method in body["message"] and "GET" in body["message"]


def test_console_paths_outside_api_keep_html_404(gateway: PathDispatcher) -> None:
    response = Client(gateway).get("/no-such-page")
    assert response.status_code == 404 and response.mimetype == "text/html"


def test_console_shell_carries_the_vocabulary_from_its_one_definition(
    gateway: PathDispatcher,
) -> None:
    import json

    from shared.models import FIX_DECISIONS
    from shared.vocabulary import FACT_KINDS

    response = Client(gateway).get("/")
    assert response.status_code == 200
    found = re.search(
        r'<script type="application/json" id="rf-vocabulary">(.*?)</script>',
        response.get_data(as_text=True),
    )
    assert found is not None
    assert json.loads(found.group(1)) == {
        "fact_kinds": list(FACT_KINDS),
        "fix_decisions": list(FIX_DECISIONS),
    }


def test_422_has_a_message_naming_the_fields(gateway: PathDispatcher) -> None:
    response = Client(gateway).post("/api/v1/auth/token", json={"email": "x@example.com"})
    body = _assert_error_shape(response, 422)
    assert "json.password" in body["message"]
    assert "password" in body["errors"]["json"]


def test_api_docs_are_served_locally_with_a_same_origin_csp(gateway: PathDispatcher) -> None:
    client = Client(gateway)
    page = client.get("/api/docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "http://" not in html and "https://" not in html and "//cdn" not in html
    csp = page.headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'self'" and directives["script-src"] == "'self'"
    assert "http" not in csp and "*" not in csp
    sources = re.findall(r'(?:src|href)="(/api/docs/[^"]+)"', html)
    assert len(sources) == 4
    for src in sources:
        asset = client.get(src)
        assert asset.status_code == 200, src
        assert len(asset.data) > 100, src
        assert asset.headers["Content-Security-Policy"] == csp
    assert client.get("/api/docs/assets/../../etc/passwd").status_code == 404
    assert client.get("/api/docs/assets/index.html").status_code == 404


# ── OpenAPI: summaries and the error answers of every operation ───────────────────────────────


def _operations(
    gateway: PathDispatcher,
) -> list[tuple[str, dict[str, Any], str, str, dict[str, Any]]]:
    client = Client(gateway)
    found = []
    for name in ("scripts", "pilot", "notes"):
        spec = client.get(f"/api/v1/openapi/{name}.json").json
        for path, item in spec["paths"].items():
            for method, operation in item.items():
                if method in {"get", "post", "put", "patch", "delete"}:
                    found.append((name, spec, path, method, operation))
    return found


def test_openapi_declares_every_operations_errors_with_the_error_schema(
    gateway: PathDispatcher,
) -> None:
    operations = _operations(gateway)
    assert len(operations) >= 30
    for name, spec, path, method, operation in operations:
        where = f"{name}: {method.upper()} {path}"
        assert operation.get("summary"), where
        responses = operation["responses"]
        declared = {int(code) for code in responses if code.isdigit() and int(code) >= 400}
        assert 401 in declared, where  # sign-in and every bearer route
        if "{" in path:
            assert 404 in declared, where
        if method != "get" and path.startswith("/api/v1/ai-sessions/{session_id}"):
            assert {403, 409} <= declared, where
        for code in declared - {422, 503}:
            ref = responses[str(code)]["$ref"].rsplit("/", 1)[-1]
            schema = spec["components"]["responses"][ref]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/Error"}, where
    error = operations[0][1]["components"]["schemas"]["Error"]["properties"]
    assert {"code", "status", "message", "errors"} <= set(error)


def test_every_operation_declaring_401_answers_401_without_a_token(
    gateway: PathDispatcher,
) -> None:
    """The declarations are true: each bearer route refuses a call without a token, JSON."""
    client = Client(gateway)
    placeholder = "00000000-0000-0000-0000-000000000001"
    for _name, _spec, path, method, operation in _operations(gateway):
        if not operation.get("security"):
            continue
        url = re.sub(r"\{[^}]+\}", placeholder, path)
        response = client.open(url, method=method.upper(), json={})
        assert response.status_code == 401, (method, url, response.status_code)
        assert response.json["message"], (method, url)
