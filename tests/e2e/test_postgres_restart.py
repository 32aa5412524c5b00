"""The PostgreSQL server restarted under load, through the stack as `make run` starts it (the
gateway, the Celery worker and beat under `make run`'s supervisor): once cleanly (`pg_ctl stop
-m fast`, what a service restart does) and once as a crash (`-m immediate`: no checkpoint, crash
recovery at the start). The server is this test's own, on a free port (never the machine's).

During each outage every request answers 503 JSON with Retry-After (never a 500, never a hung
request); the first requests after the restart succeed; Celery tasks that met the outage retry
and then succeed; outbox events committed before the outage but not yet published are published
after it. Afterwards every resolved session's note is delivered once. Prints the figures."""

from __future__ import annotations

import re
import shlex
import socket
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import func, select

from shared import runtime
from shared.config import PROJECT_ROOT, Settings
from shared.db import db
from shared.models import AISession, OutboxEvent
from shared.supervisor import Policy, Supervisor
from tests.support.postgres_server import PostgresServer
from tests.support.receiver import WebhookReceiver
from tests.support.stack import broker_client, undelivered_notes
from tests.support.workers import child_env, free_port, wait_until

LOAD_THREADS = 4
SESSIONS = 10
# The two restarts: a service restart, then a crash.
STOP_MODES = ("fast", "immediate")
# How long the server stays down: long enough that the load meets it many times.
DOWN_S = 3.0
# After the server is back, how long a 503 is still an honest answer (a request that began
# during the outage and is answered just after it).
GRACE_S = 10.0
# Sessions resolved by a writer that committed and died before it published (per restart).
UNPUBLISHED = 3

RESOLUTION = {"resolution": "Restarted the print spooler", "ticket_ref": "INC-4711"}


@dataclass
class Record:
    lock: threading.Lock = field(default_factory=threading.Lock)
    answers: list[tuple[float, str, int]] = field(default_factory=list)
    bad_503: list[str] = field(default_factory=list)
    hung: list[str] = field(default_factory=list)
    resolved: set[uuid.UUID] = field(default_factory=set)
    windows: list[tuple[float, float]] = field(default_factory=list)

    def answer(self, what: str, response: requests.Response) -> None:
        with self.lock:
            self.answers.append((time.monotonic(), what, response.status_code))
            if response.status_code == 503 and not _is_outage_answer(response):
                self.bad_503.append(f"{what}: {response.headers} {response.text[:200]}")

    def in_window(self, at: float) -> bool:
        return any(start <= at <= end + GRACE_S for start, end in self.windows)


def _is_outage_answer(response: requests.Response) -> bool:
    """The product's outage answer: JSON naming the dependency, with Retry-After."""
    try:
        body = response.json()
    except ValueError:
        return False
    return (
        response.headers.get("Retry-After", "").isdigit()
        and body.get("code") == 503
        and "database" in str(body.get("message"))
    )


def _load(base: str, headers: dict[str, str], sids: list[uuid.UUID], rec: Record, stop: Any):
    """Fact writes and previews on every session, a resolve now and then."""
    http = requests.Session()
    http.headers.update(headers)
    n = 0
    while not stop.is_set():
        n += 1
        with rec.lock:
            open_sids = [s for s in sids if s not in rec.resolved]
        if not open_sids:
            return
        sid = open_sids[(n * 7 + threading.get_ident()) % len(open_sids)]
        try:
            if n % 40 == 0:
                answer = http.post(
                    f"{base}/api/v1/ai-sessions/{sid}/resolve", json=RESOLUTION, timeout=60
                )
                rec.answer("resolve", answer)
                if answer.status_code == 202:
                    with rec.lock:
                        rec.resolved.add(sid)
            elif n % 3 == 0:
                answer = http.get(
                    f"{base}/api/v1/ai-sessions/{sid}/resolution-note/preview?wait=2", timeout=60
                )
                rec.answer("preview", answer)
            else:
                answer = http.post(
                    f"{base}/api/v1/ai-sessions/{sid}/facts",
                    json={"text": f"Checked step {n} on the printer", "kind": "confirmed"},
                    timeout=60,
                )
                rec.answer("fact", answer)
        except requests.RequestException as exc:
            with rec.lock:
                rec.hung.append(f"{type(exc).__name__}: {exc}")
        # Paced: a steady load, not a flood that starves the rest of a shared machine.
        stop.wait(0.05)


