"""The broker side of the outbox: publishing events as Celery messages for the notes workers.

Services never import each other; the notes worker registers `notes.handle_event` and the
services only know its name and queue, both declared in :mod:`shared.tasks`.
"""

from __future__ import annotations

import threading
from typing import Any

from celery import Celery

from shared.broker_transport import transport_for
from shared.redis_client import broker_options
from shared.tasks import TASK_HANDLE_EVENT, queue_of

_publishers: dict[str, Celery] = {}
_lock = threading.Lock()


def make_publisher(broker_url: str) -> Celery:
    url, transport_options = broker_options(broker_url)
    app = Celery("resolutionflow-publisher", broker=url, set_as_current=False)
    app.conf.update(
        # One Redis client per channel, not one per publish (see shared.broker_transport).
        broker_transport=transport_for(url),
        # A dead broker must fail fast at commit time: the outbox relay retries later.
        broker_connection_retry=False,
        broker_connection_retry_on_startup=False,
        broker_connection_max_retries=0,
        broker_connection_timeout=2,
        broker_transport_options={
            "socket_connect_timeout": 2,
            "socket_timeout": 5,
            **transport_options,
        },
        task_serializer="json",
        accept_content=["json"],
    )
    return app


def get_publisher(broker_url: str) -> Celery:
    with _lock:
        app = _publishers.get(broker_url)
        if app is None:
            app = make_publisher(broker_url)
            _publishers[broker_url] = app
        return app


def send_event(
    broker_url: str, event: dict[str, Any], headers: dict[str, str] | None = None
) -> None:
    """Publish one event; raises if the broker cannot take it."""
    get_publisher(broker_url).send_task(
        TASK_HANDLE_EVENT,
        args=[event],
        queue=queue_of(TASK_HANDLE_EVENT),
        retry=False,
        headers=headers or {},
    )


def reset_publishers() -> None:
    with _lock:
        for app in _publishers.values():
            app.close()
        _publishers.clear()
