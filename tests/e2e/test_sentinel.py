"""Redis without a single point of failure: the broker, the locks, the pub/sub wake-ups and the
cache on a Sentinel group (a primary, a replica, three sentinels, all real `redis-server`s on
loopback). The primary is SIGKILLed in the middle of a load of previews and resolves through
the gateway; the sentinels promote the replica, and every preview is answered, every resolved
session's note delivered once, nothing lost."""

from __future__ import annotations

import os
import queue
import signal
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests

from shared.config import Settings
from tests.support.redis_servers import SentinelGroup
from tests.support.stack import broker_client, undelivered_notes
from tests.support.workers import CeleryWorker, child_env, wait_until

SESSIONS = 16
THREADS = 4
GRACE_S = 10.0

# What fixed it and where the note goes: Resolve refuses a session whose note would have no
# resolution, and one with no ticket reference when the account has a ticketing integration.
RESOLUTION = {"resolution": "Restarted the print spooler", "ticket_ref": "INC-4711"}


# Deadlines sized for a loaded 2-core machine: the load threads may take minutes there.
@pytest.mark.timeout(900)
def test_a_sentinel_failover_during_load_loses_nothing(fault_stack: Any, tmp_path: Path) -> None:
    group = SentinelGroup(tmp_path / "sentinel")
    answers: list[tuple[float, str, int]] = []
    failures: list[str] = []
    previewed: dict[uuid.UUID, int] = {}
    resolved: set[uuid.UUID] = set()
    lock = threading.Lock()
    todo: queue.Queue[uuid.UUID] = queue.Queue()
    try:
        group.start()
        with fault_stack(group.url, supervise=True, log_name="sentinel-gateway") as running:
            base, user, receiver = running.base_url, running.owner, running.receiver
            http = requests.Session()
            http.headers.update(user.headers)
            for i in range(SESSIONS):
                created = http.post(
                    f"{base}/api/v1/ai-sessions",
                    json={"title": f"Sentinel {i}", "problem": "VPN drops"},
                    timeout=30,
                )
                assert created.status_code == 201, created.text
                sid = uuid.UUID(created.json()["id"])
                fact = http.post(
                    f"{base}/api/v1/ai-sessions/{sid}/facts",
                    json={"text": f"Tunnel {i} renegotiates every 60 s", "kind": "confirmed"},
                    timeout=30,
                )
                assert fact.status_code == 201, fact.text
                todo.put(sid)

            def until_answered(what: str, call: Any, done: int) -> Any:
                """The client's side: retry a 202 or a 503 (briefly), give up after 90 s."""
                deadline = time.monotonic() + 90
                while time.monotonic() < deadline:
                    try:
                        answer = call()
                    except requests.RequestException as exc:
                        with lock:
                            failures.append(f"{what}: {type(exc).__name__}")
                        return None
                    with lock:
                        answers.append((time.monotonic(), what, answer.status_code))
                    if answer.status_code == done:
                        return answer
                    if answer.status_code not in (202, 503):
                        return answer
                    threading.Event().wait(0.3)
                return None

            def work() -> None:
                client = requests.Session()
                client.headers.update(user.headers)
                while True:
                    try:
                        sid = todo.get_nowait()
                    except queue.Empty:
                        return
                    got = until_answered(
                        "preview",
                        lambda sid=sid: client.get(
                            f"{base}/api/v1/ai-sessions/{sid}/resolution-note/preview?wait=3",
                            timeout=30,
                        ),
                        200,
                    )
                    if got is not None and got.status_code == 200:
                        with lock:
                            previewed[sid] = int(got.json()["state_version"])
                    done = until_answered(
                        "resolve",
                        lambda sid=sid: client.post(
                            f"{base}/api/v1/ai-sessions/{sid}/resolve", json=RESOLUTION, timeout=30
                        ),
                        202,
                    )
                    if done is not None and done.status_code == 202:
                        with lock:
                            resolved.add(sid)

            threads = [threading.Thread(target=work) for _ in range(THREADS)]
            for thread in threads:
                thread.start()
            # In the middle of the load: the primary dies without a word.
            wait_until(lambda: len(resolved) >= SESSIONS // 4, 120, message="a quarter done")
            old_primary = group.primary.port
            killed_at = time.monotonic()
            group.primary.kill()
            wait_until(
                lambda: group.master_port() not in (None, old_primary),
                60,
                interval_s=0.1,
                message="the sentinels to promote the replica",
            )
            promoted_at = time.monotonic()
            for thread in threads:
                thread.join(timeout=180)
            assert group.master_port() == group.replica.port

            def delivered() -> bool:
                return len({d.webhook_id for d in receiver.deliveries}) >= SESSIONS

            try:
                wait_until(delivered, 300, interval_s=0.5, message="every note delivered")
            except AssertionError as exc:
                raise AssertionError(f"{exc}; undelivered: {undelivered_notes()}") from None
            deliveries = list(receiver.deliveries)
            supervisor = running.stack.supervisor
            assert supervisor is not None
            restarts = {n: p["restarts"] for n, p in supervisor.status()["processes"].items()}
    finally:
        group.stop()

    assert not failures, failures
    # Every preview answered with its note, every resolve accepted.
    assert len(previewed) == SESSIONS and len(resolved) == SESSIONS
    # One note per session, under one webhook-id.
    per_session: dict[str, set[str | None]] = defaultdict(set)
    for d in deliveries:
        per_session[str(d.json["session_id"])].add(d.webhook_id)
    assert set(per_session) == {str(s) for s in resolved}
    assert all(len(ids) == 1 for ids in per_session.values()), per_session
    # No 5xx but a 503, and that only while the group failed over.
    statuses = Counter(status for _, _, status in answers)
    bad = [
        (what, status)
        for at, what, status in answers
        if status >= 500 and (status != 503 or not killed_at <= at <= promoted_at + GRACE_S)
    ]
    assert not bad, bad
    print(
        "\nsentinel failover figures:"
        f"\n  requests {len(answers)} ({dict(sorted(statuses.items()))})"
        f"\n  primary killed -> replica promoted in {promoted_at - killed_at:.1f} s"
        f"\n  previews answered {len(previewed)}/{SESSIONS}, notes delivered "
        f"{len(per_session)}/{SESSIONS}, "
        f"redeliveries of one id {len(deliveries) - len(per_session)}"
        f"\n  supervised restarts: {restarts}"
    )


@pytest.mark.timeout(600)
def test_a_worker_without_cpu_across_the_failover_consumes_again(
    migrated: Settings, tmp_path: Path
) -> None:
    """What a busy machine does to a worker: it gets no CPU from just before the primary dies
    until after the replica is promoted (SIGSTOP, then SIGCONT), so it notices the lost
    connections only once the new primary answers. It must consume from the new primary; a
    worker that reconnected its remote-control connection there behind kombu's back waited on
    it for ever, alive and consuming nothing."""
    from shared.tasks import TASK_RELAY_OUTBOX

    group = SentinelGroup(tmp_path / "sentinel")
    env = child_env(replace(migrated, REDIS_URL=group.url), LOG_LEVEL="INFO")
    try:
        group.start()
        with CeleryWorker(env, concurrency=2) as worker:
            sender = broker_client(group.url, "rf-test-sender")

            def ran(task_id: str) -> bool:
                return f"{TASK_RELAY_OUTBOX}[{task_id}] succeeded" in worker.log_tail(200_000)

            before = sender.send_task(TASK_RELAY_OUTBOX, queue="events").id
            wait_until(lambda: ran(before), 120, message="a task before the failover")
            assert worker.proc is not None
            os.kill(worker.proc.pid, signal.SIGSTOP)
            try:
                old_primary = group.primary.port
                group.primary.kill()
                wait_until(
                    lambda: group.master_port() not in (None, old_primary),
                    60,
                    interval_s=0.1,
                    message="the sentinels to promote the replica",
                )
            finally:
                os.kill(worker.proc.pid, signal.SIGCONT)
            after = sender.send_task(TASK_RELAY_OUTBOX, queue="events").id
            # Generous: the consumer is rebuilt after kombu's reconnect backoff.
            wait_until(lambda: ran(after), 120, interval_s=0.5, message="a task after it")
            assert worker.alive
    finally:
        group.stop()
