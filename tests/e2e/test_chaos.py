"""Chaos through the gateway with real workers: a steady load of fact writes, previews and
resolves on many sessions while, in turn, the broker Redis is killed and restarted, every
PostgreSQL backend of the database is terminated, and a worker is SIGKILLed while it holds a
job (3 rounds each).

The Redis is this test's own `redis-server` on a free port (never the machine's); the stack is
the fault tests' own (tests/e2e/conftest.py), with the production lease and lock, its two worker
processes under `make run`'s supervisor, which restarts them. The job the killed worker held (a
delivery hanging at the receiver) must be delivered within RECOVERY_TARGET_S, through the other
process's liveness check. Afterwards: every resolved session's note is delivered once (one
webhook-id, one note at the receiver), state_version is contiguous per session, no 5xx but a 503
inside a fault window, every write acknowledged with a 2xx is in the database, and the outbox is
empty. Prints the figures."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg2
import requests
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from shared.config import Settings
from shared.db import db
from shared.models import AISession, OutboxEvent, ResolutionNote, SessionFact, WorkerProcess
from tests.support.redis_servers import RedisServer
from tests.support.workers import wait_until

ROUNDS = 3
LOAD_THREADS = 4
# How long a fault lasts (the broker down, the worker gone before its restart).
REDIS_DOWN_S = 2.0
# After a fault ends, how long a 503 is still the honest answer (pools reconnecting).
GRACE_S = 10.0
# A SIGKILLed worker's job is delivered within this (the liveness bound, 7 s, plus the work).
RECOVERY_TARGET_S = 10.0


@dataclass
class Record:
    lock: threading.Lock = field(default_factory=threading.Lock)
    answers: list[tuple[float, str, int]] = field(default_factory=list)
    hung: list[str] = field(default_factory=list)
    facts: dict[uuid.UUID, list[uuid.UUID]] = field(default_factory=lambda: defaultdict(list))
    resolved: set[uuid.UUID] = field(default_factory=set)
    windows: list[tuple[str, float, float]] = field(default_factory=list)
    recovery: list[tuple[str, float, float]] = field(default_factory=list)

    def answer(self, what: str, status: int) -> None:
        with self.lock:
            self.answers.append((time.monotonic(), what, status))

    def in_window(self, at: float) -> bool:
        return any(start <= at <= end + GRACE_S for _, start, end in self.windows)


# What fixed it and where the note goes: Resolve refuses a session whose note would have no
# resolution, and one with no ticket reference when the account has a ticketing integration.
RESOLUTION = {"resolution": "Restarted the print spooler", "ticket_ref": "INC-4711"}


def _load(base: str, headers: dict[str, str], sids: list[uuid.UUID], rec: Record, stop: Any):
    """Writes facts, previews and (now and then) resolves; opens a new session when few are
    left open, so the load lasts as long as the faults do."""
    http = requests.Session()
    http.headers.update(headers)
    n = 0
    while not stop.is_set():
        n += 1
        try:
            with rec.lock:
                open_sids = [s for s in sids if s not in rec.resolved]
            if len(open_sids) < 4:
                answer = http.post(
                    f"{base}/api/v1/ai-sessions",
                    json={"title": f"Chaos {n}", "problem": "Printer offline"},
                    timeout=30,
                )
                rec.answer("create", answer.status_code)
                if answer.status_code == 201:
                    with rec.lock:
                        sids.append(uuid.UUID(answer.json()["id"]))
                continue
            sid = open_sids[(n * 7 + threading.get_ident()) % len(open_sids)]
            if n % 15 == 0:
                answer = http.post(
                    f"{base}/api/v1/ai-sessions/{sid}/resolve", json=RESOLUTION, timeout=30
                )
                rec.answer("resolve", answer.status_code)
                if answer.status_code == 202:
                    with rec.lock:
                        rec.resolved.add(sid)
            elif n % 3 == 0:
                answer = http.get(
                    f"{base}/api/v1/ai-sessions/{sid}/resolution-note/preview?wait=2", timeout=30
                )
                rec.answer("preview", answer.status_code)
            else:
                answer = http.post(
                    f"{base}/api/v1/ai-sessions/{sid}/facts",
                    json={"text": f"Checked step {n} on the printer", "kind": "confirmed"},
                    timeout=30,
                )
                rec.answer("fact", answer.status_code)
                if answer.status_code == 201:
                    with rec.lock:
                        rec.facts[sid].append(uuid.UUID(answer.json()["id"]))
        except requests.RequestException as exc:
            with rec.lock:
                rec.hung.append(f"{type(exc).__name__}: {exc}")


def _answers(base: str, headers: dict[str, str], sid: uuid.UUID) -> bool:
    """The stack answers a request that needs PostgreSQL, Redis and the worker's queue."""
    try:
        answer = requests.get(
            f"{base}/api/v1/ai-sessions/{sid}/resolution-note/preview?wait=0",
            headers=headers,
            timeout=10,
        )
    except requests.RequestException:
        return False
    return answer.status_code in (200, 202)


