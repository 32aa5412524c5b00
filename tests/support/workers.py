"""Real Celery workers (and beat) as subprocesses for tests and benchmarks, plus the helpers the
notes tests share: bounded waiting, a clean-up that keeps the broker's bindings, DB-level session
writers (the pilot service's writes, through the same `shared.events.bump` path it uses).

    worker = CeleryWorker(worker_env(settings, ANTHROPIC_BASE_URL=stub.url)).start()
    ...
    worker.kill()                  # SIGKILL, mid-task
    worker = worker.replacement().start()
    worker.stop()                  # SIGTERM, then SIGKILL
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from app.devstack import GUNICORN_CONF
from shared.config import PROJECT_ROOT, Settings

T = TypeVar("T")

ARTIFACTS = PROJECT_ROOT / ".test-artifacts"
BROKER_QUEUES = ("notes", "events", "webhooks")


# ── Local servers ─────────────────────────────────────────────────────────────────────────────


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_gateway(env: Mapping[str, str], *, log_name: str = "gunicorn") -> Iterator[str]:
    """The gateway under gunicorn with two processes, as users run it, on a free loopback port;
    yields its base URL once `/healthz` answers 200 and stops it afterwards."""
    # The deploy's settings, as `make run` uses them (JSON logs, no control socket).
    with running_gunicorn(
        env, "app.gateway:create_app()", log_name=log_name, config=str(GUNICORN_CONF)
    ) as base:
        yield base


@contextmanager
def running_gunicorn(
    env: Mapping[str, str],
    app: str,
    *,
    log_name: str = "gunicorn",
    worker_class: str = "gthread",
    workers: int = 2,
    threads: int = 16,
    ready_path: str = "/healthz",
    config: str | None = None,
) -> Iterator[str]:
    """`app` (a gunicorn app spec) under gunicorn on a free loopback port; yields its base URL
    once `ready_path` answers 200 and stops it afterwards. With `config` (a gunicorn config
    file, e.g. deploy/gunicorn.conf.py) the options given here still win over it."""
    import requests

    port = free_port()
    config_args = ["-c", config] if config else []
    # The config file derives per-port state (its metrics directory) from PORT.
    server_env = {**env, "PORT": str(port)} if config else dict(env)
    (ARTIFACTS / "workers").mkdir(parents=True, exist_ok=True)
    with open(ARTIFACTS / "workers" / f"{log_name}-{port}.log", "wb") as log:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                *config_args,
                "-w",
                str(workers),
                "-k",
                worker_class,
                "--threads",
                str(threads),
                "-b",
                f"127.0.0.1:{port}",
                "--timeout",
                "120",
                app,
            ],
            cwd=PROJECT_ROOT,
            env=server_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if server.poll() is not None:
            raise RuntimeError(
                f"gunicorn exited; see .test-artifacts/workers/{log_name}-{port}.log"
            )
        try:
            return requests.get(f"{base}{ready_path}", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_until(up, 60, interval_s=0.1, message="gunicorn")
        yield base
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()


# ── Waiting ───────────────────────────────────────────────────────────────────────────────────


def wait_until(
    predicate: Callable[[], T],
    timeout_s: float = 10.0,
    *,
    interval_s: float = 0.05,
    message: str = "condition",
) -> T:
    """Poll `predicate` until it returns something truthy; raise AssertionError at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {message}")
        time.sleep(interval_s)


def stays_false(predicate: Callable[[], Any], duration_s: float, interval_s: float = 0.05) -> bool:
    """True if `predicate` stayed falsy for the whole of `duration_s` (a bounded negative check)."""
    deadline = time.monotonic() + duration_s
    while time.monotonic() < deadline:
        if predicate():
            return False
        time.sleep(interval_s)
    return not predicate()


