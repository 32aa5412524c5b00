"""What every service's Flask app has in common: settings, database, OpenAPI, JSON errors,
health, observability. Each service's `create_app()` calls `create_service_app()`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from inspect import iscoroutinefunction
from typing import Any

import redis.exceptions as redis_exc
import sqlalchemy.exc as sa_exc
from flask import Flask, Response, jsonify, request
from flask.sessions import SessionInterface
from flask_smorest import Api, Blueprint
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.middleware.proxy_fix import ProxyFix

from shared import hostile_input, runtime
from shared.auth import configure_hashing
from shared.config import Settings
from shared.db import db, request_role
from shared.errors import DomainError
from shared.models.exposed import SERVICE_ROLES
from shared.observability import get_logger
from shared.redis_client import get_redis

log = get_logger(__name__)

BEARER_SECURITY: list[dict[str, list[str]]] = [{"bearerAuth": []}]
# What a client is told to wait when PostgreSQL or Redis is unreachable: about the time a
# restarted server or a Sentinel failover takes to answer again.
OUTAGE_RETRY_AFTER_S = 5


def same_origin_content_security_policy(*, inline_styles: bool = False) -> str:
    """The Content-Security-Policy of a page that loads nothing from other origins and is
    never framed (the console, the API docs). `inline_styles`: the page's own library sets
    style attributes (Swagger UI), so styles alone may be inline."""
    style_src = "style-src 'self' 'unsafe-inline'" if inline_styles else "style-src 'self'"
    return "; ".join(
        (
            "default-src 'self'",
            "script-src 'self'",
            style_src,
            "img-src 'self' data:",
            "connect-src 'self'",
            "font-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


def outage_response(exc: Exception) -> Any:
    """503 JSON with Retry-After for a request that met a database or Redis outage (a failover,
    a restart, every backend terminated), never a 500 or a hung request. The pool reconnects
    (pre-ping) on the next request, so the client's retry succeeds once the server is back."""
    dependency = "redis" if isinstance(exc, redis_exc.RedisError) else "database"
    log.warning("dependency unavailable", dependency=dependency, error=type(exc).__name__)
    return error_response(
        503,
        f"The {dependency} is unavailable for a moment; retry shortly.",
        headers={"Retry-After": str(OUTAGE_RETRY_AFTER_S)},
    )


# ── The one error shape ──────────────────────────────────────────────────────────────────────
# Every error under /api/ (domain errors, schema validation, unknown paths and methods, uncaught
# exceptions) is `{"code", "status", "message", "errors"?}`, built here and nowhere else. Each
# service app and the gateway's own app install these handlers with `install_error_handlers()`.


def error_body(code: int, message: str, errors: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "code": code,
        "status": HTTP_STATUS_CODES.get(code, "Error"),
        "message": message,
    }
    if errors:
        body["errors"] = errors
    return body


def error_response(
    code: int, message: str, errors: Any = None, headers: dict[str, str] | None = None
) -> Response:
    response = jsonify(error_body(code, message, errors))
    response.status_code = code
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _field_paths(errors: Any, prefix: str = "") -> list[str]:
    """`json.title`, `query.limit`, ... for each leaf of a webargs/marshmallow error tree."""
    if not isinstance(errors, dict):
        return [prefix] if prefix else []
    paths: list[str] = []
    for key, value in errors.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value and prefix.count(".") < 2:
            paths.extend(_field_paths(value, path))
        else:
            paths.append(path)
    return paths


def invalid_input_message(errors: Any) -> str:
    fields = _field_paths(errors)
    if not fields:
        return "Invalid input"
    shown = ", ".join(fields[:5]) + (f" and {len(fields) - 5} more" if len(fields) > 5 else "")
    return f"Invalid input: {shown}"


def _http_message(exc: HTTPException, errors: Any) -> str:
    code = exc.code or 500
    if code == 422:
        return invalid_input_message(errors)
    if code == 404:
        return f"No API route matches {request.path}"
    if isinstance(exc, MethodNotAllowed):
        allowed = ", ".join(sorted(exc.valid_methods or ()))
        return f"Method {request.method} is not allowed on {request.path}; allowed: {allowed}"
    if code >= 500:
        return "Internal server error"
    return exc.description or HTTP_STATUS_CODES.get(code, "Error")


def http_error(exc: HTTPException) -> Response:
    """Any werkzeug HTTPException (webargs' 422 included) in the one error shape."""
    code = exc.code or 500
    data = getattr(exc, "data", None) or {}
    errors = data.get("errors") or data.get("messages")
    message = data.get("message") or _http_message(exc, errors)
    headers = dict(data.get("headers") or {})
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        headers["Allow"] = ", ".join(sorted(exc.valid_methods))
    return error_response(code, str(message), errors, headers)


def domain_error(exc: DomainError) -> Response:
    retry_after = getattr(exc, "retry_after", None)
    headers = {"Retry-After": str(int(retry_after))} if retry_after is not None else None
    return error_response(exc.status_code, exc.message, exc.errors, headers)