def _resolve_without_publishing(session_id: uuid.UUID, user: Any) -> None:
    """Resolve through pilot's own Resolve, but as a writer that died between its commit and its
    publish: a plain transaction, so the session is resolved and its events wait in the outbox
    for the relay."""
    from services.pilot.sessions import resolve_session
    from shared.models import User
    from shared.principal import Principal

    with db.transaction() as session:
        writer = session.get(User, user.id)
        assert writer is not None
        resolve_session(
            session,
            Principal.from_user(writer),
            session_id,
            ticket_ref=RESOLUTION["ticket_ref"],
            resolution=RESOLUTION["resolution"],
        )


def _logged(argv: list[str], log: Path) -> list[str]:
    """`argv` with its output appended to `log` (exec: the supervisor's child is the program)."""
    return ["sh", "-c", f'exec "$@" >>{shlex.quote(str(log))} 2>&1', "sh", *argv]


def _unpublished(ids: set[uuid.UUID] | None = None) -> int:
    with db.session() as session:
        query = select(func.count()).select_from(OutboxEvent)
        query = query.where(OutboxEvent.published_at.is_(None))
        if ids is not None:
            query = query.where(OutboxEvent.session_id.in_(ids))
        return int(session.scalar(query) or 0)


# Celery's own line for a task that raised an exception listed in its autoretry_for.
RETRY_LINE = re.compile(r"Task (notes\.\w+)\[[^\]]+\] retry: Retry in [^:]+: OperationalError")


