"""Prometheus metrics. Defining a metric registers it with the default registry (or, in
multiprocess mode, prepares its per-process file lazily); it opens no connection and starts no
thread. `metrics_payload()` is what `GET /metrics` answers; a worker serves the same with
`start_worker_metrics_server()`."""

from __future__ import annotations

import os
from typing import Any

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

from shared.observability.logs import get_logger

DEFAULT_WORKER_METRICS_PORT = 9808


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
