"""The preview flow (journey 3) and the single-flight generation both sides share.

API side, :func:`preview_note`: read the session's `state_version` from PostgreSQL (the source of
truth) -> the cache key for that version -> content-addressed reuse (the bundle hashes the same
as a note already generated: store it under the new key, no LLM call) -> the single-flight lock
(`SET NX PX`): its holder enqueues `notes.generate`; everyone, the holder included, waits on the
cache's pub/sub wake-up for at most `wait` seconds.

Worker side, :func:`obtain_note`: read the bundle and its version in one repeatable-read
transaction, hold the version's lock, check the cache and the fingerprint again, generate,
record usage, store (which wakes the waiters) and release the lock with compare-and-delete.

Decision: when the worker reads a newer version than the one requested (the session moved on
between the request and the task), it generates for the version it READ and stores under that
key, because a key's text must come from exactly that version's data. It hands back the
requested version's lock first, so the waiters wake, re-read the version and wait on the new key.

No Flask here; the API and the tasks pass a :class:`NotesContext`.
"""

from __future__ import annotations

import heapq
import itertools
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis

from services.notes.bundle import LoadedBundle, SessionState, load_bundle, session_state
from services.notes.cache import FlightLock, NoteCache, note_tag
from services.notes.generator import (
    GENERATOR_OFFLINE_FALLBACK,
    NOTE_KINDS,
    GeneratedNote,
    ResolutionNoteGenerator,
    bundle_fingerprint,
    citations,
    offline_draft,
    render_markdown,
)
from shared.config import Settings
from shared.db import db
from shared.errors import AI_SESSION_NOT_FOUND, InvalidInput, NotFound, Unavailable
from shared.llm import OFFLINE_MODEL, LLMClient, LLMUnavailable, LLMUsage
from shared.observability import (
    LLM_CALLS,
    LLM_TOKENS,
    NOTE_GENERATION_SECONDS,
    NOTE_REJECTIONS,
    NOTES_CACHE_REQUESTS,
    get_logger,
)
from shared.redis_client import get_redis
from shared.usage import budget_status, record_reuse, record_usage

log = get_logger(__name__)

USAGE_PURPOSE = "resolution_note"

# Task names and the queue each one is routed to (the worker's routing table is built from this).
TASK_HANDLE_EVENT = "notes.handle_event"
TASK_GENERATE = "notes.generate"
TASK_PREWARM_CHECK = "notes.prewarm_check"
TASK_MATERIALISE = "notes.materialise"
TASK_DELIVER = "notes.deliver"
TASK_RELAY_OUTBOX = "notes.relay_outbox"
TASK_SWEEP = "notes.sweep"
TASK_BATCH_LANE = "notes.batch_lane"
TASK_QUEUES: dict[str, str] = {
    TASK_HANDLE_EVENT: "events",
    TASK_GENERATE: "notes",
    TASK_PREWARM_CHECK: "notes",
    TASK_MATERIALISE: "notes",
    TASK_DELIVER: "webhooks",
    TASK_RELAY_OUTBOX: "events",
    TASK_SWEEP: "notes",
    TASK_BATCH_LANE: "notes",
}

# A preview re-enqueues a generation when the one it waited on vanished without a result (its
# worker died, or the LLM failed); past this many it only waits, so a dead LLM cannot make one
# request spin.
MAX_ENQUEUES_PER_PREVIEW = 3
# The 202 answer's hint: how long a client should wait before asking again.
PENDING_RETRY_AFTER_S = 2
# After a transient LLM failure (the SDK's retries spent), a session's pre-warm waits this long,
# doubling per failure up to the cap, so a dead LLM is not hammered once per sweep or event.
LLM_BACKOFF_BASE_S = 10
LLM_BACKOFF_MAX_S = 600

# Why a note came from the offline generator although the LLM is configured.
FALLBACK_PERMANENT = "permanent_error"  # the API refused the request for good (4xx)
FALLBACK_UNAVAILABLE = "llm_unavailable"  # a final note, after the SDK's retries
FALLBACK_BUDGET = "budget_exceeded"  # the account's monthly budget is spent


