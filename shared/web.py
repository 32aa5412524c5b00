"""What every service's Flask app has in common: settings, database, OpenAPI, JSON errors,
health, observability. Each service's `create_app()` calls `create_service_app()`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flask import Flask, jsonify, request
from flask_smorest import Api, Blueprint
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.middleware.proxy_fix import ProxyFix

from shared import hostile_input, runtime
from shared.auth import configure_hashing
from shared.config import Settings
from shared.db import db
from shared.errors import DomainError
from shared.redis_client import get_redis

BEARER_SECURITY: list[dict[str, list[str]]] = [{"bearerAuth": []}]


def check_dependencies(settings: Settings) -> tuple[bool, dict[str, str]]:
    checks: dict[str, str] = {}
    try:
        db.ping()
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - health reports any failure as the reason
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        assert settings.REDIS_URL is not None
        get_redis(settings.REDIS_URL).ping()
        checks["redis"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["redis"] = f"error: {type(exc).__name__}"
    return all(v == "ok" for v in checks.values()), checks


def create_service_app(
    name: str,
    *,
    title: str,
    blueprints: Iterable[Blueprint],
    settings: Settings | None = None,
    description: str = "",
) -> Flask:
    settings = runtime.configure(settings)
    configure_hashing(
        concurrency=settings.LOGIN_HASH_CONCURRENCY, wait_s=settings.LOGIN_HASH_WAIT_S
    )
    app = Flask(f"resolutionflow.{name}")
    if settings.TRUSTED_PROXY_HOPS:
        # The client address for rate limits comes from the deploy's proxy, never a client.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=settings.TRUSTED_PROXY_HOPS, x_proto=settings.TRUSTED_PROXY_HOPS
        )
    app.config.update(settings.as_flask_config())
    app.config.update(
        SETTINGS=settings,
        SERVICE_NAME=name,
        API_TITLE=title,
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api/v1/openapi",
        OPENAPI_JSON_PATH=f"{name}.json",
        JSON_SORT_KEYS=False,
    )
    api = Api(
        app,
        spec_kwargs={
            "info": {"description": description},
            "components": {
                "securitySchemes": {
                    "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
                }
            },
        },
    )
    for blueprint in blueprints:
        api.register_blueprint(blueprint)

    @app.get("/healthz")
    def healthz() -> Any:
        healthy, checks = check_dependencies(settings)
        body = {"status": "ok" if healthy else "unavailable", "service": name, "checks": checks}
        return jsonify(body), 200 if healthy else 503

    @app.before_request
    def refuse_unstorable_input() -> Any:
        # NUL, lone surrogates and too-deep JSON used to reach the views and answer 500.
        errors: dict[str, Any] = {}
        query = hostile_input.query_problems(request.args.lists())
        if query:
            errors["query"] = query
        if request.is_json and request.content_length != 0:
            errors.update(
                hostile_input.body_errors(
                    request.get_data(cache=True),
                    parameters_key=request.path.endswith("/scripts/generate"),
                )
            )
        if not errors:
            return None
        body = {
            "code": 422,
            "status": HTTP_STATUS_CODES[422],
            "message": "Invalid input",
            "errors": errors,
        }
        return jsonify(body), 422

    # flask-smorest already answers every HTTPException (unknown routes and methods included) with
    # JSON {code, status, message, errors}; domain errors get the same shape.
    @app.errorhandler(DomainError)
    def domain_error(exc: DomainError) -> Any:
        body: dict[str, Any] = {
            "code": exc.status_code,
            "status": HTTP_STATUS_CODES.get(exc.status_code, "Error"),
            "message": exc.message,
        }
        if exc.errors:
            body["errors"] = exc.errors
        response = jsonify(body)
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            response.headers["Retry-After"] = str(int(retry_after))
        return response, exc.status_code

    try:
        from shared import observability
    except ImportError:  # pragma: no cover - until the observability module exists
        observability = None  # type: ignore[assignment]
    if observability is not None and hasattr(observability, "init_app"):
        observability.init_app(app, name)

    app.extensions["rf_api"] = api
    return app