# ── Environment ───────────────────────────────────────────────────────────────────────────────


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment variables that reproduce `settings` in a child process."""
    env = {
        "RF_ENV": settings.ENV,
        "DATABASE_URL": settings.DATABASE_URL or "",
        "REDIS_URL": settings.REDIS_URL or "",
        "REDIS_KEY_PREFIX": settings.REDIS_KEY_PREFIX,
        "SECRET_KEY": settings.SECRET_KEY or "",
        "RF_DATA_DIR": str(settings.DATA_DIR),
        "ANTHROPIC_MODEL": settings.ANTHROPIC_MODEL,
        "LLM_TIMEOUT_S": str(settings.LLM_TIMEOUT_S),
        "LLM_MAX_RETRIES": str(settings.LLM_MAX_RETRIES),
        "NOTES_PREWARM": "true" if settings.NOTES_PREWARM else "false",
        "NOTES_PREWARM_QUIET_S": str(settings.NOTES_PREWARM_QUIET_S),
        "NOTES_LOCK_TTL_S": str(settings.NOTES_LOCK_TTL_S),
        "NOTES_PREVIEW_WAIT_S": str(settings.NOTES_PREVIEW_WAIT_S),
        "JOB_LEASE_S": str(settings.JOB_LEASE_S),
        "SWEEP_INTERVAL_S": str(settings.SWEEP_INTERVAL_S),
        "BATCH_INTERVAL_S": str(settings.BATCH_INTERVAL_S),
        "OUTBOX_RELAY_INTERVAL_S": str(settings.OUTBOX_RELAY_INTERVAL_S),
        "WEBHOOK_RETRY_SCHEDULE_S": ",".join(str(d) for d in settings.WEBHOOK_RETRY_SCHEDULE_S),
        "WEBHOOK_TIMEOUT_S": str(settings.WEBHOOK_TIMEOUT_S),
        "WEBHOOK_ACCOUNT_CONCURRENCY": str(settings.WEBHOOK_ACCOUNT_CONCURRENCY),
        "WEBHOOK_ACCOUNT_BUSY_DELAY_S": str(settings.WEBHOOK_ACCOUNT_BUSY_DELAY_S),
        "ALLOW_PRIVATE_WEBHOOKS": "true" if settings.ALLOW_PRIVATE_WEBHOOKS else "false",
        "WORKER_CONCURRENCY": str(settings.WORKER_CONCURRENCY),
    }
    if settings.CACHE_REDIS_URL:
        env["CACHE_REDIS_URL"] = settings.CACHE_REDIS_URL
    if settings.ANTHROPIC_API_KEY:
        env["ANTHROPIC_API_KEY"] = settings.ANTHROPIC_API_KEY
    if settings.ANTHROPIC_BASE_URL:
        env["ANTHROPIC_BASE_URL"] = settings.ANTHROPIC_BASE_URL
    return env


def child_env(settings: Settings, **extra: str) -> dict[str, str]:
    """os.environ without any ANTHROPIC_* of the developer's, plus `settings` and `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    env.update(settings_env(settings))
    env.setdefault("PYTHONUNBUFFERED", "1")
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    # Several workers on one host must not fight over the metrics port.
    env["WORKER_METRICS_PORT"] = "0"
    env.setdefault("LOG_LEVEL", "WARNING")
    env.update(extra)
    return env


def _log_file(name: str) -> Path:
    directory = ARTIFACTS / "workers"
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f"{name}.log"


def _control_app(broker_url: str) -> Any:
    from celery import Celery

    from shared.redis_client import broker_options

    url, transport_options = broker_options(broker_url)
    app = Celery("rf-test-control", broker=url, set_as_current=False)
    app.conf.update(
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=False,
        broker_connection_timeout=2,
        task_ignore_result=True,
    )
    return app


# ── Celery worker ─────────────────────────────────────────────────────────────────────────────


