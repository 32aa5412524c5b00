"""Similar past sessions over an account with 2,000 resolved sessions (three facts each).

`similar_sessions` (full-text rank + trigram similarity over each session's title, problem and
facts, read from the search document stored on resolve through its GIN indexes) beside, in
the same run, the session list's own search (`list_sessions(search=...)`, ILIKE over title,
ticket ref and problem, one page) for the same account: the floor of a query over the
account's sessions. Compare the ratio, not the times.

Run: `.venv/bin/python -m pytest bench/test_bench_similar.py -p no:xdist --benchmark-only -s`.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import insert

from bench.accounts import bench_owner
from services.pilot import sessions, similar
from services.pilot.search_document import store_search_document
from shared.auth import load_principal
from shared.db import db
from shared.models import AISession, SessionFact

SESSION_COUNT = 2_000
TOPICS = [
    ("print queue stuck", "spooler running but jobs never print on PRN-SRV{n:02d}"),
    ("outlook password prompt", "credential prompt loops after a password change"),
    ("vpn drops", "FortiClient tunnel disconnects every few minutes, IKE timeout"),
    ("disk full", "C: drive has no free space on RDS{n:02d}"),
    ("account lockout", "AD account locks out, event 4740 from an old laptop"),
    ("teams cache", "Teams shows a blank window until the cache is cleared"),
    ("dns resolution", "nslookup intranet.corp times out on laptops"),
    ("bitlocker recovery", "BitLocker asks for the recovery key after a BIOS update"),
]


@pytest.fixture(scope="module")
def populated(migrated: Any) -> dict[str, Any]:
    account, user = bench_owner(migrated, "Bench similar")
    rng = random.Random(11)
    now = datetime.now(UTC)
    session_rows, fact_rows = [], []
    for i in range(SESSION_COUNT):
        title, detail = TOPICS[i % len(TOPICS)]
        sid = uuid.uuid4()
        session_rows.append(
            {
                "id": sid,
                "account_id": account,
                "title": f"{title.capitalize()} #{i}",
                "problem": detail.format(n=rng.randrange(100)),
                "status": "resolved",
                "state_version": 3,
                "resolved_at": now,
            }
        )
        for kind, text in (
            ("symptom", detail.format(n=rng.randrange(100))),
            ("observation", f"checked the {title} on host WS-{rng.randrange(10_000):04d}"),
            ("root_cause", f"root cause of the {title}"),
        ):
            fact_rows.append({"session_id": sid, "account_id": account, "kind": kind, "text": text})
    with db.transaction() as session:
        session.execute(insert(AISession), session_rows)
        session.execute(insert(SessionFact), fact_rows)
        # Resolve stores each session's search document; these rows were inserted resolved.
        store_search_document(session, [row["id"] for row in session_rows], account)
        target = AISession(account_id=account, title="Printer queue frozen", problem="jobs stuck")
        session.add(target)
        session.flush()
        target_id = target.id
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE ai_sessions")
        conn.exec_driver_sql("VACUUM ANALYZE session_facts")
    return {"user_id": uuid.UUID(user["id"]), "target_id": target_id}


@pytest.mark.benchmark(group="similar")
def test_similar_sessions(benchmark: Any, populated: Any) -> None:
    def run() -> list[similar.SimilarSession]:
        with db.session() as session:
            principal = load_principal(session, populated["user_id"])
            assert principal is not None
            return similar.similar_sessions(session, principal, populated["target_id"])

    found = benchmark(run)
    assert len(found) == 5
    assert all(item.title.startswith("Print queue stuck") for item in found)


@pytest.mark.benchmark(group="similar")
def test_baseline_session_list_search(benchmark: Any, populated: Any) -> None:
    def run() -> int:
        with db.session() as session:
            principal = load_principal(session, populated["user_id"])
            assert principal is not None
            rows, total = sessions.list_sessions(session, principal, search="print", limit=5)
            return int(total)

    assert benchmark(run) > 5
