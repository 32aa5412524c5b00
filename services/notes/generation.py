"""Worker-side generation: one note per (kind, session, version).

Worker side, :func:`obtain_note`: read the bundle and its version in one repeatable-read
transaction, hold the version's lock, check the cache and the fingerprint again, generate,
record usage, store (which wakes the waiters) and release the lock with compare-and-delete.

Decision: when the worker reads a newer version than the one requested (the session moved on
between the request and the task), it generates for the version it READ and stores under that
key, because a key's text must come from exactly that version's data. It hands back the
requested version's lock first, so the waiters wake, re-read the version and wait on the new key.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from services.notes import liveness
from services.notes.bundle import (
    LoadedBundle,
    load_bundle,
)
from services.notes.cache import FlightLock
from services.notes.context import NotesContext, now_iso
from services.notes.generator import (
    GENERATOR_OFFLINE_FALLBACK,
    GeneratedNote,
    ResolutionNoteGenerator,
    citations,
    offline_draft,
    render_markdown,
)
from services.notes.heartbeat import heartbeat
from services.notes.vocabulary import NOTE_KINDS
from shared.db import db
from shared.llm import LLMUnavailable, LLMUsage
from shared.observability import (
    LLM_CALLS,
    LLM_TOKENS,
    NOTE_GENERATION_SECONDS,
    NOTE_REJECTIONS,
    get_logger,
)
from shared.usage import read_budget_status, record_reuse, record_usage

log = get_logger(__name__)

USAGE_PURPOSE = "resolution_note"


def usage_purpose(kind: str) -> str:
    """The ledger's purpose of a note generation: the kind (the resolution note's is the
    historical "resolution_note")."""
    return USAGE_PURPOSE if kind == NOTE_KINDS[0] else kind


# After a transient LLM failure (the SDK's retries spent), a session's pre-warm waits this long,
# doubling per failure up to the cap, so a dead LLM is not hammered once per sweep or event.
LLM_BACKOFF_BASE_S = 10
LLM_BACKOFF_MAX_S = 600

# Why a note came from the offline generator although the LLM is configured.
FALLBACK_PERMANENT = "permanent_error"  # the API refused the request for good (4xx)
FALLBACK_UNAVAILABLE = "llm_unavailable"  # a final note, after the SDK's retries
FALLBACK_BUDGET = "budget_exceeded"  # the account's monthly budget is spent


@dataclass(frozen=True)
class Obtained:
    payload: dict[str, Any]
    state_version: int
    # "cache" (the version key existed), "reuse" (same fingerprint), "generated"
    source: str


def reuse_by_fingerprint(
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
            purpose=usage_purpose(kind),
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

    holder = liveness.current()
    holder_id = holder.process_id if holder is not None else None
    lock: FlightLock | None = None
    if given is not None:
        # Taken over under this process's name, so that if it dies a waiter can tell.
        adopted = (
            ctx.cache.adopt(given, ctx.lock_ttl_s, holder=holder_id)
            if requested_version == version
            else None
        )
        if adopted is not None:
            lock = adopted
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
        lock = ctx.cache.acquire(kind, sid, version, ctx.lock_ttl_s, holder=holder_id)
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
        reused = reuse_by_fingerprint(ctx, kind, loaded, fingerprint)
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
        over_budget = read_budget_status(loaded.session.account_id).exceeded
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
        LLM_CALLS.labels(model=note.model, purpose=usage_purpose(kind), outcome=note.generator).inc(
            note.llm_calls
        )
        for token_type, count in (
            ("input", note.usage.input_tokens),
            ("output", note.usage.output_tokens),
            ("cache_creation", note.usage.cache_creation_input_tokens),
            ("cache_read", note.usage.cache_read_input_tokens),
        ):
            if count:
                LLM_TOKENS.labels(
                    model=note.model, purpose=usage_purpose(kind), type=token_type
                ).inc(count)
    with db.transaction() as session:
        record_usage(
            session,
            account_id=loaded.session.account_id,
            ai_session_id=loaded.session.session_id,
            purpose=usage_purpose(kind),
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
