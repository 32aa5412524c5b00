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
"""

from __future__ import annotations

import contextvars
import hmac
import json as _json
import logging
import os
import re
import sys
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

import structlog
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as _prom_multiprocess
from structlog.types import EventDict, Processor, WrappedLogger

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
    "REQUEST_ID_HEADER",
    "WEBHOOK_DELIVERIES",
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
    "sanitize_request_id",
    "set_sensitive_keys",
    "start_worker_metrics_server",
]

REDACTED = "[REDACTED]"
REQUEST_ID_HEADER = "X-Request-ID"
# The header name a published Celery message carries the request id under.
CELERY_REQUEST_ID_HEADER = "request_id"
DEFAULT_WORKER_METRICS_PORT = 9808

# ---------------------------------------------------------------------------------------------
# Metrics. Defining a metric registers it with the default registry (or, in multiprocess mode,
# prepares its per-process file lazily); it opens no connection and starts no thread.
# ---------------------------------------------------------------------------------------------

# Buckets from a cache hit (a few ms) to a chat turn that waits on the LLM (tens of seconds).
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_GENERATION_BUCKETS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 90.0, 120.0, 180.0)

HTTP_REQUEST_DURATION = Histogram(
    "http_request_duration_seconds",
    "Time from the first byte of a request to its response headers, by route template.",
    ["service", "method", "route", "status"],
    buckets=_LATENCY_BUCKETS,
)
NOTES_CACHE_REQUESTS = Counter(
    "notes_preview_cache_total",
    "Resolution-note preview lookups by result: hit, miss, or reuse of an in-flight generation.",
    ["result"],
)
LLM_CALLS = Counter(
    "llm_calls_total",
    "Calls to the LLM provider by model, purpose (chat, note, ...) and outcome.",
    ["model", "purpose", "outcome"],
)
LLM_TOKENS = Counter(
    "llm_tokens_total",
    "Tokens billed by the LLM provider by model, purpose and type (input, output, cache_read...).",
    ["model", "purpose", "type"],
)
NOTE_GENERATION_SECONDS = Histogram(
    "note_generation_seconds",
    "Wall time to generate one resolution note, LLM call included.",
    buckets=_GENERATION_BUCKETS,
)
NOTE_REJECTIONS = Counter(
    "note_rejections_total",
    "LLM answers the resolution-note validator rejected, by reason (ungrounded_token, ...).",
    ["reason"],
)
WEBHOOK_DELIVERIES = Counter(
    "webhook_deliveries_total",
    "Webhook delivery attempts by outcome (delivered, retry, failed, ...).",
    ["outcome"],
)
OUTBOX_BACKLOG = Gauge(
    "outbox_backlog",
    "Outbox rows not yet relayed to the broker, as last counted by the relay.",
    multiprocess_mode="max",
)
CELERY_TASKS = Counter(
    "celery_tasks_total",
    "Celery tasks finished in this worker by task name and final state.",
    ["task", "state"],
)
CELERY_TASK_SECONDS = Histogram(
    "celery_task_duration_seconds",
    "Run time of Celery tasks in this worker by task name.",
    ["task"],
    buckets=_GENERATION_BUCKETS,
)


def _multiprocess_dir() -> str | None:
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir")
    return path or None


def _collector_registry() -> CollectorRegistry:
    path = _multiprocess_dir()
    if path is None:
        return REGISTRY
    registry = CollectorRegistry()
    _prom_multiprocess.MultiProcessCollector(registry, path=path)
    return registry


def metrics_payload() -> tuple[bytes, str]:
    """The Prometheus exposition of this process (or of all processes in multiprocess mode)."""
    return generate_latest(_collector_registry()), CONTENT_TYPE_LATEST


# ---------------------------------------------------------------------------------------------
# Redaction
# ---------------------------------------------------------------------------------------------

DEFAULT_SENSITIVE_KEYS: frozenset[str] = frozenset(
    {
        "password",
        "passwd",
        "secret",
        "token",
        "api_key",
        "apikey",
        "authorization",
        "cookie",
        "credentials",
        "private_key",
        "parameters",
        "values",
        "script",
        "scripts",
    }
)
# A key that contains a sensitive word but ends in one of these names metadata about the value,
# not the value itself: `script_id`, `token_type`, `parameter_names`, `secret_name`.
_METADATA_SUFFIXES = frozenset(
    {"id", "ids", "name", "names", "count", "len", "length", "type", "kind", "version", "ms"}
)
# Registered values shorter than this are not masked as substrings: masking "1" or "ab" would
# shred every log line. Key-based masking still covers them.
MIN_SENSITIVE_VALUE_LENGTH = 4
# Keys the logging chain itself writes; never rewritten.
_STRUCTURAL_KEYS = frozenset({"timestamp", "level", "logger"})

_sensitive_keys: frozenset[tuple[str, ...]] = frozenset()
_key_cache: dict[str, bool] = {}
_sensitive_values: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar(
    "rf_sensitive_values", default=frozenset()
)
_pattern_cache: dict[frozenset[str], re.Pattern[str]] = {}
_KEY_SPLIT = re.compile(r"[^a-z0-9]+")


def _segments(name: str) -> tuple[str, ...]:
    # camelCase -> camel_case, then split on anything that is not a letter or digit.
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()
    return tuple(part for part in _KEY_SPLIT.split(snake) if part)


def set_sensitive_keys(keys: Iterable[str]) -> None:
    """Replace the set of sensitive key words (each may span segments, e.g. `api_key`)."""
    global _sensitive_keys
    _sensitive_keys = frozenset(_segments(k) for k in keys if _segments(k))
    _key_cache.clear()


set_sensitive_keys(DEFAULT_SENSITIVE_KEYS)


def is_sensitive_key(key: str) -> bool:
    """Whether the value logged under `key` must be masked (cached per key name)."""
    cached = _key_cache.get(key)
    if cached is not None:
        return cached
    parts = _segments(key)
    # Singular and plural forms of a word match (`parameter` and `parameters`), but the token
    # *counts* an LLM reports (`input_tokens`) do not: only the listed spelling and the same
    # word without a trailing "s" match.
    sensitive = False
    for word in _sensitive_keys:
        candidates = {word}
        if len(word[-1]) > 1 and word[-1].endswith("s"):
            candidates.add((*word[:-1], word[-1][:-1]))
        for cand in candidates:
            n = len(cand)
            for i in range(len(parts) - n + 1):
                if parts[i : i + n] == cand:
                    sensitive = True
                    break
            if sensitive:
                break
        if sensitive:
            break
    if sensitive and len(parts) > 1 and parts[-1] in _METADATA_SUFFIXES:
        tail = parts[-1]
        if not any(tail in word for word in _sensitive_keys):
            sensitive = False
    if len(_key_cache) < 4096:
        _key_cache[key] = sensitive
    return sensitive


def register_sensitive_value(value: object) -> None:
    """Mask `value` wherever it appears in log output for the rest of this request or task.

    Context-local: a request (init_app) or task (init_celery) starts with an empty set, so one
    request's values neither leak into nor mask another's logs.
    """
    if value is None or isinstance(value, bool):
        return
    text = value if isinstance(value, str) else str(value)
    variants = {text, text.strip()}
    # The same value as it appears inside a JSON document or a Python repr.
    variants.add(_json.dumps(text)[1:-1])
    variants.add(_json.dumps(text, ensure_ascii=False)[1:-1])
    variants.add(repr(text)[1:-1])
    keep = {v for v in variants if len(v) >= MIN_SENSITIVE_VALUE_LENGTH}
    if not keep:
        return
    current = _sensitive_values.get()
    if keep <= current:
        return
    _sensitive_values.set(current | keep)


def clear_sensitive_values() -> None:
    _sensitive_values.set(frozenset())


def _value_pattern(values: frozenset[str]) -> re.Pattern[str]:
    pattern = _pattern_cache.get(values)
    if pattern is None:
        ordered = sorted(values, key=len, reverse=True)
        pattern = re.compile("|".join(re.escape(v) for v in ordered))
        if len(_pattern_cache) > 256:
            _pattern_cache.clear()
        _pattern_cache[values] = pattern
    return pattern


def _scrub(value: Any, pattern: re.Pattern[str] | None, depth: int = 0) -> Any:
    if isinstance(value, str):
        return pattern.sub(REDACTED, value) if pattern is not None else value
    if depth > 8:
        # Too deep to walk: keep only a masked string form.
        return _scrub(str(value), pattern, depth) if pattern is not None else value
    if isinstance(value, Mapping):
        return {
            k: (
                REDACTED
                if isinstance(k, str) and is_sensitive_key(k)
                else _scrub(v, pattern, depth + 1)
            )
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub(v, pattern, depth + 1) for v in value]
    if isinstance(value, bytes | bytearray):
        return _scrub(bytes(value).decode("utf-8", "replace"), pattern, depth)
    if pattern is not None and not isinstance(value, int | float | bool | type(None)):
        # Any other object is rendered by the JSON renderer through str()/repr(): do it here so
        # the rendering is scrubbed too.
        return pattern.sub(REDACTED, str(value))
    return value


def redact(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask sensitive keys and every registered sensitive value."""
    values = _sensitive_values.get()
    pattern = _value_pattern(values) if values else None
    for key in list(event_dict):
        if key in _STRUCTURAL_KEYS:
            continue
        if key != "event" and is_sensitive_key(key):
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _scrub(event_dict[key], pattern)
    return event_dict


