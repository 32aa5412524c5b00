"""Heartbeats: keep a lock or a lease alive while a slow LLM or webhook call runs, and let it
lapse if the process dies. One scheduler thread per process serves every beat."""

from __future__ import annotations

import heapq
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from shared.observability import get_logger

log = get_logger(__name__)


class _Heartbeats:
    """Every heartbeat of the process, kept by ONE scheduler thread that hands due beats to a
    few reusable threads. A thread started and joined per generation cost a fifth of a
    worker's CPU under load (thread start, Event.set waking it, join); this costs none.

    A beat still running when it is due again is not started twice, and a slow beat holds up
    only the pool thread it runs on."""

    MAX_BEAT_THREADS = 4

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._due: list[tuple[float, int, float, Callable[[], object]]] = []
        self._active: set[int] = set()
        self._running: set[int] = set()
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None

    def add(self, interval_s: float, beat: Callable[[], object]) -> int:
        with self._cond:
            beat_id = next(self._ids)
            self._active.add(beat_id)
            heapq.heappush(self._due, (time.monotonic() + interval_s, beat_id, interval_s, beat))
            if self._thread is None or not self._thread.is_alive():
                self._pool = ThreadPoolExecutor(
                    max_workers=self.MAX_BEAT_THREADS, thread_name_prefix="rf-heartbeat"
                )
                self._thread = threading.Thread(target=self._run, name="rf-heartbeats", daemon=True)
                self._thread.start()
            self._cond.notify()
            return beat_id

    def remove(self, beat_id: int, timeout_s: float = 5.0) -> None:
        """Stop the beat; a run already under way is waited for (at most `timeout_s`), so no
        beat happens after the block that asked for it has ended."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            self._active.discard(beat_id)
            while beat_id in self._running:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._due and self._due[0][1] not in self._active:
                    heapq.heappop(self._due)  # removed: drop lazily
                if not self._due:
                    self._cond.wait()
                    continue
                due, beat_id, interval_s, beat = self._due[0]
                delay = due - time.monotonic()
                if delay > 0:
                    self._cond.wait(delay)
                    continue
                heapq.heapreplace(self._due, (due + interval_s, beat_id, interval_s, beat))
                if beat_id in self._running:
                    continue
                self._running.add(beat_id)
                pool = self._pool
            assert pool is not None
            pool.submit(self._beat, beat_id, beat)

    def _beat(self, beat_id: int, beat: Callable[[], object]) -> None:
        try:
            with self._cond:
                if beat_id not in self._active:
                    return
            beat()
        except Exception:  # noqa: BLE001 - a missed beat only shortens the lease
            log.warning("heartbeat failed", exc_info=True)
        finally:
            with self._cond:
                self._running.discard(beat_id)
                self._cond.notify_all()


_heartbeats = _Heartbeats()


def _reset_heartbeats_after_fork() -> None:
    # A forked child has none of the parent's threads: it starts its own on first use.
    global _heartbeats
    _heartbeats = _Heartbeats()


os.register_at_fork(after_in_child=_reset_heartbeats_after_fork)


@contextmanager
def heartbeat(interval_s: float, beat: Callable[[], object]) -> Iterator[None]:
    """Call `beat` every `interval_s` while the block runs (from the process's heartbeat
    thread): keeps a lock or a lease alive during a slow LLM or webhook call, and lets it
    lapse if this process dies."""
    beat_id = _heartbeats.add(interval_s, beat)
    try:
        yield
    finally:
        _heartbeats.remove(beat_id)
