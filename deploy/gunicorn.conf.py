"""Gunicorn settings for every ResolutionFlow API process.

    gunicorn -c deploy/gunicorn.conf.py "services.scripts:create_app()"

The same file serves scripts (8001), pilot (8002), notes (8003) and the gateway (8000); the
container sets PORT. Every value can be overridden from the environment (names below) without
rebuilding the image.

Why these values
* worker_class gthread, chosen by measurement (bench/test_bench_gateway.py measures sync,
  gthread and gevent, each against a bare Flask route under the same settings in the same run;
  deploy/README.md has the figures). sync answers a tiny request fastest, but the API's
  requests are not all tiny: a preview long-polls for its note (up to `wait`, 30 s by default)
  and a FlowPilot chat turn streams the LLM's answer as Server-Sent Events, and each of those
  would pin a whole sync process. gevent measured no faster than gthread here and would need
  monkey-patching plus psycopg2's green wait callback (psycogreen) so that a query does not
  block every other request of the process. Threads give concurrency per process with plain
  blocking code (psycopg2, redis-py, requests), and gthread parks idle keep-alive connections
  in its poller instead of a thread.
* workers: WEB_CONCURRENCY, else 2 x CPUs + 1 capped at GUNICORN_MAX_WORKERS (8). CPUs are read
  from the cgroup quota, so a pod limited to 1 CPU on a 64-core node starts 3, not 129.
* threads: GUNICORN_THREADS (8). Concurrent requests per pod = workers x threads; size the DB
  pool (per process) and the number of concurrent SSE streams against it.
* timeout 120 s: for gthread this is the worker *heartbeat* (the main loop keeps beating while
  requests run in threads), so it only catches a wedged process; it is not a request timeout.
* graceful_timeout: on SIGTERM a worker stops accepting and finishes in-flight requests for
  this long. It covers the longest LLM call (LLM_TIMEOUT_S 60 s, plus a streamed answer): 120 s
  by default. Kubernetes' terminationGracePeriodSeconds must exceed it (150 s there).
* keepalive 75 s: longer than nginx's upstream keepalive_timeout (60 s) so that nginx, not
  gunicorn, closes idle upstream connections and never reuses one gunicorn just dropped.
* max_requests 2000 + jitter 200: recycle workers now and then, staggered, to bound leaks.
* accesslog off: shared.observability logs one JSON access line per request (with request id,
  route template and duration) and never the query string; a second line per request would add
  nothing. GUNICORN_ACCESS_LOG=- turns gunicorn's own back on.
* PROMETHEUS_MULTIPROC_DIR: several processes serve /metrics; each writes its samples there and
  /metrics aggregates them. It defaults to a directory per bound address under the temp dir
  (`make run`, which binds with --bind, gets its own), is emptied
  when the server starts, and a dead worker's live gauges are dropped in child_exit.
"""

from __future__ import annotations

import gc
import glob
import math
import os
import re
import tempfile
from typing import Any


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    try:
        return int(raw) if raw else default
    except ValueError as exc:
        raise SystemExit(f"{name} must be an integer, got {raw!r}") from exc


def cpu_count() -> int:
    """CPUs this process may use: the cgroup quota when there is one, else the affinity mask."""
    try:
        available = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        available = os.cpu_count() or 1
    quota = None
    try:  # cgroup v2
        with open("/sys/fs/cgroup/cpu.max") as fh:
            limit, period = fh.read().split()[:2]
        if limit != "max":
            quota = int(limit) / int(period)
    except (OSError, ValueError):
        try:  # cgroup v1
            with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as fh:
                limit_us = int(fh.read())
            with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as fh:
                period_us = int(fh.read())
            if limit_us > 0 and period_us > 0:
                quota = limit_us / period_us
        except (OSError, ValueError):
            pass
    if quota is not None:
        return max(1, min(available, math.ceil(quota)))
    return max(1, available)


def default_workers() -> int:
    return max(1, min(2 * cpu_count() + 1, _env_int("GUNICORN_MAX_WORKERS", 8)))


port = _env_int("PORT", 8000)
bind = [f"{os.environ.get('BIND_HOST', '0.0.0.0')}:{port}"]
# Pending connections the kernel queues while every thread is busy.
backlog = _env_int("GUNICORN_BACKLOG", 2048)

worker_class = "gthread"
workers = _env_int("WEB_CONCURRENCY", 0) or default_workers()
threads = _env_int("GUNICORN_THREADS", 8)

timeout = _env_int("GUNICORN_TIMEOUT", 120)
graceful_timeout = _env_int("GUNICORN_GRACEFUL_TIMEOUT", 120)
keepalive = _env_int("GUNICORN_KEEPALIVE", 75)