# ---------------------------------------------------------------------------------------------
# Logging
# ---------------------------------------------------------------------------------------------


class _StdoutHandler(logging.StreamHandler[TextIO]):
    """A handler that writes to whatever `sys.stdout` is at emit time (test capture included)."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property
    def stream(self) -> TextIO:
        return sys.stdout

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


_HANDLER_NAME = "rf-structlog"
ACCESS_LOGGER_NAME = "rf.access"


class _AccessLineWriter:
    """Writes one rendered access line to stdout under the stdout handler's lock, as that
    handler would."""

    def __init__(self, handler: logging.Handler) -> None:
        self.handler = handler

    def write(self, line: str) -> None:
        lock = self.handler.lock
        if lock is None:
            sys.stdout.write(line)
            sys.stdout.flush()
            return
        with lock:
            stream = sys.stdout
            stream.write(line)
            stream.flush()


# The access line's short path, set by configure_logging: (the stdout handler, its writer).
# The access line is written once per request, and the general path (structlog's bound
# logger, a stdlib LogRecord, the handler's formatter, redaction a second time for exception
# text it never has) was the gateway's largest cost. The short path builds the same event
# (context, level, logger name, timestamp), redacts it with the same processor and renders
# the same JSON.
_access_fast: tuple[logging.Handler, _AccessLineWriter] | None = None
_iso_utc_stamp = structlog.processors.TimeStamper(fmt="iso", utc=True)


def configure_logging(
    level: str = "INFO",
    json: bool = True,
    *,
    sensitive_keys: Iterable[str] | None = None,
) -> None:
    """Route structlog and stdlib logging to stdout as JSON lines (or console text).

    Idempotent: calling it again replaces the handler it installed and nothing else.
    """
    if sensitive_keys is not None:
        set_sensitive_keys(sensitive_keys)
    numeric_level = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(numeric_level, int):
        numeric_level = logging.INFO

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.PositionalArgumentsFormatter(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer(default=str)
        if json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            # Redact before the event leaves structlog, so no other handler on the way (a test
            # runner's log capture, a handler a library adds) ever holds the raw values; the
            # formatter redacts again after formatting exceptions.
            redact,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            # Exceptions become text before `redact`, so a traceback that quotes a sensitive
            # value is scrubbed too.
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
    )
    handler = _StdoutHandler()
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)
    global _access_fast
    _access_fast = (handler, _AccessLineWriter(handler)) if json else None

    root = logging.getLogger()
    for existing in list(root.handlers):
        # Ours from an earlier call, and plain console handlers (logging.basicConfig) that would
        # print every line a second time, unredacted. Other handlers (a test runner's capture,
        # an error reporter) stay.
        if existing.get_name() == _HANDLER_NAME or type(existing) is logging.StreamHandler:
            root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(numeric_level)
    # Python warnings (a library's DeprecationWarning, Celery's SecurityWarning) become log
    # events in the same JSON chain instead of free text on stderr.
    logging.captureWarnings(True)
    # Libraries that install their own handlers would print unstructured, unredacted lines.
    for name in ("werkzeug", "gunicorn.error", "gunicorn.access", "celery", "celery.task"):
        lib = logging.getLogger(name)
        lib.handlers.clear()
        lib.propagate = True


def get_logger(name: str | None = None) -> Any:
    return structlog.stdlib.get_logger(name)


# ---------------------------------------------------------------------------------------------
# Request ids
# ---------------------------------------------------------------------------------------------

_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,128}")


def new_request_id() -> str:
    return uuid.uuid4().hex


def sanitize_request_id(raw: str | None) -> str:
    """`raw` when it is at most 128 of `[A-Za-z0-9._-]`, else a fresh uuid4 hex."""
    if raw is not None and _REQUEST_ID_RE.fullmatch(raw):
        return raw
    return new_request_id()


def current_request_id() -> str | None:
    value = structlog.contextvars.get_contextvars().get("request_id")
    return value if isinstance(value, str) else None


def _reset_context() -> None:
    structlog.contextvars.clear_contextvars()
    clear_sensitive_values()


def _access_line(fields: dict[str, Any], level: int) -> str:
    """The access line as the general chain renders it: the event, the request's context,
    level, logger name and timestamp, redacted, as one JSON line."""
    event: EventDict = {"event": "request", **fields}
    structlog.contextvars.merge_contextvars(None, "", event)
    event["level"] = "debug" if level == logging.DEBUG else "info"
    event["logger"] = ACCESS_LOGGER_NAME
    _iso_utc_stamp(None, "", event)
    redact(None, "", event)
    return _json.dumps(event, default=str) + "\n"


# WSGI's name of the X-Request-ID header.
_REQUEST_ID_ENVIRON_KEY = "HTTP_X_REQUEST_ID"
# Routes probed every few seconds: access lines at DEBUG, not INFO.
_QUIET_ROUTES = frozenset({"/healthz", "/metrics"})
_UNMATCHED_ROUTE = "<unmatched>"


def metrics_token(app: Any) -> str | None:
    """The bearer token `/metrics` requires: METRICS_TOKEN from the app's settings or, for an
    app built without them, the environment."""
    token = app.config.get("METRICS_TOKEN") or getattr(
        app.config.get("SETTINGS"), "METRICS_TOKEN", None
    )
    return token or os.environ.get("METRICS_TOKEN") or None


def init_app(app: Any, service_name: str) -> None:
    """Request ids, access log, request metrics and `GET /metrics` for one Flask app."""
    from flask import Response, g, request

    extensions = app.extensions
    if "rf_observability" in extensions:
        return
    extensions["rf_observability"] = {"service": service_name}
    access_log = get_logger(ACCESS_LOGGER_NAME)
    stdlib_access = logging.getLogger(ACCESS_LOGGER_NAME)
    # The histogram's child per (method, route template, status): `labels()` builds and
    # validates its key on every call. Route templates are few, so this stays small; the
    # bound only guards against a client inventing methods.
    histograms: dict[tuple[str, str, int], Any] = {}

    def _start_request() -> None:
        _reset_context()
        request_id = sanitize_request_id(request.environ.get(_REQUEST_ID_ENVIRON_KEY))
        g.rf_request_id = request_id
        g.rf_request_started = time.perf_counter()
        structlog.contextvars.bind_contextvars(request_id=request_id, service=service_name)

    # First in line, so hooks registered earlier (authentication...) already log with the id.
    app.before_request_funcs.setdefault(None, []).insert(0, _start_request)

    @app.after_request
    def _finish_request(response: Any) -> Any:
        current = request._get_current_object()  # type: ignore[attr-defined]
        request_g = g._get_current_object()
        request_id = getattr(request_g, "rf_request_id", None) or sanitize_request_id(
            current.environ.get(_REQUEST_ID_ENVIRON_KEY)
        )
        response.headers[REQUEST_ID_HEADER] = request_id
        started = getattr(request_g, "rf_request_started", None)
        duration = time.perf_counter() - started if started is not None else 0.0
        url_rule = current.url_rule
        rule = url_rule.rule if url_rule is not None else _UNMATCHED_ROUTE
        method = current.method
        status = response.status_code
        if rule != "/metrics":
            key = (method, rule, status)
            child = histograms.get(key)
            if child is None:
                child = HTTP_REQUEST_DURATION.labels(
                    service=service_name, method=method, route=rule, status=str(status)
                )
                if len(histograms) < 4096:
                    histograms[key] = child
            child.observe(duration)
        level = logging.DEBUG if rule in _QUIET_ROUTES else logging.INFO
        if not stdlib_access.isEnabledFor(level):
            return response
        fields = {
            "method": method,
            "route": rule,
            "status": status,
            "duration_ms": round(duration * 1000, 2),
        }
        fast = _access_fast
        root_handlers = logging.root.handlers
        if fast is not None and len(root_handlers) == 1 and root_handlers[0] is fast[0]:
            fast[1].write(_access_line(fields, level))
        else:
            (access_log.debug if level == logging.DEBUG else access_log.info)("request", **fields)
        return response

    @app.teardown_request
    def _end_request(_exc: BaseException | None) -> None:
        # A streamed response that uses `stream_with_context` keeps the request context, and
        # so its request id and sensitive values, until the stream ends.
        _reset_context()

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


# ---------------------------------------------------------------------------------------------
# Celery
# ---------------------------------------------------------------------------------------------


def _task_request_id(task: Any) -> str | None:
    request = getattr(task, "request", None)
    if request is None:
        return None
    value = getattr(request, CELERY_REQUEST_ID_HEADER, None)
    if not value:
        headers = getattr(request, "headers", None) or {}
        if isinstance(headers, Mapping):
            value = headers.get(CELERY_REQUEST_ID_HEADER)
    return value if isinstance(value, str) and _REQUEST_ID_RE.fullmatch(value) else None


def on_before_task_publish(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """`before_task_publish`: copy the current request id into the message headers."""
    if headers is None:
        return
    request_id = current_request_id()
    if request_id and CELERY_REQUEST_ID_HEADER not in headers:
        headers[CELERY_REQUEST_ID_HEADER] = request_id


def _propagate_request_ids_to_tasks() -> None:
    """Connect `on_before_task_publish` (once per process): `before_task_publish` is a global
    signal, so every Celery app of the process, publisher apps included, adds the id."""
    from celery import signals

    signals.before_task_publish.connect(
        on_before_task_publish, weak=False, dispatch_uid="rf-before-task-publish"
    )


_task_started: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "rf_task_started", default=None
)


def on_task_prerun(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    """`task_prerun`: start the task with a clean log context bound to its request id."""
    _reset_context()
    task_name = getattr(task, "name", None) or "unknown"
    request_id = _task_request_id(task) or task_id or new_request_id()
    structlog.contextvars.bind_contextvars(
        request_id=request_id, task_name=task_name, task_id=task_id
    )
    _task_started.set(time.perf_counter())


# Labelled children of the task metrics, per (metric, label values): `labels()` builds and
# checks its key on every call, and a worker runs these for every task. Task names and states
# are few.
_children: dict[tuple[Any, ...], Any] = {}


def _labelled(metric: Any, *values: str) -> Any:
    key = (id(metric), *values)
    child = _children.get(key)
    if child is None:
        child = metric.labels(*values)
        if len(_children) < 4096:
            _children[key] = child
    return child


def on_task_postrun(task: Any = None, state: str | None = None, **_: Any) -> None:
    """`task_postrun`: record the task's metrics and drop its log context."""
    task_name = getattr(task, "name", None) or "unknown"
    started = _task_started.get()
    if started is not None:
        _labelled(CELERY_TASK_SECONDS, task_name).observe(time.perf_counter() - started)
    _labelled(CELERY_TASKS, task_name, state or "UNKNOWN").inc()
    _task_started.set(None)
    _reset_context()