# How many times `NOTES_LOCK_TTL_S` a lock handed to a queued task lives (30 s -> 120 s).
HANDOVER_LOCK_FACTOR = 4


class NotesContext:
    """What the notes code needs in one process: settings, Redis, the cache, the generator and
    a way to enqueue tasks. Built once per process (see :func:`context_for`)."""

    def __init__(self, settings: Settings, redis_client: redis.Redis | None = None) -> None:
        if settings.REDIS_URL is None:
            raise RuntimeError("REDIS_URL is not configured")
        self.settings = settings
        # Durable keys (event de-duplication) live beside the broker; the note cache may live on
        # its own LRU-bounded Redis (CACHE_REDIS_URL). Losing a cache key costs one generation.
        self.redis = redis_client or get_redis(settings.REDIS_URL)
        cache_url = settings.cache_redis_url or settings.REDIS_URL
        cache_redis = redis_client or get_redis(cache_url)
        self.cache = NoteCache(cache_redis, prefix=settings.REDIS_KEY_PREFIX)
        self._generator: ResolutionNoteGenerator | None = None
        self._lock = threading.Lock()

    @property
    def generator(self) -> ResolutionNoteGenerator:
        # Built on first use: an API process only fingerprints and never needs the SDK client.
        with self._lock:
            if self._generator is None:
                self._generator = ResolutionNoteGenerator(LLMClient.from_settings(self.settings))
            return self._generator

    @property
    def model(self) -> str:
        """The model a generation would report (what fingerprints are computed with)."""
        return self.settings.ANTHROPIC_MODEL if self.settings.llm_online else OFFLINE_MODEL

    @property
    def lock_ttl_s(self) -> float:
        return self.settings.NOTES_LOCK_TTL_S

    @property
    def handover_lock_ttl_s(self) -> float:
        """The lock a preview takes for a task still waiting in the queue: nothing renews it
        until a worker starts the task (and shortens it to `lock_ttl_s`, kept alive by its
        heartbeat), so it must outlast a queue backlog, or a second preview would take the lock
        and generate the same version again."""
        return self.settings.NOTES_LOCK_TTL_S * HANDOVER_LOCK_FACTOR

    def fingerprint(self, loaded: LoadedBundle) -> str:
        return bundle_fingerprint(loaded.bundle, model=self.model)

    def enqueue(self, name: str, *args: Any, countdown: float | None = None) -> None:
        """Publish a task by name on its queue; raises if the broker cannot take it."""
        from shared.messaging import get_publisher

        assert self.settings.REDIS_URL is not None
        options: dict[str, Any] = {"queue": TASK_QUEUES[name], "retry": False}
        if countdown is not None and countdown > 0:
            options["countdown"] = countdown
        get_publisher(self.settings.REDIS_URL).send_task(name, args=list(args), **options)


_context: NotesContext | None = None
_context_lock = threading.Lock()


def context_for(settings: Settings) -> NotesContext:
    """The process's context for these settings (rebuilt when the settings object changes)."""
    global _context
    with _context_lock:
        if _context is None or _context.settings is not settings:
            _context = NotesContext(settings)
        return _context


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


# ── Heartbeat ─────────────────────────────────────────────────────────────────────────────────


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


# ── Worker side: one generation per (kind, session, version) ──────────────────────────────────


@dataclass(frozen=True)
class Obtained:
    payload: dict[str, Any]
    state_version: int
    # "cache" (the version key existed), "reuse" (same fingerprint), "generated"
    source: str


def _reuse(
    ctx: NotesContext, kind: str, loaded: LoadedBundle, fingerprint: str
) -> dict[str, Any] | None:
    found = ctx.cache.find_by_fingerprint(kind, loaded.bundle.session_id, fingerprint)
    if found is None:
        return None
    payload = {**found, "state_version": loaded.state_version, "fingerprint": fingerprint}
    ctx.cache.put(kind, loaded.bundle.session_id, loaded.state_version, payload)
    with db.transaction() as session:
        record_reuse(
            session,
            account_id=loaded.session.account_id,
            ai_session_id=loaded.session.session_id,
            purpose=USAGE_PURPOSE,
            state_version=loaded.state_version,
        )
    return payload