max_requests = _env_int("GUNICORN_MAX_REQUESTS", 2000)
max_requests_jitter = _env_int("GUNICORN_MAX_REQUESTS_JITTER", 200)

# Import the app in each worker, not the master: every worker opens its own database and Redis
# connections after the fork, and a deploy of new code needs no master restart trick.
preload_app = False

# The heartbeat file is touched constantly; keep it in memory (also works with a read-only root
# filesystem, where /dev/shm or an emptyDir /tmp is the only writable place).
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
# Gunicorn's runtime control socket defaults to one fixed path per user ($XDG_RUNTIME_DIR or
# ~/.gunicorn/gunicorn.ctl) that every server on the host would share, and needs a writable
# $HOME; nothing here uses it, so no server of ours opens one (`make run` included).
control_socket_disable = True

# Behind nginx / the ingress controller: trust its X-Forwarded-* headers. Inside the cluster or
# compose network only the proxy reaches the pods; narrow this with FORWARDED_ALLOW_IPS.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "*")

accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
access_log_format = (
    '{"logger":"gunicorn.access","method":"%(m)s","path":"%(U)s","status":%(s)s,'
    '"duration_us":%(D)s,"request_id":"%({x-request-id}i)s"}'
)
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
proc_name = os.environ.get("SERVICE_NAME") or None

_multiproc_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or ""
_multiproc_ready = False


def _use_multiproc_dir(cfg: Any) -> str:
    """Pick the metrics directory once, in the master, before anything imports
    prometheus_client (which reads PROMETHEUS_MULTIPROC_DIR once, at import; workers fork from
    the master and inherit it). The default is one directory per bound address (`--bind` on
    the command line included), so two servers on one host never empty each other's samples."""
    global _multiproc_dir, _multiproc_ready
    if _multiproc_ready:
        return _multiproc_dir
    if not _multiproc_dir:
        binds = getattr(cfg, "bind", None) or bind
        label = "-".join(re.sub(r"[^A-Za-z0-9.]+", "_", b) for b in binds)
        _multiproc_dir = os.path.join(tempfile.gettempdir(), f"rf-prometheus-{label}")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _multiproc_dir
    # Emptied at server start: samples of a previous run's processes must not be aggregated.
    os.makedirs(_multiproc_dir, exist_ok=True)
    for stale in glob.glob(os.path.join(_multiproc_dir, "*.db")):
        os.remove(stale)
    _multiproc_ready = True
    return _multiproc_dir


def _json_logging() -> None:
    try:
        from shared.observability import configure_logging
    except ImportError:  # an app without the shared package keeps gunicorn's text logs
        return
    configure_logging(os.environ.get("LOG_LEVEL", "INFO"))


try:
    from gunicorn.glogging import Logger as _GunicornLogger
except ImportError:  # pragma: no cover - read by something other than gunicorn
    pass
else:

    class JsonLogger(_GunicornLogger):  # type: ignore[misc]
        """gunicorn's logger, rerouted through shared.observability's JSON chain (redaction
        included) as soon as gunicorn sets it up: its very first line ("Starting gunicorn")
        is JSON too."""

        def setup(self, cfg: Any) -> None:
            super().setup(cfg)
            _use_multiproc_dir(cfg)
            _json_logging()

    logger_class = JsonLogger


def on_starting(server: Any) -> None:
    """Master, before the first fork: empty the metrics directory and switch logs to JSON."""
    _use_multiproc_dir(server.cfg)
    _json_logging()


def post_worker_init(worker: Any) -> None:
    """Worker, after the app is loaded: keep JSON logs even if the app touched logging, and
    take the loaded app out of the garbage collector's sight.

    A loaded worker holds some 280,000 objects (Flask, SQLAlchemy, the SDKs, the schemas)
    that live as long as it does; a full collection walked them all and stopped every thread of
    the worker for 100-190 ms on two busy cores, which was the whole p99 of the cached preview
    (bench/test_bench_gateway.py). Frozen, they are never scanned again: a collection looks
    only at what requests allocate."""
    _json_logging()
    gc.collect()
    gc.freeze()


def child_exit(server: Any, worker: Any) -> None:
    """Master, when a worker exits: drop its live gauges from the aggregated metrics."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, _multiproc_dir)


def worker_abort(worker: Any) -> None:
    """SIGABRT after the heartbeat timeout: say which worker died and why before it goes."""
    worker.log.warning("worker %s aborted after missing its heartbeat timeout", worker.pid)
