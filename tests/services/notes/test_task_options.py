"""Every notes task is declared once (shared.tasks): its name and queue come from the table the
worker's routing, beat and publishers read, and its options from the one house decorator."""

from __future__ import annotations

import pytest

from shared.config import Settings
from shared.tasks import MAX_RETRIES, TASK_QUEUES, TRANSIENT_INFRA, declared_task


def test_every_registered_notes_task_is_declared_with_the_house_options() -> None:
    from services.notes.worker import app

    registered = sorted(name for name in app.tasks if name.startswith("notes."))
    assert registered == sorted(TASK_QUEUES)
    for name in registered:
        task = app.tasks[name]
        assert task.acks_late is True, name
        assert set(TRANSIENT_INFRA) <= set(task.autoretry_for), name
        assert task.retry_backoff and task.retry_jitter, name
        assert task.max_retries == MAX_RETRIES, name


def test_the_llm_tasks_also_retry_the_llm_s_transient_failures() -> None:
    from services.notes import tasks

    for task in (tasks.generate, tasks.prewarm_check, tasks.materialise_note):
        assert tasks.RetryableLLMError in task.autoretry_for
    assert tasks.RetryableLLMError not in tasks.deliver.autoretry_for


def test_routing_and_beat_read_the_declared_queues() -> None:
    from services.notes.worker import celery_config

    config = celery_config(Settings.from_env({"RF_ENV": "dev"}))
    assert config["task_routes"] == {name: {"queue": q} for name, q in TASK_QUEUES.items()}
    for name, entry in config["beat_schedule"].items():
        assert entry["task"] == name
        assert entry["options"]["queue"] == TASK_QUEUES[name]


def test_a_task_name_not_in_the_table_is_refused() -> None:
    with pytest.raises(KeyError):
        declared_task("notes.undeclared")