def backoff_key(ctx: NotesContext, session_id: str) -> str:
    return f"{ctx.settings.REDIS_KEY_PREFIX}:llm_backoff:{session_id}"


def _back_off(ctx: NotesContext, session_id: str) -> None:
    """Count a transient LLM failure for the session; its pre-warm waits 10 s, 20 s, 40 s, ..."""
    key = backoff_key(ctx, session_id)
    failures = int(ctx.redis.incr(f"{key}:n"))
    ctx.redis.expire(f"{key}:n", LLM_BACKOFF_MAX_S * 2)
    delay = min(LLM_BACKOFF_MAX_S, LLM_BACKOFF_BASE_S * 2 ** (failures - 1))
    ctx.redis.set(key, failures, ex=int(delay))


def backing_off(ctx: NotesContext, session_id: str) -> bool:
    return bool(ctx.redis.exists(backoff_key(ctx, session_id)))


def obtain_note(
    ctx: NotesContext,
    kind: str,
    session_id: uuid.UUID,
    *,
    requested_version: int | None = None,
    lock_token: str | None = None,
    wait_s: float = 0.0,
    only_if: Callable[[LoadedBundle], bool] | None = None,
    final: bool = False,
    loaded: LoadedBundle | None = None,
) -> Obtained | None:
    """The note of the session's current version: from the cache, by fingerprint reuse, or
    generated under the version's single-flight lock.

    ``final`` (the resolved session's note): when the LLM is still unavailable after the SDK's
    retries, the offline note is stored (flagged) instead of failing, so it never stays
    "generating"; a permanent refusal or a spent budget does that for every note.

    `lock_token` is the lock a preview took for `requested_version` and passed with the task.
    Returns None when there is nothing to do: the session is gone, `only_if` refused, or another
    process holds the lock (after waiting up to `wait_s` for its result).

    `loaded` (the final note) is a bundle captured earlier, the Resolve snapshot: it is used
    instead of the session's current data, so the note is made from exactly that version.
    """
    if loaded is None:
        loaded = load_bundle(session_id, kind)
    given: FlightLock | None = None
    if lock_token is not None and requested_version is not None:
        given = FlightLock(ctx.cache.lock_key(kind, str(session_id), requested_version), lock_token)
    if loaded is None:
        if given is not None:
            ctx.cache.release(given)
        return None
    sid = loaded.bundle.session_id
    version = loaded.state_version

    lock: FlightLock | None = None
    if given is not None:
        if requested_version == version and ctx.cache.extend(given, ctx.lock_ttl_s):
            lock = given
        else:
            # The session moved on, or this lock expired: hand it back so the waiters look again.
            ctx.cache.release(given)
    if only_if is not None and not only_if(loaded):
        if lock is not None:
            ctx.cache.release(lock)
        return None

    if lock is None:
        found = ctx.cache.get(kind, sid, version)
        if found is not None:
            return Obtained(found, version, "cache")
        lock = ctx.cache.acquire(kind, sid, version, ctx.lock_ttl_s)
        if lock is None:
            # Someone else is generating this version right now.
            if wait_s > 0:
                found = ctx.cache.wait(kind, sid, version, wait_s, stop_when_unlocked=True)
                if found is not None:
                    return Obtained(found, version, "cache")
            return None

    try:
        # Checked again under the lock: a generation that finished between our first look and
        # the lock must not be repeated.
        found = ctx.cache.get(kind, sid, version)
        if found is not None:
            return Obtained(found, version, "cache")
        fingerprint = ctx.fingerprint(loaded)
        reused = _reuse(ctx, kind, loaded, fingerprint)
        if reused is not None:
            return Obtained(reused, version, "reuse")
        return Obtained(_generate(ctx, kind, loaded, lock, final=final), version, "generated")
    finally:
        ctx.cache.release(lock)


