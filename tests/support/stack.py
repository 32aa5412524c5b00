"""The one way the end-to-end tests start the product: the gateway under gunicorn with the
deploy's settings (two processes), real Celery workers, beat when asked, the stub Messages API in
a process of its own when asked, all as children of the test on free loopback ports.

    with running_stack(settings, stub=True, workers=2) as stack:
        stack.api("GET", "/api/v1/ai-sessions", token)

Every process of a stack keeps small PostgreSQL pools (TEST_STACK_POOL) unless the settings
name their own. `make_run=True` starts `python -m app.devstack` instead, the program `make run`
runs, which starts the same three programs under its supervisor. `supervise=True` runs the
worker (`workers` processes) under that supervisor too (restarted when it dies), for the fault
tests.

A module-scoped fixture that yields a `RunningStack` and is named in
tests/support/fixtures/state.py's `RUNNING_STACKS` gets the stack's own clean-up between tests,
which keeps the broker's bindings for its workers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import requests

from shared.config import PROJECT_ROOT, Settings
from shared.supervisor import Policy, Supervisor
from tests.support.stub_anthropic import StubAnthropicProcess
from tests.support.workers import (
    CeleryBeat,
    CeleryWorker,
    child_env,
    clean_state,
    free_port,
    running_gateway,
    wait_until,
)

NOTE_SYSTEM_MARKER = "You write resolution notes"
# Each process of a test stack keeps few PostgreSQL connections (two pools per process, and
# several stacks of parallel test modules share one server's max_connections): enough for its
# threads under load, never the production 10 kept + 20 more per pool.
TEST_STACK_POOL: dict[str, Any] = {"DB_POOL_SIZE": 2, "DB_POOL_OVERFLOW": 10}
LOGS = PROJECT_ROOT / ".test-artifacts" / "workers"


@dataclass
class RunningStack:
    settings: Settings
    base_url: str
    stub: StubAnthropicProcess | None
    workers: list[CeleryWorker]
    logs: list[Path]
    supervisor: Supervisor | None = None
    http: requests.Session = field(default_factory=requests.Session)

    @property
    def redis_url(self) -> str:
        assert self.settings.REDIS_URL is not None
        return self.settings.REDIS_URL

    @property
    def stub_url(self) -> str:
        assert self.stub is not None, "this stack runs without the stub Messages API"
        return self.stub.url

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def api(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> Any:
        """One request to the gateway, with `token` as the bearer when given."""
        headers = dict(kwargs.pop("headers", None) or {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        kwargs.setdefault("timeout", 60)
        return self.http.request(method, self.url(path), headers=headers, **kwargs)

    def note_calls(self) -> list[dict[str, Any]]:
        """The stub's recorded calls that were resolution-note generations."""
        assert self.stub is not None and self.stub.client is not None
        calls = self.stub.client.calls()
        return [c for c in calls if NOTE_SYSTEM_MARKER in str(c["json"].get("system"))]

    def worker_pid(self, program: str = "worker") -> int | None:
        """A supervised worker's pid while it runs (`worker`, then `worker-2`, ...)."""
        assert self.supervisor is not None, "this stack's worker is not supervised"
        proc = self.supervisor.programs[program].proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def worker_programs(self) -> list[str]:
        assert self.supervisor is not None, "this stack's worker is not supervised"
        return [name for name in self.supervisor.programs if name.startswith("worker")]

    def before_test(self) -> None:
        if self.stub is not None and self.stub.client is not None:
            self.stub.client.reset()

    def after_test(self) -> None:
        """Empty the tables and the app's keys; the broker's bindings stay for the workers."""
        clean_state(self.settings, self.workers[0] if self.workers else None)


