"""Previewing a note while the session is open, API side: :func:`preview_note` reads the
session's `state_version` from PostgreSQL (the source of truth) -> the cache key for that
version -> content-addressed reuse (the bundle hashes the same as a note already generated:
store it under the new key, no LLM call) -> the single-flight lock (`SET NX PX`): its holder
enqueues `notes.generate`; everyone, the holder included, waits on the cache's pub/sub wake-up
for at most `wait` seconds.

The worker side (the generation itself) is :mod:`services.notes.generation`.

No Flask here; the API passes a :class:`services.notes.context.NotesContext`.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from services.notes.bundle import (
    SessionState,
    load_bundle,
    session_state,
)
from services.notes.cache import HitEntry, note_tag
from services.notes.context import NotesContext
from services.notes.generation import reuse_by_fingerprint
from services.notes.kinds import kind_spec, preview_kinds
from shared.errors import AI_SESSION_NOT_FOUND, Conflict, InvalidInput, NotFound, Unavailable
from shared.observability import (
    NOTES_CACHE_REQUESTS,
    get_logger,
)
from shared.tasks import TASK_GENERATE

log = get_logger(__name__)

# A preview re-enqueues a generation when the one it waited on vanished without a result (its
# worker died, or the LLM failed); past this many it only waits, so a dead LLM cannot make one
# request spin.
MAX_ENQUEUES_PER_PREVIEW = 3
# The 202 answer's hint: how long a client should wait before asking again.
PENDING_RETRY_AFTER_S = 2
# The hit's counter child, bound once: `labels()` builds and checks its key at every call.
_CACHE_HITS = NOTES_CACHE_REQUESTS.labels(result="hit")


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
    # A hit read as its rendered body (preview_note(rendered=True)): payload stays None.
    hit: HitEntry | None = None

    @property
    def not_modified(self) -> bool:
        return self.matched_tag is not None

    @property
    def ready(self) -> bool:
        return self.payload is not None or self.not_modified or self.hit is not None

    @property
    def tag(self) -> str | None:
        """The note's entity tag (see services.notes.cache.note_tag), None while pending."""
        if self.hit is not None:
            return self.hit.tag
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
    kinds = preview_kinds()
    if kind not in kinds:
        raise InvalidInput(
            "unknown note kind", errors={"kind": [f"must be one of: {', '.join(kinds)}"]}
        )


def check_session_status(kind: str, status: str) -> None:
    """A kind written for one session status (a KB article from a resolved session, an
    escalation for an active one) is refused for the other: 409 naming the kind."""
    spec = kind_spec(kind)
    if spec is None or spec.session_status is None or spec.session_status == status:
        return
    raise Conflict(
        f"a {spec.label.lower()} is written for a {spec.session_status} session; this session "
        f"is {status}",
        errors={"kind": [f"{kind} needs a {spec.session_status} session"]},
    )


def first_look(
    ctx: NotesContext,
    *,
    kind: str,
    state: SessionState,
    if_none_match: list[str] | None = None,
    rendered: bool = False,
) -> tuple[PreviewOutcome | None, dict[str, Any] | None]:
    """The hit path of :func:`preview_note` for a session already read (and found in the
    caller's account): one Redis round trip, whatever the answer. (the outcome, None) when the
    caller's tag is current or, with `rendered`, the version's rendered body is stored; else
    (None, the stored payload or None), for preview_note to go on from (a rendered look whose
    version has no rendered body, stored before it existed, reads the payload in a second
    one). Raises for a kind this session's status does not take (see check_session_status)."""
    check_kind(kind)
    check_session_status(kind, state.status)
    version, sid = state.state_version, str(state.session_id)
    hit: HitEntry | None = None
    if if_none_match and rendered:
        matched, hit, found = ctx.cache.get_hit_unless_tagged(kind, sid, version, if_none_match)
    elif if_none_match:
        matched, found = ctx.cache.get_unless_tagged(kind, sid, version, if_none_match)
    else:
        matched = None
        hit = ctx.cache.get_hit(kind, sid, version) if rendered else None
        found = None if hit is not None else ctx.cache.get(kind, sid, version)
    if matched is None and hit is None:
        return None, found
    _CACHE_HITS.inc()
    outcome = PreviewOutcome(
        kind, state.session_id, version, state.ticket_ref, matched_tag=matched, hit=hit
    )
    return outcome, None


def preview_note(
    ctx: NotesContext,
    *,
    session_id: uuid.UUID,
    account_id: uuid.UUID,
    kind: str,
    wait_s: float,
    state: SessionState | None = None,
    if_none_match: list[str] | None = None,
    rendered: bool = False,
) -> PreviewOutcome:
    """The note for the session's current version, waiting up to `wait_s` for a generation.

    `from_cache` is True when this request started no generation. `state` is the session's
    state when the caller has just read it (the API reads it with the principal). When the
    current version's tag is in `if_none_match`, the outcome is `not_modified` and the note
    itself is not read. With `rendered`, a hit of the first look comes as the stored rendered
    body (`outcome.hit`, see services.notes.preview_body) and its payload is not parsed.
    """
    check_kind(kind)
    deadline = time.monotonic() + max(0.0, wait_s)
    enqueued = 0
    if state is None:
        state = session_state(session_id, account_id=account_id)
    if state is None or state.account_id != account_id:
        raise NotFound(AI_SESSION_NOT_FOUND)
    ready, found = first_look(
        ctx, kind=kind, state=state, if_none_match=if_none_match, rendered=rendered
    )
    if ready is not None:
        return ready
    version, ticket_ref = state.state_version, state.ticket_ref
    sid = str(session_id)
    looked = True
    while True:
        if not looked:
            found = ctx.cache.get(kind, sid, version)
        looked = False
        if found is not None:
            if not enqueued:
                NOTES_CACHE_REQUESTS.labels(result="hit").inc()
            return PreviewOutcome(kind, session_id, version, ticket_ref, found, not enqueued)

        loaded = load_bundle(session_id, kind)
        if loaded is None or loaded.session.account_id != account_id:
            raise NotFound(AI_SESSION_NOT_FOUND)
        # The repeatable-read snapshot may be newer than the first read: it is the one to serve.
        version, ticket_ref = loaded.state_version, loaded.session.ticket_ref
        found = ctx.cache.get(kind, sid, version) or reuse_by_fingerprint(
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
