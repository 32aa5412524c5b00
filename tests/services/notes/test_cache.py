"""services.notes.cache against a real Redis."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis

from services.notes.cache import FlightLock, NoteCache

KIND = "resolution_note"
SID = "sess-1"


def payload(
    version: int, fingerprint: str | None = "fp-a", text: str = "## Problem\nx"
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "markdown": text,
        "generator": "anthropic",
        "model": "claude-sonnet-4-6",
        "generated_at": "2026-01-01T00:00:00+00:00",
        "state_version": version,
        "usage": {"input_tokens": 10, "output_tokens": 5},
    }
    if fingerprint is not None:
        body["fingerprint"] = fingerprint
    return body


@pytest.fixture
def cache(redis_client: redis.Redis, redis_prefix: str) -> NoteCache:
    return NoteCache(redis_client, prefix=redis_prefix)


class SignallingCache(NoteCache):
    """Counts GET misses, so a test knows a waiter has subscribed *and* looked (its next
    chance to see the payload is the pub/sub message)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.misses = 0
        self.changed = threading.Condition()

    def get(self, kind: str, session_id: str, state_version: int) -> dict[str, Any] | None:
        found = super().get(kind, session_id, state_version)
        if found is None:
            with self.changed:
                self.misses += 1
                self.changed.notify_all()
        return found

    def wait_for_misses(self, count: int, timeout_s: float = 10.0) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: self.misses >= count, timeout=timeout_s), (
                f"only {self.misses} of {count} waiters got ready"
            )


