"""The local gateway: one WSGI app that routes each API path to its service's own Flask app
(Flask's application dispatching), and serves health, API docs and the engineer console.

`make run` serves it with gunicorn (several worker processes); deploy/ runs each service alone
behind nginx with the same routing table.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, Response, abort, jsonify, send_from_directory

from shared import runtime
from shared.config import Settings
from shared.web import health, install_error_handlers, same_origin_content_security_policy

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

# First match wins; nginx (deploy/nginx/nginx.conf) and the Ingress carry the same table.
ROUTES: tuple[tuple[str, str], ...] = (
    (r"^/api/v1/(auth|scripts)(/|$)", "scripts"),
    (r"^/api/v1/openapi/scripts\.json$", "scripts"),
    (r"^/api/v1/openapi/pilot\.json$", "pilot"),
    (r"^/api/v1/openapi/notes\.json$", "notes"),
    (r"^/api/v1/ai-sessions/[^/]+/resolution-note(/|$)", "notes"),
    (r"^/api/v1/integrations(/|$)", "notes"),
    (r"^/api/v1/kb-articles(/|$)", "notes"),
    (r"^/api/v1/ai-sessions(/|$)", "pilot"),
    (r"^/api/v1/usage(/|$)", "pilot"),
)

# The API docs page: Swagger UI from the pinned `swagger-ui-bundle` package, served by the
# gateway itself (no CDN: the page works without internet), its start-up in a file of its own
# so that the Content-Security-Policy allows scripts from this origin only.
DOCS_ASSETS = ("swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js")
DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ResolutionFlow API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/api/docs/assets/swagger-ui.css">
</head><body><div id="ui"></div>
<script src="/api/docs/assets/swagger-ui-bundle.js"></script>
<script src="/api/docs/assets/swagger-ui-standalone-preset.js"></script>
<script src="/api/docs/docs.js"></script>
<noscript>Specs: <a href="/api/v1/openapi/scripts.json">scripts</a>,
<a href="/api/v1/openapi/pilot.json">pilot</a>,
<a href="/api/v1/openapi/notes.json">notes</a></noscript>
</body></html>"""
DOCS_SCRIPT = """SwaggerUIBundle({dom_id: "#ui", urls: [
  {url: "/api/v1/openapi/scripts.json", name: "scripts"},
  {url: "/api/v1/openapi/pilot.json", name: "pilot"},
  {url: "/api/v1/openapi/notes.json", name: "notes"}],
  layout: "StandaloneLayout", validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset]});
"""
# Only this origin: Swagger UI sets inline style attributes (hence 'unsafe-inline' for styles
# alone) and draws its icons from data: URIs.
DOCS_CONTENT_SECURITY_POLICY = same_origin_content_security_policy(inline_styles=True)


def _docs_response(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = DOCS_CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


class PathDispatcher:
    """Routes by PATH_INFO without rewriting it, so each service sees its own full paths."""

    def __init__(self, fallback: WSGIApp, routes: Iterable[tuple[str, WSGIApp]]) -> None:
        self.fallback = fallback
        self.routes = [(re.compile(pattern), app) for pattern, app in routes]

    def app_for(self, path: str) -> WSGIApp:
        for pattern, app in self.routes:
            if pattern.match(path):
                return app
        return self.fallback

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        return self.app_for(environ.get("PATH_INFO", ""))(environ, start_response)


def create_web_app(settings: Settings) -> Flask:
    """The gateway's own pages: health of the whole stack, API docs, the console."""
    app = Flask("resolutionflow.gateway")
    app.config["SETTINGS"] = settings

    @app.get("/healthz")
    def healthz() -> Any:
        body, status = health(settings, "gateway")
        return jsonify(body), status

    @app.get("/livez")
    def livez() -> Any:
        # Liveness: this process answers. No dependency is checked (that is /healthz), so it
        # is also what the benchmarks use to measure the gateway's own cost per request.
        return jsonify({"status": "ok", "service": "gateway"})

    @app.get("/api/docs")
    def docs() -> Response:
        return _docs_response(Response(DOCS_PAGE, mimetype="text/html"))

    @app.get("/api/docs/docs.js")
    def docs_script() -> Response:
        return _docs_response(Response(DOCS_SCRIPT, mimetype="text/javascript"))

    @app.get("/api/docs/assets/<name>")
    def docs_asset(name: str) -> Response:
        from swagger_ui_bundle import swagger_ui_path

        if name not in DOCS_ASSETS:
            abort(404)
        return _docs_response(send_from_directory(str(swagger_ui_path), name))

    # Unknown paths and methods under /api/ answer the API's JSON error; the console stays HTML.
    install_error_handlers(app, only_under="/api/")

    try:
        from services.console import init_console
    except ImportError:  # pragma: no cover - the console is optional for the API
        init_console = None  # type: ignore[assignment]
    if init_console is not None:
        init_console(app)

    try:
        from shared import observability
    except ImportError:  # pragma: no cover
        observability = None  # type: ignore[assignment]
    if observability is not None and hasattr(observability, "init_app"):
        observability.init_app(app, "gateway")
    return app


def create_app(settings: Settings | None = None) -> PathDispatcher:
    from app.wiring import wire
    from services import notes, pilot, scripts

    wire()
    settings = runtime.configure(settings)
    apps: dict[str, WSGIApp] = {
        "scripts": scripts.create_app(settings),
        "pilot": pilot.create_app(settings),
        "notes": notes.create_app(settings),
    }
    return PathDispatcher(
        create_web_app(settings), [(pattern, apps[name]) for pattern, name in ROUTES]
    )