@contextmanager
def running_stack(
    settings: Settings,
    *,
    stub: bool = False,
    workers: int = 1,
    concurrency: int = 4,
    beat: bool = False,
    supervise: bool = False,
    make_run: bool = False,
    log_level: str | None = None,
    log_name: str = "gateway",
    gateway_env: Mapping[str, str] | None = None,
) -> Iterator[RunningStack]:
    """The product's processes for `settings` (see the module's docstring); stopped afterwards.
    With `stub`, ANTHROPIC_API_KEY and ANTHROPIC_BASE_URL point at a stub of its own."""
    LOGS.mkdir(parents=True, exist_ok=True)
    if settings.DB_POOL_SIZE == Settings.DB_POOL_SIZE and settings.DB_POOL_OVERFLOW is None:
        settings = replace(settings, **TEST_STACK_POOL)
    with ExitStack() as started:
        stub_process: StubAnthropicProcess | None = None
        if stub:
            stub_process = started.enter_context(StubAnthropicProcess(cwd=str(PROJECT_ROOT)))
            settings = replace(
                settings,
                ANTHROPIC_API_KEY=settings.ANTHROPIC_API_KEY or "test-key",
                ANTHROPIC_BASE_URL=stub_process.url,
            )
        extra = {"LOG_LEVEL": log_level} if log_level else {}
        env = child_env(settings, **extra)
        logs: list[Path] = []
        if make_run:
            base = started.enter_context(_make_run(settings, env, logs, log_name))
            yield RunningStack(settings, base, stub_process, [], logs)
            return
        supervisor: Supervisor | None = None
        running: list[CeleryWorker] = []
        if supervise:
            supervisor = started.enter_context(
                _supervised_worker(env, concurrency, log_name, workers)
            )
            logs.append(LOGS / f"{log_name}-supervisor.log")
        else:
            for _ in range(workers):
                worker = started.enter_context(CeleryWorker(env, concurrency=concurrency))
                running.append(worker)
                assert worker.log_path is not None
                logs.append(worker.log_path)
        if beat:
            beat_process = started.enter_context(CeleryBeat(env))
            assert beat_process.log_path is not None
            logs.append(beat_process.log_path)
        base = started.enter_context(
            running_gateway({**env, **(gateway_env or {})}, log_name=log_name, logs=logs)
        )
        yield RunningStack(settings, base, stub_process, running, logs, supervisor)


@contextmanager
def _supervised_worker(
    env: dict[str, str], concurrency: int, log_name: str, workers: int = 1
) -> Iterator[Supervisor]:
    """The worker (`workers` processes: `worker`, `worker-2`, ...) under `make run`'s
    supervisor, which restarts each (quickly) when it dies."""
    log = open(LOGS / f"{log_name}-supervisor.log", "w")
    programs = {
        "worker" if n == 1 else f"worker-{n}": CeleryWorker(env, concurrency=concurrency).command()
        for n in range(1, workers + 1)
    }
    supervisor = Supervisor(
        programs,
        cwd=PROJECT_ROOT,
        env=env,
        policy=Policy(initial_backoff_s=0.5, max_backoff_s=2.0, crash_limit=50),
        log=log,
    )
    supervising = threading.Thread(target=supervisor.run, daemon=True)
    try:
        supervisor.start()
        supervising.start()
        yield supervisor
    finally:
        supervisor.request_stop()
        if supervising.is_alive():
            supervising.join(timeout=60)
        else:
            supervisor.stop()
        log.close()


@contextmanager
def _make_run(
    settings: Settings, env: dict[str, str], logs: list[Path], log_name: str
) -> Iterator[str]:
    """`python -m app.devstack` (what `make run` runs) on a free port; yields its base URL
    once /healthz answers and stops it with Ctrl-C, as a developer does."""
    port = free_port()
    env = {
        **env,
        "GATEWAY_PORT": str(port),
        "WEB_CONCURRENCY": "2",
        "WORKER_CONCURRENCY": "2",
        "RF_DATA_DIR": str(settings.DATA_DIR / f"{log_name}-{port}"),
    }
    log_path = LOGS / f"{log_name}-devstack-{port}.log"
    logs.append(log_path)
    log = open(log_path, "w")  # a file, not a pipe the stack could fill
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.devstack"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"make run's stack exited:\n{log_path.read_text()[-4000:]}")
        try:
            return requests.get(f"{base}/healthz", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_until(up, 180, interval_s=0.2, message="the stack's /healthz")
        yield base
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()


def undelivered_notes() -> list[tuple[Any, ...]]:
    """For a fault test's failure message: every note not delivered, with its session's state."""
    from sqlalchemy import select

    from shared.db import db
    from shared.models import AISession, ResolutionNote

    with db.session() as session:
        rows = session.execute(
            select(
                ResolutionNote.session_id,
                ResolutionNote.state_version,
                ResolutionNote.bundle.is_(None),
                ResolutionNote.markdown.is_(None),
                ResolutionNote.delivery_status,
                ResolutionNote.attempts,
                ResolutionNote.last_error,
                AISession.status,
                AISession.state_version,
                AISession.resolved_version,
            )
            .join(AISession, AISession.id == ResolutionNote.session_id)
            .where(ResolutionNote.delivery_status != "delivered")
        ).all()
    return [tuple(row) for row in rows]


def broker_client(broker_url: str, name: str) -> Any:
    """A Celery app that only publishes tasks or sends remote-control commands, to the broker
    at `broker_url` (a Sentinel URL too), with the product's own transport options."""
    from celery import Celery

    from shared.redis_client import broker_options

    url, transport_options = broker_options(broker_url)
    app = Celery(name, broker=url, set_as_current=False)
    app.conf.update(broker_transport_options=transport_options, task_ignore_result=True)
    return app
