"""The process's heartbeats: each block's beat runs every interval while the block runs, never
after it ends, and many blocks share one scheduler thread."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from services.notes.heartbeat import heartbeat
from tests.support.workers import stays_false, wait_until


def test_beats_run_while_the_block_runs_and_never_after() -> None:
    counts = [0, 0]

    def beat(i: int) -> None:
        counts[i] += 1

    with heartbeat(0.02, lambda: beat(0)):
        with heartbeat(0.05, lambda: beat(1)):
            wait_until(lambda: counts[1] >= 3, timeout_s=10, message="the slower beat")
        after_inner = counts[1]
        wait_until(lambda: counts[0] >= 10, timeout_s=10, message="the faster beat")
        assert counts[0] > counts[1]
    after_outer = counts[0]
    assert stays_false(lambda: counts != [after_outer, after_inner], 0.3)


def test_many_blocks_share_one_scheduler_thread_and_a_failing_beat_does_not_stop_it() -> None:
    seen: set[str] = set()
    lock = threading.Lock()
    failing_calls = []

    def failing() -> None:
        failing_calls.append(1)
        raise RuntimeError("redis is away")

    def block(_: int) -> None:
        beats = []

        def beat() -> None:
            with lock:
                seen.add(threading.current_thread().name)
            beats.append(1)

        # The block lasts until its own beat has run twice (the "LLM call" it keeps alive).
        with heartbeat(0.02, beat):
            wait_until(lambda: len(beats) >= 2, timeout_s=20, message="this block's beats")

    before = threading.active_count()
    with heartbeat(0.02, failing), ThreadPoolExecutor(max_workers=32) as pool:
        list(pool.map(block, range(32)))
        wait_until(lambda: len(failing_calls) >= 3, timeout_s=10, message="repeated beats")
    assert seen and all(name.startswith("rf-heartbeat") for name in seen)
    # 32 concurrent blocks: a scheduler and at most four beat threads, not a thread each.
    assert len(seen) <= 4
    assert threading.active_count() - before <= 5