def until(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Bounded wait for a condition on the server's state."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        threading.Event().wait(0.002)


def numsub(client: redis.Redis, channel: str) -> int:
    return int(dict(client.pubsub_numsub(channel)).get(channel.encode(), 0))


# -- payloads -------------------------------------------------------------------------------


def test_key_format(cache: NoteCache, redis_prefix: str) -> None:
    assert cache.key(KIND, SID, 7) == f"{redis_prefix}:note:{KIND}:{SID}:7"
    assert NoteCache(cache.redis).key(KIND, SID, 7) == f"rf:note:{KIND}:{SID}:7"


def test_put_get_round_trip(cache: NoteCache, redis_client: redis.Redis) -> None:
    assert cache.get(KIND, SID, 7) is None
    cache.put(KIND, SID, 7, payload(7))
    assert cache.get(KIND, SID, 7) == payload(7)
    assert cache.get(KIND, SID, 8) is None
    assert cache.find_by_fingerprint(KIND, SID, "fp-a") == payload(7)
    assert cache.find_by_fingerprint(KIND, "other-session", "fp-a") is None
    assert redis_client.ttl(cache.key(KIND, SID, 7)) == -1  # no expiry
    assert redis_client.zscore(cache.index_key(SID), cache.key(KIND, SID, 7)) == 7


def test_works_with_a_decoding_client(redis_client: redis.Redis, redis_prefix: str) -> None:
    decoding = redis.Redis(
        connection_pool=redis.ConnectionPool(
            **{**redis_client.connection_pool.connection_kwargs, "decode_responses": True}
        )
    )
    cache = NoteCache(decoding, prefix=redis_prefix)
    cache.put(KIND, SID, 1, payload(1))
    assert cache.get(KIND, SID, 1) == payload(1)
    lock = cache.acquire(KIND, SID, 1, 5)
    assert lock is not None and cache.lock_holder(KIND, SID, 1) == lock.token
    assert cache.wait(KIND, SID, 1, 1.0) == payload(1)
    decoding.close()


def test_put_without_fingerprint_stores_the_version_only(
    cache: NoteCache, redis_client: redis.Redis
) -> None:
    cache.put(KIND, SID, 3, payload(3, fingerprint=None))
    assert cache.get(KIND, SID, 3) == payload(3, fingerprint=None)
    assert redis_client.scard(cache.fingerprints_key(SID)) == 0


def test_delete_older_keeps_newer_versions_and_fingerprint_reuse(
    cache: NoteCache, redis_client: redis.Redis
) -> None:
    cache.put(KIND, SID, 5, payload(5, "fp-a", "five"))
    cache.put(KIND, SID, 6, payload(6, "fp-a", "six"))
    cache.put("other_kind", SID, 5, payload(5, "fp-o"))
    cache.put(KIND, SID, 7, payload(7, "fp-b", "seven"))
    cache.put(KIND, "sess-2", 1, payload(1, "fp-a"))

    assert cache.delete_older(SID, 7) == 3
    assert cache.get(KIND, SID, 5) is None and cache.get(KIND, SID, 6) is None
    assert cache.get("other_kind", SID, 5) is None
    assert cache.get(KIND, SID, 7) == payload(7, "fp-b", "seven")
    # Version 6 was generated, later writes did not change the bundle: the text is still found.
    assert cache.find_by_fingerprint(KIND, SID, "fp-a") == payload(6, "fp-a", "six")
    assert cache.find_by_fingerprint("other_kind", SID, "fp-o") is not None
    assert redis_client.zrange(cache.index_key(SID), 0, -1) == [cache.key(KIND, SID, 7).encode()]
    assert cache.get(KIND, "sess-2", 1) is not None  # another session is untouched
    assert cache.delete_older(SID, 7) == 0
    assert cache.delete_older("never-seen", 100) == 0


def test_forget_session_deletes_everything_of_that_session_only(
    cache: NoteCache, redis_client: redis.Redis
) -> None:
    cache.put(KIND, SID, 1, payload(1, "fp-a"))
    cache.put(KIND, SID, 2, payload(2, "fp-b"))
    cache.note_event(SID, 2, 1.0)
    cache.put(KIND, "sess-2", 1, payload(1, "fp-a"))
    deleted = cache.forget_session(SID)
    assert deleted == 7  # 2 versions, 2 fingerprints, index, fingerprint set, quiet hash
    assert cache.get(KIND, SID, 2) is None
    assert cache.find_by_fingerprint(KIND, SID, "fp-a") is None
    assert not redis_client.exists(
        cache.index_key(SID), cache.fingerprints_key(SID), cache.quiet_key(SID)
    )
    assert cache.get(KIND, "sess-2", 1) == payload(1, "fp-a")
    assert cache.find_by_fingerprint(KIND, "sess-2", "fp-a") == payload(1, "fp-a")


# -- single-flight lock ----------------------------------------------------------------------


def test_acquire_is_exclusive_across_threads(cache: NoteCache) -> None:
    barrier = threading.Barrier(20)

    def attempt(_: int) -> FlightLock | None:
        barrier.wait()
        return cache.acquire(KIND, SID, 9, 30)

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(attempt, range(20)))
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert cache.lock_holder(KIND, SID, 9) == winners[0].token
    # Another version is a different lock.
    assert cache.acquire(KIND, SID, 10, 30) is not None


def test_release_only_by_the_owner(cache: NoteCache) -> None:
    lock = cache.acquire(KIND, SID, 1, 30)
    assert lock is not None
    impostor = FlightLock(key=lock.key, token="not-the-owner")
    assert cache.release(impostor) is False
    assert cache.lock_holder(KIND, SID, 1) == lock.token
    assert cache.extend(impostor, 60) is False
    assert cache.release(lock) is True
    assert cache.lock_holder(KIND, SID, 1) is None
    assert cache.release(lock) is False
    assert cache.extend(lock, 60) is False  # a released lock cannot be revived


def test_lock_ttl_and_extend(cache: NoteCache, redis_client: redis.Redis) -> None:
    lock = cache.acquire(KIND, SID, 1, 0.2)
    assert lock is not None
    assert 0 < redis_client.pttl(lock.key) <= 200
    assert cache.acquire(KIND, SID, 1, 0.2) is None
    assert cache.extend(lock, 5) is True
    assert 200 < redis_client.pttl(lock.key) <= 5000


