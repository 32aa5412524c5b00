"""The notes Celery app: `celery -A services.notes.worker worker -Q notes,events,webhooks` and
`celery -A services.notes.worker beat`.

Built in one place (:func:`create_celery_app`) from Settings read from the environment. Importing
this module connects nowhere and starts nothing: the broker is contacted when a worker or beat
starts, and each worker process configures the runtime (database, settings) in `worker_init`.

Pool: threads, chosen by measurement (bench/test_bench_notes.py; deploy/README.md has the
figures). Generating a note is waiting on the LLM (I/O), so notes per second grow with the
number of threads (`--concurrency`) until the process's GIL is busy. Half of a process's GIL
time is Celery's consumer thread (kombu's Redis transport: the delivery's and the ack's
unacked-message bookkeeping, one thread per process), the rest the tasks' own CPU. So a process
runs 16 threads and capacity comes from more processes (replicas): at 64 slots, 4 processes
of 16 and 2 of 32 gave 0.67x and 0.64x of the ideal where one of 64 gave 0.44x, same hour. The
gevent pool measured at half the threads pool's rate (psycopg2 blocks its hub without green
support, which is not installed).

Time limits: `task_time_limit`/`task_soft_time_limit` are honoured by the prefork and gevent
pools; under the threads pool the LLM client's timeout and the webhook timeout bound each task,
and the PostgreSQL leases hand a stuck job to another worker.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, signals
from celery.worker.consumer import Consumer as CeleryConsumer
from kombu.entity import Queue

from shared.broker_transport import transport_for
from shared.config import Settings
from shared.redis_client import broker_options
from shared.tasks import (
    QUEUE_NOTES,
    QUEUES,
    TASK_BATCH_LANE,
    TASK_QUEUES,
    TASK_RELAY_OUTBOX,
    TASK_SWEEP,
    queue_of,
)

# The Redis broker hands an unacknowledged message to another worker only after this long. Our
# correctness never depends on it (leases + sweeper do), so it stays long enough that no
# countdown task we keep in the broker (at most 5 min, see deliveries.MAX_COUNTDOWN_S) is
# redelivered early.
VISIBILITY_TIMEOUT_S = 3600


# kombu's reconnect waits 2 s, then 4, 6, 8 ... up to 30 s between attempts: a broker back
# after 30 s down would wait up to 12 s more for its worker. Capped, the worker reconnects
# within BROKER_RETRY_MAX_S of the broker answering.
BROKER_RETRY_MAX_S = 2.0


class Consumer(CeleryConsumer):  # type: ignore[misc]
    """Celery's consumer, reconnecting to a lost broker every BROKER_RETRY_MAX_S at most."""

    def ensure_connected(self, conn: Any) -> Any:
        ensure = conn.ensure_connection

        def capped(*args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("interval_start", 1)
            kwargs.setdefault("interval_step", 1)
            kwargs.setdefault("interval_max", BROKER_RETRY_MAX_S)
            return ensure(*args, **kwargs)

        conn.ensure_connection = capped
        return super().ensure_connected(conn)


def broker_url(settings: Settings) -> str:
    # Without REDIS_URL the worker uses the embedded Redis `make run` starts (same port).
    return settings.REDIS_URL or f"redis://127.0.0.1:{settings.EMBEDDED_REDIS_PORT}/0"


def celery_config(settings: Settings) -> dict[str, Any]:
    generation_limit = settings.LLM_TIMEOUT_S * (settings.LLM_MAX_RETRIES + 1) * 2 + 60
    # A Sentinel REDIS_URL becomes kombu's sentinel:// transport with the master name.
    url, sentinel_options = broker_options(broker_url(settings))
    return {
        "broker_url": url,
        # kombu's Redis transport, keeping one client per channel (see shared.broker_transport).
        "broker_transport": transport_for(url),
        # A broker that restarts (or fails over) must find its workers again by itself: retry
        # the connection for ever, at start-up and after a loss. Where kombu still crashes on
        # the way back, `make run`'s supervisor and the container's restart policy restart it.
        "broker_connection_retry_on_startup": True,
        "broker_connection_retry": True,
        "broker_connection_max_retries": None,
        "broker_channel_error_retry": True,
        "worker_consumer": f"{__name__}:Consumer",
        "broker_transport_options": {
            "visibility_timeout": VISIBILITY_TIMEOUT_S,
            "socket_connect_timeout": 5,
            # A silently dead connection (the primary gone, no RST) is noticed within seconds.
            "socket_keepalive": True,
            "health_check_interval": 10,
            # No `retry_on_timeout`: kombu reconnects by itself (above). With it, redis-py
            # reconnected the worker's pub/sub connection (remote control) inside kombu's event
            # loop to whichever server answered next; after a Sentinel failover that the loop
            # noticed late (a busy machine), that was the new primary, and the loop then waited
            # on that connection for ever: alive, consuming nothing. Without it the error
            # reaches kombu, which rebuilds the consumer on the new primary.
            **sentinel_options,
        },
        # Results are not used: state lives in PostgreSQL and the note cache.
        "task_ignore_result": True,
        "result_backend": None,
        "task_serializer": "json",
        "accept_content": ["json"],
        "timezone": "UTC",
        "enable_utc": True,
        "task_queues": tuple(Queue(name) for name in QUEUES),
        "task_default_queue": QUEUE_NOTES,
        "task_routes": {name: {"queue": queue} for name, queue in TASK_QUEUES.items()},
        # Idempotent tasks: acknowledge after running, and hand a task back if its worker dies.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_soft_time_limit": int(generation_limit),
        "task_time_limit": int(generation_limit) + 30,
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
        "worker_concurrency": settings.WORKER_CONCURRENCY,
        "beat_schedule": {
            TASK_RELAY_OUTBOX: {
                "task": TASK_RELAY_OUTBOX,
                "schedule": settings.OUTBOX_RELAY_INTERVAL_S,
                "options": {
                    "queue": queue_of(TASK_RELAY_OUTBOX),
                    "expires": settings.OUTBOX_RELAY_INTERVAL_S * 2,
                },
            },
            TASK_SWEEP: {
                "task": TASK_SWEEP,
                "schedule": settings.SWEEP_INTERVAL_S,
                "options": {
                    "queue": queue_of(TASK_SWEEP),
                    "expires": settings.SWEEP_INTERVAL_S * 2,
                },
            },
            TASK_BATCH_LANE: {
                "task": TASK_BATCH_LANE,
                "schedule": settings.BATCH_INTERVAL_S,
                "options": {
                    "queue": queue_of(TASK_BATCH_LANE),
                    "expires": settings.BATCH_INTERVAL_S * 2,
                },
            },
        },
    }


def create_celery_app(settings: Settings | None = None) -> Celery:
    settings = settings or Settings.from_env()
    celery_app = Celery("resolutionflow.notes", set_as_current=True)
    celery_app.conf.update(celery_config(settings))
    celery_app.conf.rf_settings = settings

    from shared import observability

    observability.init_celery(celery_app)
    return celery_app


app = create_celery_app()
celery = app

# Registers the tasks with this app (shared_task binds them to every app).
from services.notes import tasks as _tasks  # noqa: E402,F401


@signals.worker_init.connect(weak=False)
def _configure_runtime(**_: Any) -> None:
    """Once per worker: settings validated, embedded servers resolved, database configured."""
    from shared import runtime
    from shared.db import db
    from shared.models.base import NOTES
    from shared.models.exposed import SERVICE_ROLES

    settings = runtime.configure(app.conf.rf_settings)
    # Every task of this worker reads and writes as the notes service.
    db.run_as(SERVICE_ROLES[NOTES])
    # The process says it is alive, and hands on the jobs of processes that stopped saying so.
    from services.notes import liveness
    from services.notes.tasks import enqueue_reclaimed

    liveness.start(settings, enqueue_reclaimed)


@signals.worker_shutdown.connect(weak=False)
def _stop_beating(**_: Any) -> None:
    """After a warm shutdown (every running task finished): stop beating, delete the row."""
    from services.notes import liveness

    liveness.stop()


@signals.worker_process_init.connect(weak=False)
def _configure_child(**_: Any) -> None:
    """Prefork children: never share the parent's connections across the fork."""
    from shared import runtime
    from shared.db import db
    from shared.redis_client import reset_clients

    db.dispose()
    reset_clients()
    runtime.configure(app.conf.rf_settings)