def _fallback(
    generator: ResolutionNoteGenerator, loaded: LoadedBundle, fingerprint: str
) -> GeneratedNote:
    draft = offline_draft(loaded.bundle, max_chars=generator.max_chars)
    return GeneratedNote(
        markdown=render_markdown(draft),
        citations=citations(draft, loaded.bundle),
        generator=GENERATOR_OFFLINE_FALLBACK,
        model=generator.llm.model,
        usage=LLMUsage(),
        attempts=0,
        fingerprint=fingerprint,
        llm_calls=0,
    )


def _generate(
    ctx: NotesContext, kind: str, loaded: LoadedBundle, lock: FlightLock, *, final: bool = False
) -> dict[str, Any]:
    generator = ctx.generator
    started = time.perf_counter()
    fallback_reason: str | None = None
    error: str | None = None
    failed_calls = 0
    over_budget = False
    if generator.llm.online:
        with db.transaction() as session:
            over_budget = budget_status(session, loaded.session.account_id).exceeded
    if over_budget:
        note = _fallback(generator, loaded, generator.fingerprint(loaded.bundle))
        fallback_reason = FALLBACK_BUDGET
    else:
        try:
            with heartbeat(
                max(0.2, ctx.lock_ttl_s / 3), lambda: ctx.cache.extend(lock, ctx.lock_ttl_s)
            ):
                note = generator.generate(loaded.bundle)
        except LLMUnavailable as exc:
            if exc.retryable and not final:
                _back_off(ctx, loaded.bundle.session_id)
                raise
            note = _fallback(generator, loaded, generator.fingerprint(loaded.bundle))
            fallback_reason = FALLBACK_UNAVAILABLE if exc.retryable else FALLBACK_PERMANENT
            error = exc.error
            # The refused or failed request was made (once: 4xx are not retried).
            failed_calls = 0 if exc.reason == "unsupported_request" else 1
            log.warning(
                "note generation fell back to the offline note",
                session_id=loaded.bundle.session_id,
                state_version=loaded.state_version,
                reason=fallback_reason,
                llm_reason=exc.reason,
                status_code=exc.status_code,
            )
    elapsed = time.perf_counter() - started
    NOTE_GENERATION_SECONDS.observe(elapsed)
    for reasons in note.rejections:
        for reason in reasons:
            NOTE_REJECTIONS.labels(reason=reason).inc()
    if note.llm_calls:
        LLM_CALLS.labels(model=note.model, purpose=USAGE_PURPOSE, outcome=note.generator).inc(
            note.llm_calls
        )
        for token_type, count in (
            ("input", note.usage.input_tokens),
            ("output", note.usage.output_tokens),
            ("cache_creation", note.usage.cache_creation_input_tokens),
            ("cache_read", note.usage.cache_read_input_tokens),
        ):
            if count:
                LLM_TOKENS.labels(model=note.model, purpose=USAGE_PURPOSE, type=token_type).inc(
                    count
                )
    with db.transaction() as session:
        record_usage(
            session,
            account_id=loaded.session.account_id,
            ai_session_id=loaded.session.session_id,
            purpose=USAGE_PURPOSE,
            generator=note.generator,
            model=note.model,
            usage=note.usage,
            latency_ms=int(elapsed * 1000),
            llm_calls=note.llm_calls + failed_calls,
            state_version=loaded.state_version,
            fallback_reason=fallback_reason,
            error=error,
            rejections=note.rejections,
        )
    payload = note.cache_payload(state_version=loaded.state_version, generated_at=now_iso())
    payload["kind"] = kind
    if fallback_reason is not None:
        payload["fallback_reason"] = fallback_reason
        # A fallback is not what this bundle's note should be: never reuse it by fingerprint.
        payload.pop("fingerprint", None)
    ctx.cache.put(kind, loaded.bundle.session_id, loaded.state_version, payload)
    log.info(
        "note generated",
        session_id=loaded.bundle.session_id,
        state_version=loaded.state_version,
        generator=note.generator,
        llm_calls=note.llm_calls,
        rejections=note.rejections,
        duration_ms=int(elapsed * 1000),
    )
    return payload


