"""The engineer console: a browser UI served by the gateway at `/`.

One HTML shell (a Jinja template) and plain ES modules under `static/`: no Node build step.
The pages call only the public API on the same origin (`/api/v1/...`), with the bearer token
the login form obtained from `POST /api/v1/auth/token`; this blueprint adds no API endpoints.
The words the API accepts (fact kinds, fix decisions) are not copied into the scripts: the
shell carries them as JSON (`#rf-vocabulary`), from their one definition in `shared/`.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from flask import Blueprint, Flask, Response, render_template, send_from_directory

from shared.models import FIX_DECISIONS
from shared.vocabulary import FACT_KINDS
from shared.web import same_origin_content_security_policy

STATIC_DIR = Path(__file__).parent / "static"
STATIC_URL_PATH = "/static/console"

# The shell loads nothing from other origins and is never framed.
CONTENT_SECURITY_POLICY = same_origin_content_security_policy()


@lru_cache(maxsize=1)
def asset_version() -> str:
    """A digest of the static files, appended to the entry URLs so a deploy busts caches."""
    digest = hashlib.sha256()
    for path in sorted(STATIC_DIR.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(STATIC_DIR).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def create_blueprint() -> Blueprint:
    blueprint = Blueprint(
        "console",
        __name__,
        static_folder="static",
        static_url_path=STATIC_URL_PATH,
        template_folder="templates",
    )

    @blueprint.get("/")
    def shell() -> Response:
        html = render_template(
            "console/index.html",
            asset_version=asset_version(),
            vocabulary={"fact_kinds": list(FACT_KINDS), "fix_decisions": list(FIX_DECISIONS)},
        )
        response = Response(html, mimetype="text/html")
        # The shell holds no data, but a cached copy must never outlive a deploy.
        response.headers["Cache-Control"] = "no-store"
        return response

    @blueprint.get("/favicon.ico")
    def favicon() -> Response:
        return send_from_directory(STATIC_DIR, "favicon.svg", mimetype="image/svg+xml")

    @blueprint.after_request
    def security_headers(response: Response) -> Response:
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Frame-Options", "DENY")
        # Modules import each other without a version tag: revalidate (ETag) on every load.
        response.headers.setdefault("Cache-Control", "no-cache")
        return response

    return blueprint


def init_console(app: Flask) -> None:
    """Serve the console from `app` (the gateway's own Flask app)."""
    app.register_blueprint(create_blueprint())
