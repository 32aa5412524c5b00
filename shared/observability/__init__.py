"""Logging, request ids and Prometheus metrics shared by every service and the worker.

Nothing here runs at import: the module defines metric objects and functions, and each process
calls `configure_logging()` once, `init_app()` per Flask app and `init_celery()` per Celery app.

Logging
    `configure_logging()` sends structlog events and every stdlib logger (Flask, Werkzeug,
    gunicorn, Celery, SQLAlchemy) through one processor chain that ends in one JSON object per
    line on stdout. The `redact` processor in that chain masks

    * the value of any key whose name contains a sensitive word (`password`, `token`,
      `authorization`, `parameters`, `script`, ...; see `DEFAULT_SENSITIVE_KEYS`), except keys
      that only describe such a value (`script_id`, `token_type`, `parameter_names`, ...), and
    * every occurrence, in any string anywhere in the event (message, nested values, formatted
      exception), of a value registered with `register_sensitive_value()` for the current
      request or task. The scripts service registers each sensitive parameter value it renders,
      so even an accidental log of a rendered script cannot carry the value out.

Request ids
    `init_app()` accepts a well-formed `X-Request-ID` (at most 128 of `[A-Za-z0-9._-]`) or makes
    one, binds it to the log context, echoes it on the response, writes one access line per
    request and records `http_request_duration_seconds`. `init_celery()` carries the id from
    the publishing request into the task's message headers and binds it while the task runs.

Metrics
    `GET /metrics` on every app, and `start_worker_metrics_server()` in a worker. When
    `PROMETHEUS_MULTIPROC_DIR` is set (gunicorn with several worker processes), metrics are
    aggregated from that directory; it must be set before any process imports
    prometheus_client and emptied at server start (deploy/gunicorn.conf.py does both).

The package: `metrics`, `redaction`, `logs`, `request_ids`, `flask_hooks` and `celery_hooks`;
this module is its public face.
"""

from shared.observability.celery_hooks import (
    init_celery,
    on_before_task_publish,
    on_task_postrun,
    on_task_prerun,
)
from shared.observability.flask_hooks import (
    REQUEST_ID_ENVIRON_KEY,
    RequestRecorder,
    init_app,
    metrics_token,
    request_recorder,
)
from shared.observability.logs import bind_context, configure_logging, get_logger
from shared.observability.metrics import (
    CELERY_TASK_SECONDS,
    CELERY_TASKS,
    HTTP_REQUEST_DURATION,
    LLM_CALLS,
    LLM_TOKENS,
    NOTE_GENERATION_SECONDS,
    NOTE_REJECTIONS,
    NOTES_CACHE_REQUESTS,
    OUTBOX_BACKLOG,
    WEBHOOK_DELIVERIES,
    metrics_payload,
    start_worker_metrics_server,
)
from shared.observability.redaction import (
    DEFAULT_SENSITIVE_KEYS,
    REDACTED,
    clear_sensitive_values,
    is_sensitive_key,
    redact,
    register_sensitive_value,
    set_sensitive_keys,
)
from shared.observability.request_ids import (
    REQUEST_ID_HEADER,
    current_request_id,
    new_request_id,
    sanitize_request_id,
)

__all__ = [
    "CELERY_TASKS",
    "CELERY_TASK_SECONDS",
    "DEFAULT_SENSITIVE_KEYS",
    "HTTP_REQUEST_DURATION",
    "LLM_CALLS",
    "LLM_TOKENS",
    "NOTES_CACHE_REQUESTS",
    "NOTE_GENERATION_SECONDS",
    "NOTE_REJECTIONS",
    "OUTBOX_BACKLOG",
    "REDACTED",
    "REQUEST_ID_ENVIRON_KEY",
    "REQUEST_ID_HEADER",
    "WEBHOOK_DELIVERIES",
    "RequestRecorder",
    "clear_sensitive_values",
    "configure_logging",
    "current_request_id",
    "get_logger",
    "init_app",
    "init_celery",
    "is_sensitive_key",
    "metrics_payload",
    "new_request_id",
    "redact",
    "register_sensitive_value",
    "request_recorder",
    "sanitize_request_id",
    "set_sensitive_keys",
    "start_worker_metrics_server",
    "bind_context",
    "metrics_token",
    "on_before_task_publish",
    "on_task_postrun",
    "on_task_prerun",
]