def init_celery(
    celery_app: Any,
    *,
    configure_worker_logging: bool = True,
    metrics_server: bool = True,
) -> None:
    """Propagate request ids through Celery and log tasks with their ids.

    With `configure_worker_logging`, the worker keeps `configure_logging()`'s JSON output
    instead of installing its own handlers. With `metrics_server`, a worker process serves
    `/metrics` on `WORKER_METRICS_PORT` (default 9808; 0 disables) once it starts.
    """
    from celery import signals

    if getattr(celery_app, "_rf_observability", False):
        return
    celery_app._rf_observability = True
    _propagate_request_ids_to_tasks()
    signals.task_prerun.connect(on_task_prerun, weak=False, dispatch_uid="rf-task-prerun")
    signals.task_postrun.connect(on_task_postrun, weak=False, dispatch_uid="rf-task-postrun")

    if configure_worker_logging:

        def _setup_logging(loglevel: Any = None, **_: Any) -> None:
            level = os.environ.get("LOG_LEVEL") or (
                logging.getLevelName(loglevel) if isinstance(loglevel, int) else "INFO"
            )
            configure_logging(str(level))

        # A receiver on `setup_logging` stops Celery from hijacking the root logger.
        signals.setup_logging.connect(_setup_logging, weak=False, dispatch_uid="rf-setup-logging")

    if metrics_server:

        def _start_metrics(**_: Any) -> None:
            start_worker_metrics_server()

        signals.worker_init.connect(_start_metrics, weak=False, dispatch_uid="rf-worker-metrics")


def start_worker_metrics_server(port: int | None = None, addr: str = "0.0.0.0") -> Any:
    """Serve this worker's metrics over HTTP in a daemon thread; returns the server or None.

    `port` defaults to `WORKER_METRICS_PORT` (9808); 0 disables the server.
    """
    from prometheus_client import start_http_server

    if port is None:
        raw = os.environ.get("WORKER_METRICS_PORT", "").strip()
        port = int(raw) if raw else DEFAULT_WORKER_METRICS_PORT
    if port == 0:
        return None
    server, _thread = start_http_server(port, addr=addr, registry=_collector_registry())
    get_logger(__name__).info("worker metrics server started", port=port)
    return server


def bind_context(**values: Any) -> None:
    """Add values to the log context of the current request or task."""
    structlog.contextvars.bind_contextvars(**values)