@pytest.mark.timeout(900)
def test_a_postgres_server_restart_during_load_loses_nothing(
    migrated: Settings, make_user: Any, tmp_path: Path
) -> None:
    from app.cli import migrate
    from app.devstack import stack_commands
    from services.notes.integrations import configure_ticketing
    from services.notes.worker import QUEUES

    server = PostgresServer()
    rec = Record()
    stop = threading.Event()
    logs = {name: tmp_path / f"{name}.log" for name in ("gateway", "worker", "beat")}
    supervisor: Supervisor | None = None
    supervising: threading.Thread | None = None
    loaders: list[threading.Thread] = []
    figures: list[tuple[str, float, float, float]] = []
    try:
        server.start()
        settings = replace(
            migrated,
            DATABASE_URL=server.create_database("resolutionflow"),
            GATEWAY_PORT=free_port(),
            WEB_CONCURRENCY=2,
            WORKER_CONCURRENCY=4,
            WORKER_PROCESSES=1,  # one worker log to read the retries from
            LOG_LEVEL="INFO",
            DATA_DIR=tmp_path / "data",
            JOB_LEASE_S=3,
            SWEEP_INTERVAL_S=1.0,
            OUTBOX_RELAY_INTERVAL_S=1.0,
            NOTES_LOCK_TTL_S=3.0,
            NOTES_PREWARM=False,
            WEBHOOK_RETRY_SCHEDULE_S=(0, 1, 1, 1, 1, 1, 1, 1),
            WEBHOOK_TIMEOUT_S=5.0,
        )
        # This process writes to the test's server too (users, the integration, the outbox).
        runtime.configure(settings)
        migrate(settings)
        settings.DATA_DIR.mkdir(parents=True, exist_ok=True)  # beat's schedule file
        user = make_user("owner")
        env = child_env(settings, LOG_LEVEL="INFO", GATEWAY_PORT=str(settings.GATEWAY_PORT))
        commands = stack_commands(settings, worker_name=f"rfpg-{uuid.uuid4().hex[:6]}@%h")
        supervisor = Supervisor(
            {name: _logged(argv, logs[name]) for name, argv in commands.items()},
            cwd=PROJECT_ROOT,
            env=env,
            policy=Policy(initial_backoff_s=0.5, max_backoff_s=2.0, crash_limit=50),
            log=open(tmp_path / "supervisor.log", "w"),  # closed with the test dir
        )
        supervisor.start()
        supervising = threading.Thread(target=supervisor.run, daemon=True)
        supervising.start()
        base = f"http://127.0.0.1:{settings.GATEWAY_PORT}"

        def healthy() -> bool:
            try:
                return requests.get(f"{base}/healthz", timeout=5).status_code == 200
            except requests.RequestException:
                return False

        # Generous: three Python programs booting on a machine whose cores are busy.
        wait_until(healthy, 180, interval_s=0.2, message="the gateway")
        wait_until(
            lambda: logs["worker"].exists() and b" ready." in logs["worker"].read_bytes(),
            180,
            message="the worker",
        )

        with WebhookReceiver() as receiver:
            with db.transaction() as session:
                receiver.secret = configure_ticketing(
                    session,
                    account_id=user.account_id,
                    url=receiver.url,
                    secret=None,
                    allow_private=True,
                ).secret
            http = requests.Session()
            http.headers.update(user.headers)
            sids: list[uuid.UUID] = []
            for i in range(SESSIONS + UNPUBLISHED * len(STOP_MODES)):
                created = http.post(
                    f"{base}/api/v1/ai-sessions",
                    json={"title": f"Restart {i}", "problem": "Printer offline"},
                    timeout=60,
                )
                assert created.status_code == 201, created.text
                sids.append(uuid.UUID(created.json()["id"]))
            load_sids, spare = sids[:SESSIONS], sids[SESSIONS:]
            loaders = [
                threading.Thread(target=_load, args=(base, user.headers, load_sids, rec, stop))
                for _ in range(LOAD_THREADS)
            ]
            for thread in loaders:
                thread.start()
            wait_until(lambda: len(rec.answers) >= 30, 120, message="the load to start")

            control = broker_client(settings.REDIS_URL or "", "rf-test-control")
            node = commands["worker"][commands["worker"].index("-n") + 1].replace(
                "%h", socket.gethostname()
            )
            unpublished_at_stop: set[uuid.UUID] = set()
            pending_at_stop = 0
            for mode in STOP_MODES:
                # Work queued just before the outage meets it for sure: the worker stops taking
                # new messages (it finishes what it runs) while sessions are resolved, and takes
                # them again once the server is down.
                for name in QUEUES:
                    control.control.cancel_consumer(name, destination=[node], reply=True)
                # Committed, not published: the relay must publish these after the restart.
                batch = {spare.pop() for _ in range(UNPUBLISHED)}
                for sid in batch:
                    _resolve_without_publishing(sid, user)
                unpublished_at_stop |= batch
                pending_at_stop += _unpublished(batch)
                # Resolved through the gateway: its events wait in the broker's queue.
                with rec.lock:
                    queued = next(s for s in load_sids if s not in rec.resolved)
                    rec.resolved.add(queued)
                answer = http.post(
                    f"{base}/api/v1/ai-sessions/{queued}/resolve", json=RESOLUTION, timeout=60
                )
                # 409: a load thread resolved it a moment before.
                assert answer.status_code in (202, 409), answer.text
                started = time.monotonic()
                server.stop(mode)
                for name in QUEUES:
                    control.control.add_consumer(name, destination=[node], reply=True)
                # During the outage: a 503 JSON with Retry-After, at once (never hung).
                asked_at = time.monotonic()
                during = requests.get(
                    f"{base}/api/v1/ai-sessions/{load_sids[0]}", headers=user.headers, timeout=60
                )
                took = time.monotonic() - asked_at
                assert during.status_code == 503, during.text
                assert _is_outage_answer(during), (during.headers, during.text)
                stop.wait(DOWN_S)
                server.start()
                back = time.monotonic()
                # The first requests after the restart succeed (the pools reconnect).
                first = [
                    requests.get(
                        f"{base}/api/v1/ai-sessions/{sid}", headers=user.headers, timeout=60
                    )
                    for sid in load_sids[:3]
                ]
                recovered = time.monotonic()
                assert [a.status_code for a in first] == [200, 200, 200], [
                    (a.status_code, a.text[:200]) for a in first
                ]
                rec.windows.append((started, recovered))
                figures.append((mode, back - started, recovered - back, took))

            stop.set()
            for thread in loaders:
                thread.join(timeout=120)
            # The load leaves sessions open: resolve them, so every session ends with a note.
            resolved = set(rec.resolved) | unpublished_at_stop
            for sid in load_sids:
                if sid not in resolved:
                    answer = http.post(
                        f"{base}/api/v1/ai-sessions/{sid}/resolve", json=RESOLUTION, timeout=60
                    )
                    assert answer.status_code == 202, answer.text
                    resolved.add(sid)

            def delivered() -> bool:
                return len({d.webhook_id for d in receiver.deliveries}) >= len(resolved)

            # Generous: after the outage the retries back off (up to a minute), and the sweeper
            # hands out what a worker dropped; a busy machine stretches all of it.
            try:
                wait_until(delivered, 300, interval_s=0.5, message="every note delivered")
            except AssertionError as exc:
                raise AssertionError(f"{exc}; undelivered: {undelivered_notes()}") from None
            wait_until(lambda: _unpublished() == 0, 120, interval_s=0.5, message="the outbox")
            deliveries = list(receiver.deliveries)
            with db.session() as session:
                statuses = dict(
                    session.execute(
                        select(AISession.id, AISession.status).where(AISession.id.in_(resolved))
                    ).all()
                )
    finally:
        stop.set()
        for thread in loaders:
            thread.join(timeout=60)
        if supervisor is not None:
            supervisor.request_stop()
            if supervising is not None and supervising.is_alive():
                supervising.join(timeout=90)
            else:
                supervisor.stop()
        runtime.configure(migrated)
        server.remove()

    # Every resolved session (the unpublished ones too): one note, under one webhook-id.
    per_session: dict[str, set[str | None]] = defaultdict(set)
    for d in deliveries:
        per_session[str(d.json["session_id"])].add(d.webhook_id)
    assert set(per_session) == {str(s) for s in resolved}
    assert all(len(ids) == 1 for ids in per_session.values()), per_session
    assert set(statuses.values()) == {"resolved"}

    # No request hung; no 5xx but the outage's 503, and that only around a restart.
    assert not rec.hung, rec.hung[:5]
    assert not rec.bad_503, rec.bad_503[:5]
    bad = [(w, s) for at, w, s in rec.answers if s >= 500 and (s != 503 or not rec.in_window(at))]
    assert not bad, bad
    counts = Counter(status for _, _, status in rec.answers)
    assert counts[503] >= 1  # the load met the outages

    # Tasks that met the outage raised OperationalError, were retried, and their work is done
    # (every note above was delivered).
    retried = Counter(RETRY_LINE.findall(logs["worker"].read_text(errors="replace")))
    assert sum(retried.values()) >= 1, logs["worker"].read_text(errors="replace")[-3000:]
    restarts = supervisor.status()["processes"] if supervisor is not None else {}

    print(
        "\npostgres restart figures:"
        f"\n  requests {len(rec.answers)} ({dict(sorted(counts.items()))}), "
        f"503 answers {counts.get(503, 0)}, all inside an outage (+{GRACE_S:g} s), none hung"
        + "".join(
            f"\n  {mode} stop: down {down:.2f} s (stop + {DOWN_S:g} s + start); 503 during it "
            f"in {took:.2f} s; first requests after the start answered 200 in {after:.2f} s"
            for mode, down, after, took in figures
        )
        + f"\n  tasks retried after OperationalError: {dict(retried)}"
        f"\n  outbox events committed but not yet published when the server stopped: "
        f"{pending_at_stop} (of {len(unpublished_at_stop)} sessions), all published after it"
        f"\n  resolved sessions {len(resolved)}, notes delivered {len(per_session)} "
        f"(redeliveries of one id: {len(deliveries) - len(per_session)})"
        f"\n  supervised restarts: "
        + ", ".join(f"{name} {info['restarts']}" for name, info in restarts.items())
    )