def test_lock_expires_and_can_be_taken_again(cache: NoteCache, redis_client: redis.Redis) -> None:
    first = cache.acquire(KIND, SID, 1, 0.05)
    assert first is not None
    until(lambda: redis_client.pttl(first.key) == -2)  # gone on the server
    second = cache.acquire(KIND, SID, 1, 5)
    assert second is not None and second.token != first.token
    assert cache.release(first) is False  # the expired owner cannot delete the new lock
    assert cache.lock_holder(KIND, SID, 1) == second.token


# -- wait -------------------------------------------------------------------------------------


def test_wait_timeout_zero_is_a_plain_get(cache: NoteCache) -> None:
    start = time.monotonic()
    assert cache.wait(KIND, SID, 1, 0) is None
    # No subscription, no waiting (a busy machine may still take a while over one GET).
    assert time.monotonic() - start < 5
    cache.put(KIND, SID, 1, payload(1))
    assert cache.wait(KIND, SID, 1, 0) == payload(1)


def test_wait_returns_at_once_when_the_payload_exists(cache: NoteCache) -> None:
    cache.put(KIND, SID, 1, payload(1))
    start = time.monotonic()
    assert cache.wait(KIND, SID, 1, 30) == payload(1)
    assert time.monotonic() - start < 15  # well before its 30 s timeout


def test_wait_times_out_with_none(cache: NoteCache) -> None:
    start = time.monotonic()
    assert cache.wait(KIND, SID, 1, 0.3) is None
    elapsed = time.monotonic() - start
    # Not before its timeout; the upper bound only says it does not hang.
    assert 0.25 <= elapsed < 10