def _generates(base: str, headers: dict[str, str], sid: uuid.UUID) -> bool:
    """A worker generates again: a new version of the probe session gets its note."""
    try:
        fact = requests.post(
            f"{base}/api/v1/ai-sessions/{sid}/facts",
            json={"text": "Probe: the spooler restarted", "kind": "confirmed"},
            headers=headers,
            timeout=10,
        )
        if fact.status_code != 201:
            return False
        answer = requests.get(
            f"{base}/api/v1/ai-sessions/{sid}/resolution-note/preview?wait=5",
            headers=headers,
            timeout=30,
        )
    except requests.RequestException:
        return False
    return answer.status_code == 200


def _victim(base: str, headers: dict[str, str], receiver: Any, n: int) -> uuid.UUID:
    """A session resolved now whose note's delivery hangs at the receiver: the worker holds
    that job (its lease and the HTTP call) until it is killed."""
    created = requests.post(
        f"{base}/api/v1/ai-sessions",
        json={"title": f"Victim {n}", "problem": "Printer offline"},
        headers=headers,
        timeout=30,
    )
    assert created.status_code == 201, created.text
    sid = uuid.UUID(created.json()["id"])
    receiver.hang_first_delivery_of(str(sid))
    resolved = requests.post(
        f"{base}/api/v1/ai-sessions/{sid}/resolve", json=RESOLUTION, headers=headers, timeout=30
    )
    assert resolved.status_code == 202, resolved.text
    wait_until(
        lambda: receiver.deliveries_of(str(sid)), 120, message="the victim's delivery in flight"
    )
    return sid


def _all_beating(stack: Any) -> bool:
    """Every supervised worker process runs and has beaten in the last WORKER_BEAT_S * 2 (it
    booted: its worker_init started the beat)."""
    pids = {stack.worker_pid(program) for program in stack.worker_programs()}
    if None in pids:
        return False
    with db.session() as session:
        beating = set(
            session.scalars(
                select(WorkerProcess.pid).where(
                    WorkerProcess.beat_at
                    > func.now() - timedelta(seconds=2 * stack.settings.WORKER_BEAT_S)
                )
            ).all()
        )
    return pids <= beating


def _holder_of(stack: Any, sid: uuid.UUID) -> tuple[str, int]:
    """The supervised worker program (and its pid) whose process holds the session's note."""
    from services.notes.liveness import owner_process

    with db.session() as session:
        owner = session.scalar(
            select(ResolutionNote.lease_owner).where(ResolutionNote.session_id == sid)
        )
        pid = session.scalar(
            select(WorkerProcess.pid).where(WorkerProcess.id == owner_process(owner))
        )
    for program in stack.worker_programs():
        if pid is not None and stack.worker_pid(program) == pid:
            return program, int(pid)
    raise AssertionError(f"no supervised worker holds {sid}'s note (owner {owner}, pid {pid})")


def _delivered(sid: uuid.UUID) -> bool:
    with db.session() as session:
        status = session.scalar(
            select(ResolutionNote.delivery_status).where(ResolutionNote.session_id == sid)
        )
    return status == "delivered"


def _terminate_backends(settings: Settings) -> int:
    url = make_url(settings.DATABASE_URL or "")
    conn = psycopg2.connect(
        host=url.host, port=url.port, user=url.username, password=url.password, dbname="postgres"
    )
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (url.database,),
            )
            return int(cur.fetchone()[0])
    finally:
        conn.close()