# ── API side ──────────────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class PreviewOutcome:
    kind: str
    session_id: uuid.UUID
    state_version: int
    ticket_ref: str | None
    payload: dict[str, Any] | None = None
    from_cache: bool = True
    retry_after: int = PENDING_RETRY_AFTER_S
    extra: dict[str, Any] = field(default_factory=dict)
    # The caller's copy (this tag of its If-None-Match) is the current note: nothing to send.
    matched_tag: str | None = None

    @property
    def not_modified(self) -> bool:
        return self.matched_tag is not None

    @property
    def ready(self) -> bool:
        return self.payload is not None or self.not_modified

    @property
    def tag(self) -> str | None:
        """The note's entity tag (see services.notes.cache.note_tag), None while pending."""
        if self.payload is None:
            return None
        return note_tag(self.kind, str(self.session_id), self.state_version, self.payload)

    def body(self) -> dict[str, Any]:
        if self.payload is None:
            return {
                "status": "pending",
                "kind": self.kind,
                "session_id": str(self.session_id),
                "state_version": self.state_version,
                "retry_after": self.retry_after,
            }
        return {
            "kind": self.kind,
            "session_id": str(self.session_id),
            "state_version": self.state_version,
            "markdown": self.payload.get("markdown"),
            "citations": self.payload.get("citations") or [],
            "from_cache": self.from_cache,
            "generator": self.payload.get("generator"),
            "model": self.payload.get("model"),
            "generated_at": self.payload.get("generated_at"),
            "ticket_ref": self.ticket_ref,
            "fallback_reason": self.payload.get("fallback_reason"),
        }


def check_kind(kind: str) -> None:
    if kind not in NOTE_KINDS:
        raise InvalidInput(
            "unknown note kind", errors={"kind": [f"must be one of: {', '.join(NOTE_KINDS)}"]}
        )


