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
def running_gateway(
    env: Mapping[str, str], *, log_name: str = "gunicorn", logs: list[Path] | None = None
) -> Iterator[str]:
    """The gateway under gunicorn with two processes, as users run it, on a free loopback port;
    yields its base URL once `/healthz` answers 200 and stops it afterwards."""
    # The deploy's settings, as `make run` uses them (JSON logs, no control socket).
    with running_gunicorn(
        env,
        "app.gateway:create_app()",
        log_name=log_name,
        config=str(GUNICORN_CONF),
        logs=logs,
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
    logs: list[Path] | None = None,
) -> Iterator[str]:
    """`app` (a gunicorn app spec) under gunicorn on a free loopback port; yields its base URL
    once `ready_path` answers 200 and stops it afterwards. With `config` (a gunicorn config
    file, e.g. deploy/gunicorn.conf.py) the options given here still win over it. Its log's
    path is appended to `logs` when given."""
    import requests

    port = free_port()
    config_args = ["-c", config] if config else []
    # The config file derives per-port state (its metrics directory) from PORT.
    server_env = {**env, "PORT": str(port)} if config else dict(env)
    log_path = _log_file(f"{log_name}-{port}")
    if logs is not None:
        logs.append(log_path)
    with open(log_path, "wb") as log:
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
        # Generous: two processes importing every service take a minute or more on a machine
        # whose cores are busy.
        wait_until(up, 180, interval_s=0.1, message="gunicorn")
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
        "WORKER_BEAT_S": str(settings.WORKER_BEAT_S),
        "WORKER_DEAD_AFTER_S": str(settings.WORKER_DEAD_AFTER_S),
        "DB_POOL_SIZE": str(settings.DB_POOL_SIZE),
    }
    if settings.DB_POOL_OVERFLOW is not None:
        env["DB_POOL_OVERFLOW"] = str(settings.DB_POOL_OVERFLOW)
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
    log_path: Path | None = None

    def start(self) -> CeleryBeat:
        directory = ARTIFACTS / "workers"
        self.log_path = _log_file(self.name)
        log = open(self.log_path, "wb")  # the child owns it
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


def store_note(
    cache: Any, session_id: uuid.UUID, version: int, markdown: str, **fields: Any
) -> dict[str, Any]:
    """A ready resolution note for `version`, stored with the cache's own `put` as a worker
    stores it (services.notes.cache.NoteCache); `fields` add to or replace the payload's."""
    from datetime import UTC, datetime

    payload: dict[str, Any] = {
        "kind": "resolution_note",
        "markdown": markdown,
        "generator": "offline",
        "model": "offline",
        "generated_at": datetime.now(UTC).isoformat(),
        "state_version": version,
        "usage": {},
        "fingerprint": uuid.uuid4().hex,
        **fields,
    }
    cache.put(payload["kind"], str(session_id), version, payload)
    return payload


def resolve_session(
    session_id: uuid.UUID, account_id: uuid.UUID, *, ticket_ref: str | None = None
) -> int:
    """Resolve through pilot's own Resolve (forced: the note may have no resolution yet), as
    one of the account's writers: its bump, note rows with their snapshot and the
    `session.resolved` event, published after the commit."""
    from sqlalchemy import select

    from services.pilot.sessions import resolve_session as pilot_resolve
    from shared.events import write_transaction
    from shared.models import User
    from shared.principal import Principal

    with write_transaction() as session:
        writer = session.scalars(
            select(User)
            .where(User.account_id == account_id, User.account_role.in_(("owner", "engineer")))
            .order_by(User.created_at)
            .limit(1)
        ).one()
        resolved = pilot_resolve(
            session, Principal.from_user(writer), session_id, ticket_ref=ticket_ref, force=True
        )
        return resolved.state_version


def outbox_payload(session_id: uuid.UUID, topic: str) -> dict[str, Any]:
    """The latest payload the producer wrote to the outbox for the session and topic."""
    from sqlalchemy import select

    from shared.db import db
    from shared.models import OutboxEvent

    with db.session() as session:
        payload = session.scalars(
            select(OutboxEvent.payload)
            .where(OutboxEvent.session_id == session_id, OutboxEvent.topic == topic)
            .order_by(OutboxEvent.seq.desc())
            .limit(1)
        ).one()
        return dict(payload)


def stub_calls_mentioning(calls: Iterable[Mapping[str, Any]], marker: str) -> int:
    """How many recorded Messages API calls carry `marker` anywhere in their messages."""
    import json

    return sum(1 for call in calls if marker in json.dumps(call.get("json", {}).get("messages")))