def test_the_stack_rides_through_redis_postgres_and_worker_faults(
    fault_stack: Any, tmp_path: Path
) -> None:
    redis_server = RedisServer(tmp_path / "redis").start()
    rec = Record()
    stop = threading.Event()
    try:
        # The production lease and lock: a killed worker's job must come back through the
        # liveness check (services.notes.liveness), not through a short lease's expiry.
        with fault_stack(
            redis_server.url,
            supervise=True,
            log_name="chaos-gateway",
            # Two worker processes, as any deployment that must ride through a dead one: the
            # survivor hands on the killed one's job while its restart is still booting.
            workers=2,
            JOB_LEASE_S=Settings.JOB_LEASE_S,
            NOTES_LOCK_TTL_S=Settings.NOTES_LOCK_TTL_S,
        ) as running:
            base, user, receiver = running.base_url, running.owner, running.receiver
            settings = running.stack.settings
            sids = []
            for i in range(12):
                created = requests.post(
                    f"{base}/api/v1/ai-sessions",
                    json={"title": f"Chaos {i}", "problem": "Printer offline"},
                    headers=user.headers,
                    timeout=30,
                )
                assert created.status_code == 201, created.text
                sids.append(uuid.UUID(created.json()["id"]))
            probe = sids[0]
            # Shared by the load threads, which add sessions to it.
            load_sids = sids[1:]
            loaders = [
                threading.Thread(target=_load, args=(base, user.headers, load_sids, rec, stop))
                for _ in range(LOAD_THREADS)
            ]
            for thread in loaders:
                thread.start()
            wait_until(lambda: len(rec.answers) >= 20, 60, message="the load to start")

            def fault(name: str, inject: Any, heal: Any, *checks: tuple[str, Any]) -> None:
                """Inject, heal, then time each check from the heal (one figure each)."""
                start = time.monotonic()
                inject()
                heal()
                healed = time.monotonic()
                for what, check in checks or (("", lambda: _answers(base, user.headers, probe)),):
                    wait_until(
                        check,
                        # A deadline, not a figure: the figures are printed below.
                        180,
                        interval_s=0.1,
                        message=f"recovery after {name}{what}",
                    )
                    end = time.monotonic()
                    rec.recovery.append((f"{name}{what}", healed - start, end - healed))
                rec.windows.append((name, start, time.monotonic()))

            worker_pid = running.stack.worker_pid
            victims: list[uuid.UUID] = []
            first_answers: list[bool | None] = []
            for round_number in range(ROUNDS):
                fault(
                    "redis killed",
                    redis_server.kill,
                    lambda: (stop.wait(REDIS_DOWN_S), redis_server.start()),
                )
                # The next request after the backends are gone succeeds (the pools replace the
                # dead connections): the probe's first answer is counted.
                first_answers.append(None)

                def next_request_answers() -> bool:
                    answered = _answers(base, user.headers, probe)
                    if first_answers[-1] is None:
                        first_answers[-1] = answered
                    return answered

                fault(
                    "postgres backends terminated",
                    lambda: _terminate_backends(settings),
                    lambda: None,
                    ("", next_request_answers),
                )
                # The broker fault may have left a worker restarting (kombu's crash on the
                # reconnect): wait until both are up and beating, then kill the one that holds
                # a job (a delivery hanging at the receiver).
                wait_until(
                    lambda: _all_beating(running.stack),
                    120,
                    interval_s=0.2,
                    message="every worker process up and beating",
                )
                victim = _victim(base, user.headers, receiver, round_number)
                victims.append(victim)
                program, killed = _holder_of(running.stack, victim)
                fault(
                    "worker SIGKILLed",
                    lambda pid=killed: os.kill(pid, signal.SIGKILL),
                    lambda: None,
                    (
                        " (a new worker process)",
                        lambda pid=killed, p=program: worker_pid(p) not in (None, pid),
                    ),
                    (" (the job it held delivered)", lambda sid=victim: _delivered(sid)),
                    (
                        " (new notes generated)",
                        lambda: _generates(base, user.headers, probe),
                    ),
                )
            stop.set()
            for thread in loaders:
                thread.join(timeout=60)
            resolved = set(rec.resolved) | set(victims)
            # Resolve whatever the load left open, so every session ends with a note.
            for sid in list(load_sids):
                if sid not in resolved:
                    answer = requests.post(
                        f"{base}/api/v1/ai-sessions/{sid}/resolve",
                        json=RESOLUTION,
                        headers=user.headers,
                        timeout=30,
                    )
                    assert answer.status_code == 202, answer.text
                    resolved.add(sid)

            def delivered() -> bool:
                ids = {d.webhook_id for d in receiver.deliveries}
                return len(ids) >= len(resolved)

            # Generous: the sweeper hands out what each fault dropped, one lease at a time.
            wait_until(delivered, 300, interval_s=0.5, message="every note delivered")
            wait_until(lambda: _backlog() == 0, 120, interval_s=0.5, message="the outbox drained")
            deliveries = list(receiver.deliveries)
    finally:
        stop.set()
        redis_server.kill()

    # Every resolved session: one note, one webhook-id, delivered (retried with the same id).
    per_session: dict[str, set[str | None]] = defaultdict(set)
    for d in deliveries:
        per_session[str(d.json["session_id"])].add(d.webhook_id)
    assert set(per_session) == {str(s) for s in resolved}
    assert all(len(ids) == 1 for ids in per_session.values()), per_session
    duplicates = len(deliveries) - len(per_session)

    # No 5xx but a 503, and a 503 only inside a fault window; no request hung or was dropped.
    statuses = Counter(status for _, _, status in rec.answers)
    bad = [(w, s) for at, w, s in rec.answers if s >= 500 and (s != 503 or not rec.in_window(at))]
    assert not bad, bad
    assert not rec.hung, rec.hung[:5]

    with db.session() as session:
        # Every write acknowledged with a 2xx is in the database.
        acknowledged = {f for facts in rec.facts.values() for f in facts}
        stored = set(session.scalars(select(SessionFact.id)).all())
        assert acknowledged <= stored
        # state_version contiguous per session: one state event per version, 1..N.
        for sid in load_sids:
            version = session.scalar(select(AISession.state_version).where(AISession.id == sid))
            versions = sorted(
                int(p["state_version"])
                for p in session.scalars(
                    select(OutboxEvent.payload).where(
                        OutboxEvent.session_id == sid,
                        OutboxEvent.topic == "session.state_changed",
                    )
                ).all()
            )
            assert versions == list(range(1, int(version or 0) + 1)), (sid, versions)
            status = session.scalar(select(AISession.status).where(AISession.id == sid))
            assert status == "resolved"

    recovery: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for name, outage, seconds in rec.recovery:
        recovery[name].append((outage, seconds))
    print(
        "\nchaos figures:"
        f"\n  requests {len(rec.answers)} ({dict(sorted(statuses.items()))})"
        f"\n  faults {len(rec.windows)}: {ROUNDS} rounds of redis kill, backend termination, "
        "worker SIGKILL"
        f"\n  503 answers {statuses.get(503, 0)}, all inside fault windows"
        f"\n  acknowledged facts {len(acknowledged)}, all stored; resolved sessions "
        f"{len(resolved)}, notes delivered {len(per_session)} (redeliveries of one id: "
        f"{duplicates})"
        + "".join(
            f"\n  {name}: down for max {max(o for o, _ in v):.2f} s, then whole again "
            f"after max {max(r for _, r in v):.2f} s (mean {sum(r for _, r in v) / len(v):.2f} s)"
            for name, v in recovery.items()
        )
    )
    # Every backend terminated: the very next request of the probe succeeded, each round.
    assert first_answers == [True] * ROUNDS, first_answers
    # A killed worker's job came back through the liveness check, within its bound.
    handed_on = [r for name, _, r in rec.recovery if name.endswith("(the job it held delivered)")]
    assert len(handed_on) == ROUNDS
    assert max(handed_on) <= RECOVERY_TARGET_S, handed_on


def _backlog() -> int:
    with db.session() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(OutboxEvent)
                .where(OutboxEvent.published_at.is_(None))
            )
            or 0
        )