def install_error_handlers(app: Flask, *, only_under: str | None = None) -> None:
    """Answer errors with the one JSON shape (replacing flask-smorest's own handler, which
    leaves `message` out). With `only_under`, paths outside that prefix keep Flask's default
    pages (the gateway's console is HTML)."""

    def on_http_error(exc: HTTPException) -> Any:
        if only_under is not None and not request.path.startswith(only_under):
            return exc
        return http_error(exc)

    app.register_error_handler(HTTPException, on_http_error)
    app.register_error_handler(DomainError, domain_error)
    for outage in (
        sa_exc.OperationalError,
        sa_exc.InterfaceError,
        sa_exc.TimeoutError,
        redis_exc.ConnectionError,
        redis_exc.TimeoutError,
    ):
        app.register_error_handler(outage, outage_response)


ERROR_DESCRIPTIONS: dict[int, str] = {
    401: "Missing, invalid or expired bearer token (or, for sign-in, wrong credentials)",
    403: "Authenticated, but the role does not allow this",
    404: "No such object in your account (another account's objects are always 404)",
    409: "Conflicts with the object's current state (e.g. a resolved, read-only session)",
}


def document_error_responses(api: Api, table: Mapping[str, Mapping[str, Iterable[int]]]) -> None:
    """Declare in the OpenAPI spec, with the error schema, the 401/403/404/409 answers each
    operation can give (`table`: path -> method -> codes)."""
    spec = api.spec
    for code, description in ERROR_DESCRIPTIONS.items():
        spec.components.response(
            f"ERROR_{code}",
            {
                "description": description,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            },
        )
    paths = spec.to_dict()["paths"]
    for path, methods in table.items():
        for method, codes in methods.items():
            operation = paths.get(path, {}).get(method)
            if operation is None:
                raise RuntimeError(f"ERROR_RESPONSES names {method.upper()} {path}: no such route")
            responses = operation.setdefault("responses", {})
            for code in codes:
                responses.setdefault(str(code), {"$ref": f"#/components/responses/ERROR_{code}"})


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


class NoCookieSessions(SessionInterface):
    """The APIs authenticate every request by its bearer token and keep no cookie session.
    Flask's default interface built its signing serializer and parsed the cookies at every
    request to open an empty one. Reading `flask.session` still works (it is empty); writing
    it raises."""

    def open_session(self, app: Flask, request: Any) -> Any:
        return self.make_null_session(app)

    def save_session(self, app: Flask, session: Any, response: Any) -> None:
        return None


class ServiceFlask(Flask):
    """Flask, with the answer of `ensure_sync` remembered per function: Flask asks it for
    every hook and view of every request (fourteen times for a cached preview), and each
    answer inspected the function's code flags again. Bound methods (a MethodView's) are
    remembered by their function; the table holds at most one entry per function."""

    _SYNC_MAX = 4096

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sync_functions: dict[Any, bool] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        key = getattr(func, "__func__", func)
        sync = self._sync_functions.get(key)
        if sync is None:
            sync = not iscoroutinefunction(func)
            if len(self._sync_functions) < self._SYNC_MAX:
                self._sync_functions[key] = sync
        return func if sync else self.async_to_sync(func)


def create_service_app(
    name: str,
    *,
    title: str,
    blueprints: Iterable[Blueprint],
    settings: Settings | None = None,
    description: str = "",
    error_responses: Mapping[str, Mapping[str, Iterable[int]]] | None = None,
) -> Flask:
    settings = runtime.configure(settings)
    configure_hashing(
        concurrency=settings.LOGIN_HASH_CONCURRENCY, wait_s=settings.LOGIN_HASH_WAIT_S
    )
    app = ServiceFlask(f"resolutionflow.{name}")
    app.session_interface = NoCookieSessions()
    service_role = SERVICE_ROLES.get(name)

    # First of the hooks, so no query of the request runs with another service's privileges.
    @app.before_request
    def run_as_service_role() -> None:
        request_role(service_role)

    @app.teardown_request
    def end_service_role(_exc: BaseException | None) -> None:
        request_role(None)

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
    document_error_responses(api, error_responses or {})

    @app.get("/healthz")
    def healthz() -> Any:
        body, status = health(settings, name)
        return jsonify(body), status

    @app.before_request
    def refuse_unstorable_input() -> Any:
        # NUL, lone surrogates and too-deep JSON used to reach the views and answer 500.
        errors: dict[str, Any] = {}
        if hostile_input.query_may_be_unstorable(request.environ.get("QUERY_STRING", "")):
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
        return error_response(422, invalid_input_message(errors), errors)

    install_error_handlers(app)

    try:
        from shared import observability
    except ImportError:  # pragma: no cover - until the observability module exists
        observability = None  # type: ignore[assignment]
    if observability is not None and hasattr(observability, "init_app"):
        observability.init_app(app, name)

    app.extensions["rf_api"] = api
    return app