def preview_note(
    ctx: NotesContext,
    *,
    session_id: uuid.UUID,
    account_id: uuid.UUID,
    kind: str,
    wait_s: float,
    state: SessionState | None = None,
    if_none_match: list[str] | None = None,
) -> PreviewOutcome:
    """The note for the session's current version, waiting up to `wait_s` for a generation.

    `from_cache` is True when this request started no generation. `state` is the session's
    state when the caller has just read it (the API reads it with the principal). When the
    current version's tag is in `if_none_match`, the outcome is `not_modified` and the note
    itself is not read.
    """
    check_kind(kind)
    deadline = time.monotonic() + max(0.0, wait_s)
    enqueued = 0
    if state is None:
        state = session_state(session_id, account_id=account_id)
    if state is None or state.account_id != account_id:
        raise NotFound(AI_SESSION_NOT_FOUND)
    version, ticket_ref = state.state_version, state.ticket_ref
    sid = str(session_id)
    # The first look is the hit path: one Redis round trip, whatever the answer.
    if if_none_match:
        matched, found = ctx.cache.get_unless_tagged(kind, sid, version, if_none_match)
        if matched is not None:
            NOTES_CACHE_REQUESTS.labels(result="hit").inc()
            return PreviewOutcome(kind, session_id, version, ticket_ref, matched_tag=matched)
    else:
        found = ctx.cache.get(kind, sid, version)
    first_look = True
    while True:
        if not first_look:
            found = ctx.cache.get(kind, sid, version)
        first_look = False
        if found is not None:
            if not enqueued:
                NOTES_CACHE_REQUESTS.labels(result="hit").inc()
            return PreviewOutcome(kind, session_id, version, ticket_ref, found, not enqueued)

        loaded = load_bundle(session_id, kind)
        if loaded is None or loaded.session.account_id != account_id:
            raise NotFound(AI_SESSION_NOT_FOUND)
        # The repeatable-read snapshot may be newer than the first read: it is the one to serve.
        version, ticket_ref = loaded.state_version, loaded.session.ticket_ref
        found = ctx.cache.get(kind, sid, version) or _reuse(
            ctx, kind, loaded, ctx.fingerprint(loaded)
        )
        if found is not None:
            if not enqueued:
                NOTES_CACHE_REQUESTS.labels(result="reuse").inc()
            return PreviewOutcome(kind, session_id, version, ticket_ref, found, not enqueued)

        if enqueued < MAX_ENQUEUES_PER_PREVIEW:
            lock = ctx.cache.acquire(kind, sid, version, ctx.handover_lock_ttl_s)
            found = ctx.cache.get(kind, sid, version) if lock is not None else None
            if lock is not None and found is not None:
                # Stored (and its lock released) between our last look and the lock: no task.
                ctx.cache.release(lock)
                return PreviewOutcome(kind, session_id, version, ticket_ref, found, not enqueued)
            if lock is not None:
                try:
                    ctx.enqueue(TASK_GENERATE, kind, sid, version, lock.token)
                except Exception as exc:
                    ctx.cache.release(lock)
                    raise Unavailable("the note workers cannot be reached; try again") from exc
                enqueued += 1
                NOTES_CACHE_REQUESTS.labels(result="miss").inc()
            else:
                NOTES_CACHE_REQUESTS.labels(result="inflight").inc()

        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return PreviewOutcome(kind, session_id, version, ticket_ref, None, not enqueued)
        found = ctx.cache.wait(
            kind,
            sid,
            version,
            remaining,
            # Once this request may enqueue no more, waiting for the lock to vanish is pointless.
            stop_when_unlocked=enqueued < MAX_ENQUEUES_PER_PREVIEW,
        )
        if found is not None:
            return PreviewOutcome(kind, session_id, version, ticket_ref, found, not enqueued)
        if time.monotonic() >= deadline:
            return PreviewOutcome(kind, session_id, version, ticket_ref, None, not enqueued)
        # The lock vanished without a result (the session moved on, the worker died, or the LLM
        # failed): read the version again and start over.
        state = session_state(session_id, account_id=account_id)
        if state is None:
            raise NotFound(AI_SESSION_NOT_FOUND)
        version, ticket_ref = state.state_version, state.ticket_ref


# ── Events: state changes and pre-warm ────────────────────────────────────────────────────────


def on_state_changed(ctx: NotesContext, session_id: uuid.UUID, state_version: int) -> bool:
    """Drop older versions' keys and record the event for the quiet timer. Returns whether a
    pre-warm check should be scheduled."""
    sid = str(session_id)
    ctx.cache.delete_older(sid, state_version)
    ctx.cache.note_event(sid, state_version, ctx.settings.NOTES_PREWARM_QUIET_S)
    return ctx.settings.NOTES_PREWARM


def prewarm(
    ctx: NotesContext, session_id: uuid.UUID, state_version: int, kind: str = NOTE_KINDS[0]
) -> tuple[str, float | None]:
    """Generate the version's note if it is still the latest, the session is active and it has
    been quiet. Returns (what happened, countdown to check again or None)."""
    if not ctx.settings.NOTES_PREWARM:
        return "disabled", None
    left = ctx.cache.quiet_remaining(
        str(session_id), state_version, ctx.settings.NOTES_PREWARM_QUIET_S
    )
    if left is None:
        return "superseded", None
    if left > 0:
        return "not_quiet", left
    if backing_off(ctx, str(session_id)):
        # The LLM failed for this session moments ago: the next state change or preview
        # tries again, not this background check.
        return "backoff", None

    def still_current(loaded: LoadedBundle) -> bool:
        return loaded.session.status == "active" and loaded.state_version == state_version

    got = obtain_note(ctx, kind, session_id, only_if=still_current)
    return (got.source if got is not None else "skipped"), None