def test_wait_receives_a_payload_put_by_another_thread(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    cache = SignallingCache(redis_client, prefix=redis_prefix)
    results: list[dict[str, Any] | None] = []
    waiter = threading.Thread(target=lambda: results.append(cache.wait(KIND, SID, 4, 10)))
    start = time.monotonic()
    waiter.start()
    cache.wait_for_misses(1)  # subscribed, and its GET found nothing
    assert numsub(redis_client, cache.channel(KIND, SID, 4)) == 1
    putter = threading.Thread(target=cache.put, args=(KIND, SID, 4, payload(4)))
    putter.start()
    putter.join(5)
    waiter.join(10)
    assert not waiter.is_alive()
    assert results == [payload(4)]
    assert time.monotonic() - start < 5
    assert numsub(redis_client, cache.channel(KIND, SID, 4)) == 0  # unsubscribed on return


def test_wait_ignores_other_versions(redis_client: redis.Redis, redis_prefix: str) -> None:
    cache = SignallingCache(redis_client, prefix=redis_prefix)
    results: list[dict[str, Any] | None] = []
    waiter = threading.Thread(target=lambda: results.append(cache.wait(KIND, SID, 4, 0.5)))
    waiter.start()
    cache.wait_for_misses(1)
    cache.put(KIND, SID, 5, payload(5))
    waiter.join(5)
    assert results == [None]


def test_fifty_waiters_all_receive_one_put(redis_client: redis.Redis, redis_prefix: str) -> None:
    cache = SignallingCache(redis_client, prefix=redis_prefix)
    with ThreadPoolExecutor(max_workers=50) as pool:
        futures = [pool.submit(cache.wait, KIND, SID, 8, 15) for _ in range(50)]
        cache.wait_for_misses(50)
        assert numsub(redis_client, cache.channel(KIND, SID, 8)) == 50
        start = time.monotonic()
        cache.put(KIND, SID, 8, payload(8))
        results = [f.result(timeout=15) for f in futures]
    assert results == [payload(8)] * 50
    assert time.monotonic() - start < 15  # loose: a busy machine stretches 50 threads


def test_wait_stops_early_when_the_lock_owner_dies(cache: NoteCache) -> None:
    # The owner took the lock and died: its lock expires, no payload ever arrives.
    assert cache.acquire(KIND, SID, 2, 0.3) is not None
    start = time.monotonic()
    assert cache.wait(KIND, SID, 2, 20, stop_when_unlocked=True) is None
    elapsed = time.monotonic() - start
    assert 0.1 < elapsed < 15.0  # well before the 20 s timeout
    # Without a lock at all it returns straight away.
    start = time.monotonic()
    assert cache.wait(KIND, SID, 3, 20, stop_when_unlocked=True) is None
    assert time.monotonic() - start < 10  # well before its 20 s timeout


def test_wait_with_stop_when_unlocked_still_gets_the_payload(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    cache = SignallingCache(redis_client, prefix=redis_prefix)
    lock = cache.acquire(KIND, SID, 6, 30)
    assert lock is not None
    results: list[dict[str, Any] | None] = []
    waiter = threading.Thread(
        target=lambda: results.append(cache.wait(KIND, SID, 6, 10, stop_when_unlocked=True))
    )
    waiter.start()
    cache.wait_for_misses(1)
    cache.put(KIND, SID, 6, payload(6))
    assert cache.release(lock)
    waiter.join(10)
    assert results == [payload(6)]


# -- quiet timer ------------------------------------------------------------------------------


def test_quiet_timer_tracks_the_latest_version(cache: NoteCache, redis_client: redis.Redis) -> None:
    assert cache.is_quiet(SID, 1, 0) is False  # nothing recorded
    assert cache.quiet_remaining(SID, 1, 2.0) is None
    cache.note_event(SID, 3, 60)
    remaining = cache.quiet_remaining(SID, 3, 60)
    assert remaining is not None and 55 < remaining <= 60
    assert cache.is_quiet(SID, 3, 60) is False  # an event just came
    assert cache.is_quiet(SID, 3, 0) is True
    cache.note_event(SID, 4, 60)
    assert cache.quiet_remaining(SID, 3, 0) is None  # superseded
    assert cache.is_quiet(SID, 4, 0) is True
    cache.note_event(SID, 3, 60)  # a late, out-of-order event does not roll back
    assert cache.is_quiet(SID, 4, 0) is True
    assert cache.is_quiet(SID, 3, 0) is False
    assert redis_client.hget(cache.quiet_key(SID), "version") == b"4"
    assert 0 < redis_client.pttl(cache.quiet_key(SID)) <= 3600 * 1000


def test_quiet_timer_becomes_quiet_after_the_interval(
    cache: NoteCache, redis_client: redis.Redis
) -> None:
    cache.note_event(SID, 1, 0.05)
    recorded = int(redis_client.hget(cache.quiet_key(SID), "at_ms") or 0)

    def server_ms() -> int:
        seconds, micros = redis_client.time()
        return int(seconds) * 1000 + int(micros) // 1000

    until(lambda: server_ms() - recorded >= 50)
    assert cache.is_quiet(SID, 1, 0.05) is True
    assert cache.quiet_remaining(SID, 1, 0.05) == 0.0


def test_a_short_lock_outlives_a_slow_generation_while_its_heartbeat_runs(
    redis_client: Any,
) -> None:
    """The lock's TTL is short so that a dead holder's lock lapses fast; a live holder's
    heartbeat keeps it for as long as the generation takes, and stops renewing it when the
    holder goes away."""
    from services.notes.cache import NoteCache
    from services.notes.heartbeat import heartbeat
    from tests.support.workers import stays_false, wait_until

    cache = NoteCache(redis_client, prefix=f"hb{uuid.uuid4().hex[:6]}")
    ttl_s = 0.6
    sid = str(uuid.uuid4())
    lock = cache.acquire("resolution_note", sid, 1, ttl_s)
    assert lock is not None
    with heartbeat(ttl_s / 3, lambda: cache.extend(lock, ttl_s)):
        # Four lifetimes of the lock, and it never lapsed.
        assert stays_false(lambda: cache.lock_holder("resolution_note", sid, 1) is None, 4 * ttl_s)
    # The holder is gone (its heartbeat with it): the lock lapses within one lifetime.
    wait_until(lambda: cache.lock_holder("resolution_note", sid, 1) is None, 5, message="the lapse")
    assert cache.acquire("resolution_note", sid, 1, ttl_s) is not None