@dataclass
class CeleryWorker:
    """One `celery -A services.notes.worker worker` subprocess (threads pool by default)."""

    env: dict[str, str]
    concurrency: int = 4
    pool: str = "threads"
    queues: Iterable[str] = BROKER_QUEUES
    name: str = field(default_factory=lambda: f"rftest-{uuid.uuid4().hex[:8]}")
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def nodename(self) -> str:
        return f"{self.name}@{socket.gethostname()}"

    @property
    def broker_url(self) -> str:
        return self.env["REDIS_URL"]

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "services.notes.worker",
            "worker",
            "-Q",
            ",".join(self.queues),
            "--pool",
            self.pool,
            "-c",
            str(self.concurrency),
            "--prefetch-multiplier",
            "1",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-n",
            self.nodename,
            "--loglevel",
            self.env.get("LOG_LEVEL", "WARNING"),
        ]

    def start(self, timeout_s: float = 120.0) -> CeleryWorker:
        # Generous: a worker boots in seconds, but on a machine whose cores are busy it can
        # take a minute before it answers a ping.
        self.log_path = _log_file(self.name)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                self.command(),
                cwd=PROJECT_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        control = _control_app(self.broker_url)
        try:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"celery worker exited with {self.proc.returncode}:\n{self.log_tail()}"
                    )
                replies = control.control.ping(destination=[self.nodename], timeout=0.5)
                if any(self.nodename in reply for reply in replies or []):
                    return self
            self.stop()
            raise RuntimeError(f"celery worker did not answer a ping:\n{self.log_tail()}")
        finally:
            control.close()

    def log_tail(self, chars: int = 4000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-chars:]

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def inspect_busy(self) -> int:
        """Tasks the worker is running, holding for later (countdown) or has reserved."""
        control = _control_app(self.broker_url)
        try:
            inspector = control.control.inspect(destination=[self.nodename], timeout=1.0)
            busy = 0
            for method in (inspector.active, inspector.reserved, inspector.scheduled):
                replies = method() or {}
                busy += sum(len(tasks) for tasks in replies.values())
            return busy
        finally:
            control.close()

    def kill(self) -> None:
        """SIGKILL: the process dies mid-task, acknowledging and putting back nothing."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM (warm shutdown), then SIGKILL after `timeout_s`."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()

    def replacement(self, **changes: Any) -> CeleryWorker:
        """A new, not yet started worker with the same settings and a fresh node name."""
        return CeleryWorker(
            env=dict(self.env),
            concurrency=changes.get("concurrency", self.concurrency),
            queues=changes.get("queues", self.queues),
            pool=changes.get("pool", self.pool),
        )

    def __enter__(self) -> CeleryWorker:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class CeleryBeat:
    """`celery -A services.notes.worker beat` (the relay and sweeper schedule)."""

    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    name: str = field(default_factory=lambda: f"rfbeat-{uuid.uuid4().hex[:8]}")

    def start(self) -> CeleryBeat:
        directory = ARTIFACTS / "workers"
        directory.mkdir(parents=True, exist_ok=True)
        log = open(_log_file(self.name), "wb")  # the child owns it
        try:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "services.notes.worker",
                    "beat",
                    "--schedule",
                    str(directory / f"{self.name}.schedule"),
                    "--loglevel",
                    "WARNING",
                ],
                cwd=PROJECT_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> CeleryBeat:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_sweeper(settings: Settings) -> dict[str, int]:
    """One sweep, in this process (what beat's `notes.sweep` does)."""
    from services.notes.context import context_for
    from services.notes.sweeper import sweep

    return sweep(context_for(settings))


def run_relay(settings: Settings) -> int:
    """One outbox relay pass, in this process (what beat's `notes.relay_outbox` does)."""
    from shared.events import relay_outbox

    assert settings.REDIS_URL is not None
    return relay_outbox(settings.REDIS_URL, min_age_s=0)


# ── State between tests ───────────────────────────────────────────────────────────────────────


def clean_state(settings: Settings, worker: CeleryWorker | None = None) -> None:
    """Empty the tables and this suite's Redis keys, keeping the broker's own keys (queue
    bindings, control exchange): a module-wide worker keeps working across tests. Waits (bounded)
    for the worker to go idle first, so no task of one test runs into the next."""
    import redis
    from sqlalchemy import text

    from shared.db import db
    from shared.models import Base

    assert settings.REDIS_URL is not None
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        if worker is not None and worker.alive:
            try:
                wait_until(
                    lambda: (
                        not any(client.llen(q) for q in BROKER_QUEUES)
                        and worker.inspect_busy() == 0
                    ),
                    timeout_s=10,
                    interval_s=0.1,
                    message="the worker to go idle",
                )
            except AssertionError:
                pass  # a long countdown task: its data is gone below, so it will find nothing
        tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        with db.engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        keys = list(client.scan_iter(match=f"{settings.REDIS_KEY_PREFIX}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


# ── Sessions written the way the pilot service writes them ────────────────────────────────────


def create_session(
    account_id: uuid.UUID,
    *,
    title: str = "Printer offline",
    problem: str | None = None,
    ticket_ref: str | None = None,
    created_by: uuid.UUID | None = None,
) -> uuid.UUID:
    from shared.db import db
    from shared.models import AISession

    with db.transaction() as session:
        row = AISession(
            account_id=account_id,
            created_by=created_by,
            title=title,
            problem=problem,
            ticket_ref=ticket_ref,
            status="active",
            state_version=0,
        )
        session.add(row)
        session.flush()
        return row.id


def add_fact(
    session_id: uuid.UUID, account_id: uuid.UUID, text: str, kind: str = "confirmed"
) -> int:
    """A fact row and its state bump in one transaction; the event is published after commit."""
    from shared.events import bump, write_transaction
    from shared.models import SessionFact

    with write_transaction() as session:
        session.add(SessionFact(session_id=session_id, account_id=account_id, kind=kind, text=text))
        return bump(session, session_id=session_id, account_id=account_id, cause="fact_created")


def chat_turn(session_id: uuid.UUID, account_id: uuid.UUID, content: str) -> int:
    """A chat turn with no new fact or fix: bumps the version, changes no note input."""
    from shared.events import bump, write_transaction
    from shared.models import ChatMessage

    with write_transaction() as session:
        session.add(
            ChatMessage(session_id=session_id, account_id=account_id, role="user", content=content)
        )
        session.add(
            ChatMessage(
                session_id=session_id,
                account_id=account_id,
                role="assistant",
                content="Noted.",
                generator="offline",
                model="offline",
            )
        )
        return bump(session, session_id=session_id, account_id=account_id, cause="chat_turn")


def resolve_session(
    session_id: uuid.UUID, account_id: uuid.UUID, *, ticket_ref: str | None = None
) -> int:
    """Mark the session resolved with its bump and the `session.resolved` event."""
    from sqlalchemy import update

    from services.notes.bundle import snapshot_resolution
    from shared.events import SESSION_RESOLVED, bump, write_transaction
    from shared.models import AISession

    with write_transaction() as session:
        version = bump(
            session,
            session_id=session_id,
            account_id=account_id,
            cause="resolved",
            extra_events=[(SESSION_RESOLVED, {"ticket_ref": ticket_ref})],
        )
        values: dict[str, Any] = {
            "status": "resolved",
            "resolved_at": datetime.now(UTC),
            "resolved_version": version,
        }
        if ticket_ref is not None:
            values["ticket_ref"] = ticket_ref
        session.execute(update(AISession).where(AISession.id == session_id).values(**values))
        # As Resolve does: the note rows carry a snapshot of exactly this version's data.
        snapshot_resolution(session, session_id)
        return version


def stub_calls_mentioning(calls: Iterable[Mapping[str, Any]], marker: str) -> int:
    """How many recorded Messages API calls carry `marker` anywhere in their messages."""
    import json

    return sum(1 for call in calls if marker in json.dumps(call.get("json", {}).get("messages")))


# ── pytest fixtures shared by the notes test modules ──────────────────────────────────────────
#
# A module imports the ones it needs (`from tests.support.workers import notes_stack, ...`) and
# may define `notes_overrides` (module scope) to change the settings of its worker and app.

import pytest  # noqa: E402


@dataclass
class NotesStack:
    """One module's stack: settings, the stub LLM, a real worker (replaceable), the notes app."""

    settings: Settings
    base_settings: Settings
    stub: Any
    worker: CeleryWorker
    app: Any
    extra_workers: list[CeleryWorker] = field(default_factory=list)

    @property
    def stub_client(self) -> Any:
        return self.stub.client

    def client(self) -> Any:
        return self.app.test_client()

    def replace_worker(self) -> CeleryWorker:
        """Start a new worker after the current one was killed (or to swap it)."""
        self.worker.stop()
        self.worker = self.worker.replacement().start()
        return self.worker

    def add_worker(self) -> CeleryWorker:
        extra = self.worker.replacement().start()
        self.extra_workers.append(extra)
        return extra


@pytest.fixture(scope="module")
def notes_overrides() -> dict[str, Any]:
    return {}


@pytest.fixture(scope="module")
def notes_stack(migrated: Settings, notes_overrides: dict[str, Any]) -> Any:
    from dataclasses import replace

    from services.notes import create_app
    from shared import runtime
    from tests.support.stub_anthropic import StubAnthropicProcess

    overrides = dict(notes_overrides)
    worker_count = int(overrides.pop("_workers", 1))
    concurrency = int(overrides.pop("_concurrency", 4))
    with StubAnthropicProcess(cwd=str(PROJECT_ROOT)) as stub:
        values: dict[str, Any] = {
            "ANTHROPIC_API_KEY": "test-key",
            "ANTHROPIC_BASE_URL": stub.url,
            "NOTES_PREWARM": False,
            "NOTES_LOCK_TTL_S": 5.0,
            "LLM_TIMEOUT_S": 20.0,
            "LLM_MAX_RETRIES": 0,
        }
        settings = replace(migrated, **{**values, **overrides})
        workers = [
            CeleryWorker(child_env(settings), concurrency=concurrency).start()
            for _ in range(worker_count)
        ]
        app = create_app(settings)
        app.config["TESTING"] = True
        stack = NotesStack(settings, migrated, stub, workers[0], app, workers[1:])
        try:
            yield stack
        finally:
            for worker in [stack.worker, *stack.extra_workers]:
                worker.stop()
            runtime.configure(migrated)


@pytest.fixture(autouse=True)
def _clean_state(request: pytest.FixtureRequest) -> Any:
    """Overrides the suite's clean-up (which empties the whole Redis db, broker bindings too)
    for modules that run a worker across tests."""
    stack: NotesStack | None = (
        request.getfixturevalue("notes_stack") if "notes_stack" in request.fixturenames else None
    )
    if stack is not None:
        stack.stub_client.reset()
    yield
    if stack is not None:
        # Whatever a test did, the product sent nothing the real API would refuse.
        refused = stack.stub_client.refusals()
        clean_state(stack.settings, stack.worker)
        assert refused == [], refused
