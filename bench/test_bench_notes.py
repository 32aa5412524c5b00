"""Resolution notes under load.

1. Notes per second against worker concurrency (1..64 slots) with a stub LLM that takes 1 s
   per call: the pool as deployed (threads, at most 16 per process, so 32 and 64 slots run in
   2 and 4 processes) should reach at least 0.8 x concurrency notes/s (ideal: concurrency).
   Beside it, the worker processes' CPU per note (user + system, from the kernel's account
   of those processes): the figure that does not drop when other work takes the machine.
2. LLM calls per version when 50 previews of a fresh version arrive at once.

The cached preview against GET /healthz is measured with wrk in bench/test_bench_gateway.py.

Run: `make bench` (or `.venv/bin/python -m pytest bench/test_bench_notes.py -p no:xdist
--benchmark-only -s`); the figures are printed and kept in each benchmark's extra_info.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import psutil
import pytest
import requests

from shared.config import PROJECT_ROOT, Settings
from tests.support.stub_anthropic import StubAnthropicProcess
from tests.support.workers import (
    CeleryWorker,
    add_fact,
    child_env,
    clean_state,
    create_session,
    running_gateway,
    wait_until,
)

# Enough notes per slot that the figure is the worker's steady throughput, not the ramp-up and
# drain of a few synchronised waves (each slot's CPU work spreads over the others' LLM waits).
NOTES_PER_SLOT = 8
LLM_LATENCY_S = 1.0
# NOTES_BENCH_CONCURRENCY=16,64 measures only those (e.g. while profiling the worker).
CONCURRENCY = tuple(
    int(c) for c in os.environ.get("NOTES_BENCH_CONCURRENCY", "1,2,4,8,16,32,64").split(",")
)
TARGET_RATIO = 0.8
# The pool under test: NOTES_BENCH_POOL (threads, gevent) in worker processes that share the
# slots: by default as deployed (deploy/README.md), processes of at most 16 threads each
# (NOTES_BENCH_THREADS); NOTES_BENCH_PROCESSES=N fixes the number of processes instead.
WORKER_POOL = os.environ.get("NOTES_BENCH_POOL", "threads")
THREADS_PER_PROCESS = int(os.environ.get("NOTES_BENCH_THREADS", "16"))
FIXED_PROCESSES = (
    int(os.environ["NOTES_BENCH_PROCESSES"]) if os.environ.get("NOTES_BENCH_PROCESSES") else None
)


def _processes(concurrency: int) -> int:
    if FIXED_PROCESSES is not None:
        return min(FIXED_PROCESSES, concurrency)
    return -(-concurrency // THREADS_PER_PROCESS)


def _drain_events(settings: Settings, workers: list[CeleryWorker]) -> None:
    import redis

    assert settings.REDIS_URL is not None
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        wait_until(
            lambda: client.llen("events") == 0 and all(w.inspect_busy() == 0 for w in workers),
            timeout_s=120,
            interval_s=0.2,
            message="the state_changed events to be consumed",
        )
    finally:
        client.close()


def _cpu_s(workers: list[CeleryWorker]) -> float:
    """User + system CPU seconds the worker processes (and any pool children) have used."""
    total = 0.0
    for worker in workers:
        assert worker.proc is not None
        times = psutil.Process(worker.proc.pid).cpu_times()
        total += times.user + times.system + times.children_user + times.children_system
    return total


def _split(slots: int, processes: int) -> list[int]:
    return [slots // processes + (1 if i < slots % processes else 0) for i in range(processes)]


@pytest.fixture(scope="module")
def stub() -> Iterator[StubAnthropicProcess]:
    with StubAnthropicProcess(cwd=str(PROJECT_ROOT)) as process:
        yield process


@pytest.fixture(scope="module")
def bench_settings(migrated: Settings, stub: StubAnthropicProcess) -> Iterator[Settings]:
    from shared import runtime

    settings = replace(
        migrated,
        ANTHROPIC_API_KEY="bench-key",
        ANTHROPIC_BASE_URL=stub.url,
        LLM_MAX_RETRIES=0,
        LLM_TIMEOUT_S=30.0,
        NOTES_PREWARM=False,
        NOTES_LOCK_TTL_S=30.0,
    )
    runtime.configure(settings)
    yield settings
    runtime.configure(migrated)


@pytest.mark.parametrize("concurrency", CONCURRENCY)
def test_notes_per_second_by_worker_concurrency(
    benchmark: Any,
    bench_settings: Settings,
    stub: StubAnthropicProcess,
    make_account: Any,
    concurrency: int,
) -> None:
    from services.notes.context import context_for
    from shared.tasks import TASK_GENERATE

    assert stub.client is not None
    ctx = context_for(bench_settings)
    account = make_account()
    total = concurrency * NOTES_PER_SLOT
    jobs = []
    for i in range(total):
        sid = create_session(account, problem=f"bench {concurrency}/{i}")
        jobs.append((sid, add_fact(sid, account, f"Confirmed: fact {uuid.uuid4().hex}")))
    stub.client.latency(LLM_LATENCY_S)
    # processes x threads: the slots split over several worker processes (as replicas would).
    processes = _processes(concurrency)
    workers = [
        CeleryWorker(child_env(bench_settings), concurrency=share, pool=WORKER_POOL).start()
        for share in _split(concurrency, processes)
    ]
    try:
        # The facts above published one state_changed event each; let the workers consume
        # them first, so that the figure is the notes' throughput alone (production runs the
        # events queue on workers of its own).
        _drain_events(bench_settings, workers)

        cpu: dict[str, float] = {}

        def run() -> float:
            cpu["before"] = _cpu_s(workers)
            started = time.perf_counter()
            for sid, version in jobs:
                lock = ctx.cache.acquire("resolution_note", str(sid), version, 60)
                assert lock is not None
                ctx.enqueue(TASK_GENERATE, "resolution_note", str(sid), version, lock.token)
            pending = set(jobs)

            def all_done() -> bool:
                # Only the notes still missing are checked, so the bench process itself stays
                # light on this two-core machine.
                for job in list(pending):
                    if ctx.cache.get("resolution_note", str(job[0]), job[1]) is None:
                        return False
                    pending.discard(job)
                return True

            # A liveness bound, not a timing assertion: a busy machine only lowers the ratio.
            wait_until(
                all_done,
                timeout_s=NOTES_PER_SLOT * LLM_LATENCY_S * 60 + 120,
                interval_s=0.05,
                message="every note",
            )
            elapsed = time.perf_counter() - started
            cpu["after"] = _cpu_s(workers)
            return elapsed

        wall = benchmark.pedantic(run, rounds=1, iterations=1)
    finally:
        stub.client.latency(0.0)
        for worker in workers:
            worker.stop()
        clean_state(bench_settings)
    rate = total / wall
    # CPU per note: what a note costs the worker, whatever else the machine runs (the wall
    # figure drops with the CPU other work takes; this one does not).
    cpu_ms = (cpu["after"] - cpu["before"]) * 1000 / total
    ratio = rate / (concurrency / LLM_LATENCY_S)
    benchmark.extra_info.update(
        {
            "concurrency": concurrency,
            "pool": f"{processes} x {WORKER_POOL}",
            "notes": total,
            "notes_per_s": round(rate, 2),
            "ratio_to_ideal": round(ratio, 3),
            "worker_cpu_ms_per_note": round(cpu_ms, 2),
            "load_average": os.getloadavg()[0],
        }
    )
    benchmark.extra_info["target_ratio"] = TARGET_RATIO
    benchmark.extra_info["meets_target"] = ratio >= TARGET_RATIO
    # Reported, not asserted: on a busy machine the figure drops with the CPU left to us.
    print(
        f"\nconcurrency {concurrency:>2} ({processes} x {WORKER_POOL}): {total} notes in "
        f"{wall:.2f}s = {rate:.1f} notes/s ({ratio:.2f} x ideal; target {TARGET_RATIO}), "
        f"worker CPU {cpu_ms:.1f} ms/note, load {os.getloadavg()[0]:.1f}"
    )


# ── Through the gateway ───────────────────────────────────────────────────────────────────────


@pytest.fixture(scope="module")
def gateway(bench_settings: Settings) -> Iterator[str]:
    env = child_env(bench_settings, LOG_LEVEL="WARNING")
    worker = CeleryWorker(env, concurrency=8).start()
    try:
        with running_gateway(env, log_name="bench-gunicorn") as base:
            yield base
    finally:
        worker.stop()


def test_llm_calls_per_version_under_concurrency(
    benchmark: Any,
    gateway: str,
    bench_settings: Settings,
    stub: StubAnthropicProcess,
    make_user: Any,
) -> None:
    assert stub.client is not None
    user = make_user("engineer")
    sid = create_session(user.account_id, problem="calls per version")
    versions = 5
    stub.client.reset()
    stub.client.latency(0.3)

    def burst() -> None:
        add_fact(sid, user.account_id, f"Confirmed: {uuid.uuid4().hex}")
        url = f"{gateway}/api/v1/ai-sessions/{sid}/resolution-note/preview?wait=30"
        with ThreadPoolExecutor(max_workers=50) as pool:
            codes = list(
                pool.map(
                    lambda _: requests.get(url, headers=user.headers, timeout=60).status_code,
                    range(50),
                )
            )
        assert codes == [200] * 50

    try:
        benchmark.pedantic(burst, rounds=versions, iterations=1)
    finally:
        stub.client.latency(0.0)
    calls = stub.client.call_count
    benchmark.extra_info.update(
        {
            "versions": versions,
            "previews_per_version": 50,
            "llm_calls_per_version": calls / versions,
        }
    )
    print(f"\n{calls} LLM calls for {versions} versions x 50 concurrent previews")
    clean_state(bench_settings)
    assert calls == versions
