"""The Flask side: request ids, one access line and the request metric per request, and
`GET /metrics` behind its bearer token."""

from __future__ import annotations

import hmac
import logging
import os
import time
from typing import Any

import structlog

from shared.observability import logs
from shared.observability.celery_hooks import _propagate_request_ids_to_tasks
from shared.observability.logs import ACCESS_LOGGER_NAME, get_logger
from shared.observability.metrics import HTTP_REQUEST_DURATION, metrics_payload
from shared.observability.request_ids import REQUEST_ID_HEADER, _reset_context, sanitize_request_id

# Routes probed every few seconds: access lines at DEBUG, not INFO.
_QUIET_ROUTES = frozenset({"/healthz", "/metrics"})
_UNMATCHED_ROUTE = "<unmatched>"
# WSGI's name of the X-Request-ID header.
REQUEST_ID_ENVIRON_KEY = "HTTP_X_REQUEST_ID"


def metrics_token(app: Any) -> str | None:
    """The bearer token `/metrics` requires: METRICS_TOKEN from the app's settings or, for an
    app built without them, the environment."""
    token = app.config.get("METRICS_TOKEN") or getattr(
        app.config.get("SETTINGS"), "METRICS_TOKEN", None
    )
    return token or os.environ.get("METRICS_TOKEN") or None


class RequestRecorder:
    """One service's request bookkeeping: the request id bound to the log context, the request
    metric and the access line. Flask's hooks (:func:`init_app`) use it for every request, and
    so does a lane that answers a request before Flask is reached
    (services.notes.preview_lane), so both write the same line and the same metric."""

    def __init__(self, service_name: str) -> None:
        self.service_name = service_name
        self._access_log = get_logger(ACCESS_LOGGER_NAME)
        self._stdlib_access = logging.getLogger(ACCESS_LOGGER_NAME)
        # The histogram's child per (method, route template, status): `labels()` builds and
        # validates its key on every call. Route templates are few, so this stays small; the
        # bound only guards against a client inventing methods.
        self._histograms: dict[tuple[str, str, int], Any] = {}

    def begin(self, raw_request_id: str | None) -> str:
        """A fresh log context bound to the request's id (the client's well-formed
        X-Request-ID, else a new one), which is returned."""
        _reset_context()
        request_id = sanitize_request_id(raw_request_id)
        structlog.contextvars.bind_contextvars(request_id=request_id, service=self.service_name)
        return request_id

    def finish(self, method: str, rule: str, status: int, duration: float) -> None:
        """The request's metric and its access line (at DEBUG for the probes' routes)."""
        if rule != "/metrics":
            key = (method, rule, status)
            child = self._histograms.get(key)
            if child is None:
                child = HTTP_REQUEST_DURATION.labels(
                    service=self.service_name, method=method, route=rule, status=str(status)
                )
                if len(self._histograms) < 4096:
                    self._histograms[key] = child
            child.observe(duration)
        level = logging.DEBUG if rule in _QUIET_ROUTES else logging.INFO
        if not self._stdlib_access.isEnabledFor(level):
            return
        fields = {
            "method": method,
            "route": rule,
            "status": status,
            "duration_ms": round(duration * 1000, 2),
        }
        # Read at each request: configure_logging() may run (again) after init_app().
        fast = logs._access_fast
        root_handlers = logging.root.handlers
        if fast is not None and len(root_handlers) == 1 and root_handlers[0] is fast[0]:
            fast[1].write(logs.access_line(fields, level))
        elif level == logging.DEBUG:
            self._access_log.debug("request", **fields)
        else:
            self._access_log.info("request", **fields)

    @staticmethod
    def end() -> None:
        """The request's log context (its id, its sensitive values) cleared."""
        _reset_context()


def request_recorder(app: Any) -> RequestRecorder:
    """The recorder :func:`init_app` installed on `app`."""
    recorder: RequestRecorder = app.extensions["rf_observability"]["recorder"]
    return recorder


def init_app(app: Any, service_name: str) -> None:
    """Request ids, access log, request metrics and `GET /metrics` for one Flask app."""
    from flask import Response, g, request

    extensions = app.extensions
    if "rf_observability" in extensions:
        return
    recorder = RequestRecorder(service_name)
    extensions["rf_observability"] = {"service": service_name, "recorder": recorder}

    def _start_request() -> None:
        g.rf_request_id = recorder.begin(request.environ.get(REQUEST_ID_ENVIRON_KEY))
        g.rf_request_started = time.perf_counter()

    # First in line, so hooks registered earlier (authentication...) already log with the id.
    app.before_request_funcs.setdefault(None, []).insert(0, _start_request)

    @app.after_request
    def _finish_request(response: Any) -> Any:
        current = request._get_current_object()  # type: ignore[attr-defined]
        request_g = g._get_current_object()
        request_id = getattr(request_g, "rf_request_id", None) or sanitize_request_id(
            current.environ.get(REQUEST_ID_ENVIRON_KEY)
        )
        response.headers[REQUEST_ID_HEADER] = request_id
        started = getattr(request_g, "rf_request_started", None)
        duration = time.perf_counter() - started if started is not None else 0.0
        url_rule = current.url_rule
        rule = url_rule.rule if url_rule is not None else _UNMATCHED_ROUTE
        recorder.finish(current.method, rule, response.status_code, duration)
        return response

    @app.teardown_request
    def _end_request(_exc: BaseException | None) -> None:
        # A streamed response that uses `stream_with_context` keeps the request context, and
        # so its request id and sensitive values, until the stream ends.
        recorder.end()

    def _metrics() -> Any:
        # /metrics answered anyone who reached an API port, the public gateway included. Now
        # it needs `Authorization: Bearer $METRICS_TOKEN` (Prometheus' scrape credentials);
        # without a configured token it is not served at all. The answer to anyone else is
        # the same 404 as an unknown path.
        expected = metrics_token(app)
        given = request.headers.get("Authorization", "")
        if not expected or not hmac.compare_digest(
            given.encode("utf-8", "replace"), f"Bearer {expected}".encode()
        ):
            return Response(
                '{"code": 404, "status": "Not Found", "message": "Not Found"}',
                status=404,
                content_type="application/json",
            )
        payload, content_type = metrics_payload()
        return Response(payload, status=200, content_type=content_type)

    if not any(r.rule == "/metrics" for r in app.url_map.iter_rules()):
        app.add_url_rule("/metrics", endpoint="rf_metrics", view_func=_metrics, methods=["GET"])

    # Tasks a request publishes (a preview's `notes.generate`, a redelivery) carry its id too.
    _propagate_request_ids_to_tasks()
