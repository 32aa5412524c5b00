"""Redis (broker, locks, cache) killed for 30 s and brought back, through the stack with its
worker under `make run`'s supervisor: during the outage fact writes and a Resolve still succeed
(their events wait in the outbox) and previews answer 503 JSON; within 10 s of Redis answering
the stack is whole again (a new version's note generated, the note of the session resolved
during the outage delivered, the outbox empty), and nothing written is lost. Prints the
figures."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import func, select

from shared.db import db
from shared.models import OutboxEvent, ResolutionNote, SessionFact
from tests.support.redis_servers import RedisServer
from tests.support.workers import wait_until

pytestmark = pytest.mark.slow

# What the issue asks the stack to ride through, and how soon it must be whole again.
DOWN_S = 30.0
WHOLE_WITHIN_S = 10.0
RESOLUTION = {"resolution": "Restarted the print spooler", "ticket_ref": "INC-4711"}


def _session(base: str, headers: dict[str, str], title: str) -> uuid.UUID:
    created = requests.post(
        f"{base}/api/v1/ai-sessions",
        json={"title": title, "problem": "Printer offline"},
        headers=headers,
        timeout=30,
    )
    assert created.status_code == 201, created.text
    return uuid.UUID(created.json()["id"])


def _fact(base: str, headers: dict[str, str], sid: uuid.UUID, n: int) -> requests.Response:
    return requests.post(
        f"{base}/api/v1/ai-sessions/{sid}/facts",
        json={"text": f"Checked step {n} on the printer", "kind": "confirmed"},
        headers=headers,
        timeout=30,
    )


def _generates(base: str, headers: dict[str, str], sid: uuid.UUID) -> bool:
    """A worker generates again: the current version of `sid` gets its note."""
    try:
        answer = requests.get(
            f"{base}/api/v1/ai-sessions/{sid}/resolution-note/preview?wait=2",
            headers=headers,
            timeout=30,
        )
    except requests.RequestException:
        return False
    return answer.status_code == 200


def _delivered(sid: uuid.UUID) -> bool:
    with db.session() as session:
        status = session.scalar(
            select(ResolutionNote.delivery_status).where(ResolutionNote.session_id == sid)
        )
    return status == "delivered"


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


def test_redis_down_for_30_s_then_back_is_whole_again_within_10_s(
    fault_stack: Any, tmp_path: Path
) -> None:
    redis_server = RedisServer(tmp_path / "redis").start()
    try:
        with fault_stack(redis_server.url, supervise=True, log_name="redis-outage") as running:
            base, headers, receiver = running.base_url, running.owner.headers, running.receiver
            probe = _session(base, headers, "Probe")
            during = _session(base, headers, "Resolved during the outage")
            assert _fact(base, headers, probe, 0).status_code == 201
            wait_until(lambda: _generates(base, headers, probe), 120, message="a first note")

            redis_server.kill()
            down_at = time.monotonic()
            statuses: Counter[tuple[str, int]] = Counter()
            acknowledged: list[uuid.UUID] = []
            n = 0
            # The outage lasts DOWN_S; the requests made meanwhile are what a user sees.
            while time.monotonic() - down_at < DOWN_S:
                n += 1
                fact = _fact(base, headers, during if n % 2 else probe, n)
                statuses[("fact", fact.status_code)] += 1
                if fact.status_code == 201:
                    acknowledged.append(uuid.UUID(fact.json()["id"]))
                preview = requests.get(
                    f"{base}/api/v1/ai-sessions/{probe}/resolution-note/preview?wait=0",
                    headers=headers,
                    timeout=30,
                )
                statuses[("preview", preview.status_code)] += 1
                if preview.status_code == 503:
                    assert preview.headers.get("Retry-After")
                    assert preview.json()["code"] == 503
            resolve = requests.post(
                f"{base}/api/v1/ai-sessions/{during}/resolve",
                json=RESOLUTION,
                headers=headers,
                timeout=30,
            )
            assert resolve.status_code == 202, resolve.text
            redis_server.start()
            back_at = time.monotonic()

            recovered: dict[str, float] = {}
            for what, check in (
                ("new notes generated", lambda: _generates(base, headers, probe)),
                ("the note resolved during the outage delivered", lambda: _delivered(during)),
                ("the outbox empty", lambda: _backlog() == 0),
            ):
                wait_until(check, 120, interval_s=0.1, message=what)
                recovered[what] = time.monotonic() - back_at
            deliveries = receiver.deliveries_of(str(during))
    finally:
        redis_server.kill()

    print(
        f"\nredis outage: down {back_at - down_at:.1f} s; "
        f"during it {dict(sorted(statuses.items()))}"
        + "".join(
            f"\n  {what} {seconds:.2f} s after Redis was back"
            for what, seconds in recovered.items()
        )
    )
    # Writes went on; only what needs Redis answered 503 (JSON, with Retry-After).
    assert statuses[("fact", 201)] > 0
    assert {status for (what, status) in statuses if what == "fact"} == {201}
    assert {status for (what, status) in statuses if what == "preview"} <= {503}
    # Whole again within the bound, and nothing lost.
    assert max(recovered.values()) <= WHOLE_WITHIN_S, recovered
    with db.session() as session:
        stored = set(session.scalars(select(SessionFact.id)).all())
    assert set(acknowledged) <= stored
    assert len({d.webhook_id for d in deliveries}) == 1
