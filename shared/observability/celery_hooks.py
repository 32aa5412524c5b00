"""The Celery side: the publishing request's id carried in the task's message headers and bound
while the task runs, task metrics, and the worker's logging and metrics server."""

from __future__ import annotations

import contextvars
import logging
import os
import time
from collections.abc import Mapping
from typing import Any

import structlog

from shared.observability.logs import configure_logging
from shared.observability.metrics import (
    CELERY_TASK_SECONDS,
    CELERY_TASKS,
    start_worker_metrics_server,
)
from shared.observability.request_ids import (
    _REQUEST_ID_RE,
    _reset_context,
    current_request_id,
    new_request_id,
)

# The header name a published Celery message carries the request id under.
CELERY_REQUEST_ID_HEADER = "request_id"


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
