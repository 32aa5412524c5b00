"""The end-to-end stacks, all started by tests/support/stack.py:

* `gateway` (module): the product as users start it: the gateway under gunicorn (2 processes),
  two Celery worker processes (threads pool), the stub Messages API in its own process. A module
  may define `gateway_overrides` (module scope) to change its settings.
* `fault_stack` (per test): the stack the fault tests break on purpose: on a Redis of the test's
  own, with short leases and retries (a test may pass other settings), beat, and the owner's
  notes going to a webhook receiver.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from typing import Any

import pytest

from shared.config import Settings
from shared.db import db
from tests.support.receiver import WebhookReceiver
from tests.support.stack import RunningStack, running_stack

# Leases, sweeps and retries short enough that a fault heals within the tests' deadlines.
FAULT_SETTINGS: dict[str, Any] = {
    "JOB_LEASE_S": 3,
    "SWEEP_INTERVAL_S": 1.0,
    "OUTBOX_RELAY_INTERVAL_S": 1.0,
    "NOTES_LOCK_TTL_S": 3.0,
    "NOTES_PREWARM": False,
    "WEBHOOK_RETRY_SCHEDULE_S": (0, 1, 1, 1, 1, 1, 1, 1),
    "WEBHOOK_TIMEOUT_S": 5.0,
}


@pytest.fixture(scope="module")
def gateway_overrides() -> dict[str, Any]:
    return {}


@pytest.fixture(scope="module")
def gateway(migrated: Settings, gateway_overrides: dict[str, Any]) -> Iterator[RunningStack]:
    values: dict[str, Any] = {
        "ANTHROPIC_API_KEY": "test-key",
        "LLM_MAX_RETRIES": 0,
        "LLM_TIMEOUT_S": 20.0,
        "NOTES_PREWARM": True,
        "NOTES_PREWARM_QUIET_S": 1.0,
        "NOTES_LOCK_TTL_S": 5.0,
    }
    overrides = {**values, **gateway_overrides}
    # Without an API key the notes are written offline: no stub to point at.
    with_stub = overrides["ANTHROPIC_API_KEY"] is not None
    settings = replace(migrated, **overrides)
    with running_stack(settings, stub=with_stub, workers=2, concurrency=4) as stack:
        yield stack


@dataclass
class FaultStack:
    stack: RunningStack
    owner: Any
    receiver: WebhookReceiver

    @property
    def base_url(self) -> str:
        return self.stack.base_url


@pytest.fixture
def fault_stack(
    migrated: Settings, make_user: Callable[..., Any]
) -> Callable[..., AbstractContextManager[FaultStack]]:
    """Starts the fault tests' stack on `redis_url` (the test's own Redis, which it breaks)."""
    from services.notes.integrations import configure_ticketing

    @contextmanager
    def start(
        redis_url: str, *, supervise: bool, log_name: str, workers: int = 1, **overrides: Any
    ) -> Iterator[FaultStack]:
        owner = make_user("owner")
        settings = replace(migrated, REDIS_URL=redis_url, **{**FAULT_SETTINGS, **overrides})
        with (
            WebhookReceiver() as receiver,
            running_stack(
                settings,
                beat=True,
                supervise=supervise,
                workers=workers,
                concurrency=4,
                log_name=log_name,
            ) as stack,
        ):
            with db.transaction() as session:
                receiver.secret = configure_ticketing(
                    session,
                    account_id=owner.account_id,
                    url=receiver.url,
                    secret=None,
                    allow_private=True,
                ).secret
            yield FaultStack(stack, owner, receiver)

    return start
