"""What every service's Flask app has in common: settings, database, OpenAPI, JSON errors,
health, observability. Each service's `create_app()` calls `create_service_app()`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import redis.exceptions as redis_exc
import sqlalchemy.exc as sa_exc
from flask import Flask, jsonify
from flask_smorest import Api, Blueprint
from werkzeug.http import HTTP_STATUS_CODES

from shared import runtime
from shared.config import Settings
from shared.db import db
from shared.errors import DomainError
from shared.observability import get_logger
from shared.redis_client import get_redis

log = get_logger(__name__)

BEARER_SECURITY: list[dict[str, list[str]]] = [{"bearerAuth": []}]
# What a client is told to wait when PostgreSQL or Redis is unreachable: about the time a
# restarted server or a Sentinel failover takes to answer again.
OUTAGE_RETRY_AFTER_S = 5


def outage_response(exc: Exception) -> Any:
    """503 JSON with Retry-After for a request that met a database or Redis outage (a failover,
    a restart, every backend terminated), never a 500 or a hung request. The pool reconnects
    (pre-ping) on the next request, so the client's retry succeeds once the server is back."""
    dependency = "redis" if isinstance(exc, redis_exc.RedisError) else "database"
    log.warning("dependency unavailable", dependency=dependency, error=type(exc).__name__)
    body = {
        "code": 503,
        "status": HTTP_STATUS_CODES[503],
        "message": f"The {dependency} is unavailable for a moment; retry shortly.",
    }
    response = jsonify(body)
    response.status_code = 503
    response.headers["Retry-After"] = str(OUTAGE_RETRY_AFTER_S)
    return response


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


def health(settings: Settings, service: str) -> tuple[dict[str, Any], int]:
    """`/healthz`: 200 `ok` when PostgreSQL and Redis answer, 503 `unavailable` naming the one
    that does not; under `make run`'s supervisor, 200 `degraded` naming any program that is
    restarting or crash-looping (the API still serves)."""
    from shared.supervisor import degraded_processes

    healthy, checks = check_dependencies(settings)
    body: dict[str, Any] = {"status": "ok" if healthy else "unavailable", "service": service}
    body["checks"] = checks
    processes = degraded_processes()
    if processes:
        body["degraded"] = processes
        if healthy:
            body["status"] = "degraded"
    return body, 200 if healthy else 503


def create_service_app(
    name: str,
    *,
    title: str,
    blueprints: Iterable[Blueprint],
    settings: Settings | None = None,
    description: str = "",
) -> Flask:
    settings = runtime.configure(settings)
    app = Flask(f"resolutionflow.{name}")
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
        body, status = health(settings, name)
        return jsonify(body), status

    # flask-smorest already answers every HTTPException (unknown routes and methods included) with
    # JSON {code, status, message, errors}; domain errors get the same shape.
    @app.errorhandler(sa_exc.OperationalError)
    @app.errorhandler(sa_exc.InterfaceError)
    @app.errorhandler(sa_exc.TimeoutError)
    @app.errorhandler(redis_exc.ConnectionError)
    @app.errorhandler(redis_exc.TimeoutError)
    def dependency_down(exc: Exception) -> Any:
        return outage_response(exc)

    @app.errorhandler(DomainError)
    def domain_error(exc: DomainError) -> Any:
        body: dict[str, Any] = {
            "code": exc.status_code,
            "status": HTTP_STATUS_CODES.get(exc.status_code, "Error"),
            "message": exc.message,
        }
        if exc.errors:
            body["errors"] = exc.errors
        return jsonify(body), exc.status_code

    try:
        from shared import observability
    except ImportError:  # pragma: no cover - until the observability module exists
        observability = None  # type: ignore[assignment]
    if observability is not None and hasattr(observability, "init_app"):
        observability.init_app(app, name)

    app.extensions["rf_api"] = api
    return app
