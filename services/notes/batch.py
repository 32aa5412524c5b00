"""The batch lane: note generations nobody is waiting on go through the Message Batches API
(half the price of input and output tokens), never the live preview or the final note.

Today the lane carries backfills and re-evaluations (:func:`queue_backfill`, e.g. after a prompt
or model change: ``python -m app.cli backfill-notes --account ID``); any later note kind
nobody waits on is queued the same way.

1. :func:`queue_backfill` reads each session's bundle (one repeatable-read snapshot, as every
   generation does), builds the request with the shared, capability-checked builder and stores
   it as a ``queued`` row of ``llm_batch_items`` (one per session, version and fingerprint).
2. Beat's ``notes.batch_lane`` task (every ``BATCH_INTERVAL_S``) runs :func:`run_lane`:
   submit the queued rows as one batch (rows claimed with ``FOR UPDATE SKIP LOCKED``, so two
   beats never submit a row twice), then poll each submitted batch and, once it has ended,
   collect its results.
3. A succeeded result is validated like any note; it is stored through the same cache (under
   its version key and its fingerprint, so a later preview of the same bundle reuses it) and
   the ledger (``batch = true``, priced at the batch discount). An invalid answer or an errored
   request stores nothing in the cache and records the API's error.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update

from services.notes.bundle import load_bundle
from services.notes.context import NotesContext, now_iso
from services.notes.generation import usage_purpose
from services.notes.generator import (
    GENERATOR_ANTHROPIC,
    MAX_TOKENS,
    NOTE_KINDS,
    NoteValidationError,
    answer_schema,
    build_prompt,
    citations,
    render_markdown,
    validate_note,
)
from services.notes.kinds import kind_specs
from shared.db import db
from shared.llm import LLMResult, LLMUnavailable, LLMUsage
from shared.models import LLMBatchItem
from shared.models.exposed import PilotSession
from shared.observability import get_logger
from shared.usage import record_usage

log = get_logger(__name__)

# The API takes up to 100,000 requests per batch; ours stay far smaller.
MAX_BATCH_REQUESTS = 500


@dataclass(frozen=True)
class LaneRun:
    submitted: int
    collected: int
    errored: int


def queue_backfill(
    ctx: NotesContext,
    account_id: uuid.UUID,
    *,
    kind: str = NOTE_KINDS[0],
    session_ids: Iterable[uuid.UUID] | None = None,
    status: str | None = "resolved",
) -> int:
    """Queue a batch generation of ``kind`` for the account's sessions (those given, else every
    session with ``status``), skipping a (session, fingerprint) already queued or in flight.
    Returns how many were queued. Needs an online LLM client."""
    llm = ctx.generator.llm
    if not llm.online:
        raise LLMUnavailable("offline", detail="the batch lane needs ANTHROPIC_API_KEY")
    with db.session() as session:
        query = select(PilotSession.id).where(PilotSession.account_id == account_id)
        if session_ids is not None:
            query = query.where(PilotSession.id.in_(list(session_ids)))
        elif status is not None:
            query = query.where(PilotSession.status == status)
        ids = list(session.scalars(query.order_by(PilotSession.created_at)))
    queued = 0
    for session_id in ids:
        loaded = load_bundle(session_id, kind)
        if loaded is None or loaded.session.account_id != account_id:
            continue
        fingerprint = ctx.generator.fingerprint(loaded.bundle)
        system, messages = build_prompt(loaded.bundle)
        params = llm.build_request(system, messages, MAX_TOKENS)
        params["output_config"] = {"format": {"type": "json_schema", "schema": answer_schema(kind)}}
        with db.transaction() as session:
            pending = session.scalar(
                select(LLMBatchItem.id).where(
                    LLMBatchItem.ai_session_id == session_id,
                    LLMBatchItem.kind == kind,
                    LLMBatchItem.fingerprint == fingerprint,
                    LLMBatchItem.status.in_(("queued", "submitted")),
                )
            )
            if pending is not None:
                continue
            session.add(
                LLMBatchItem(
                    account_id=account_id,
                    ai_session_id=session_id,
                    purpose=usage_purpose(kind),
                    kind=kind,
                    state_version=loaded.state_version,
                    model=llm.model,
                    fingerprint=fingerprint,
                    params=params,
                )
            )
        queued += 1
    return queued


def queue_on_resolve(ctx: NotesContext, account_id: uuid.UUID, session_id: uuid.UUID) -> int:
    """Queue the kinds written from a resolved session that nobody waits on (the KB article)
    for the batch lane, when an LLM is configured; without one the preview writes them
    offline on demand. Returns how many were queued."""
    if not ctx.generator.llm.online:
        return 0
    queued = 0
    for spec in kind_specs().values():
        if spec.batch_on_resolve:
            queued += queue_backfill(
                ctx, account_id, kind=spec.name, session_ids=[session_id], status=None
            )
    return queued


def submit_queued(ctx: NotesContext, *, limit: int = MAX_BATCH_REQUESTS) -> int:
    """Submit up to ``limit`` queued items as one Message Batch. Returns how many were sent."""
    llm = ctx.generator.llm
    if not llm.online:
        return 0
    with db.transaction() as session:
        items = list(
            session.scalars(
                select(LLMBatchItem)
                .where(LLMBatchItem.status == "queued")
                .order_by(LLMBatchItem.created_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        )
        if not items:
            return 0
        # Submitted inside the transaction that holds the rows: if the API refuses, nothing
        # changes and the rows stay queued for the next run.
        batch_id = llm.submit_batch([(str(item.id), dict(item.params)) for item in items])
        now = datetime.now(UTC)
        for item in items:
            item.status = "submitted"
            item.provider_batch_id = batch_id
            item.submitted_at = now
    log.info("batch submitted", batch_id=batch_id, requests=len(items))
    return len(items)


def _store(ctx: NotesContext, item: LLMBatchItem, result: LLMResult) -> str | None:
    """Validate and store one succeeded result; the validation problem when it is unusable."""
    loaded = load_bundle(item.ai_session_id, item.kind) if item.ai_session_id else None
    if loaded is None:
        return "the session no longer exists"
    try:
        draft = validate_note(result.text, loaded.bundle, max_chars=ctx.generator.max_chars)
    except NoteValidationError as exc:
        return "invalid note: " + "; ".join(p.message for p in exc.problems)[:250]
    payload = {
        "markdown": render_markdown(draft),
        "citations": citations(draft, loaded.bundle),
        "generator": GENERATOR_ANTHROPIC,
        "model": result.model,
        "generated_at": now_iso(),
        "state_version": item.state_version,
        "usage": {
            "input_tokens": result.usage.input_tokens,
            "output_tokens": result.usage.output_tokens,
            "cache_creation_input_tokens": result.usage.cache_creation_input_tokens,
            "cache_read_input_tokens": result.usage.cache_read_input_tokens,
        },
        "fingerprint": item.fingerprint,
        "kind": item.kind,
        "batch": True,
    }
    ctx.cache.put(item.kind, str(item.ai_session_id), item.state_version, payload)
    return None


def collect(ctx: NotesContext) -> tuple[int, int]:
    """Poll every submitted batch; collect the ended ones. Returns (stored, errored)."""
    llm = ctx.generator.llm
    if not llm.online:
        return 0, 0
    with db.session() as session:
        batch_ids = list(
            session.scalars(
                select(LLMBatchItem.provider_batch_id)
                .where(LLMBatchItem.status == "submitted")
                .distinct()
            )
        )
    stored = errored = 0
    for batch_id in batch_ids:
        if batch_id is None or not llm.batch_ended(batch_id):
            continue
        for custom_id, outcome in llm.batch_results(batch_id):
            ok = _collect_one(ctx, batch_id, custom_id, outcome)
            if ok is None:
                continue
            stored, errored = (stored + 1, errored) if ok else (stored, errored + 1)
    return stored, errored


def _collect_one(
    ctx: NotesContext, batch_id: str, custom_id: str, outcome: LLMResult | LLMUnavailable
) -> bool | None:
    try:
        item_id = uuid.UUID(custom_id)
    except ValueError:
        return None
    with db.transaction() as session:
        item = session.scalars(
            select(LLMBatchItem)
            .where(
                LLMBatchItem.id == item_id,
                LLMBatchItem.provider_batch_id == batch_id,
                LLMBatchItem.status == "submitted",
            )
            .with_for_update(skip_locked=True)
        ).one_or_none()
        if item is None:  # collected already, or by another beat right now
            return None
        problem: str | None
        if isinstance(outcome, LLMResult):
            problem = _store(ctx, item, outcome)
            usage, model = outcome.usage, outcome.model or item.model
        else:
            problem, usage, model = outcome.error, LLMUsage(), item.model
        record_usage(
            session,
            account_id=item.account_id,
            ai_session_id=item.ai_session_id,
            purpose=item.purpose,
            generator=GENERATOR_ANTHROPIC,
            model=model,
            usage=usage,
            state_version=item.state_version,
            batch=True,
            error=problem,
        )
        session.execute(
            update(LLMBatchItem)
            .where(LLMBatchItem.id == item.id)
            .values(
                status="errored" if problem else "succeeded",
                error=problem[:300] if problem else None,
                completed_at=datetime.now(UTC),
            )
        )
    return problem is None


def run_lane(ctx: NotesContext) -> dict[str, Any]:
    """One beat tick: submit what is queued, collect what has ended."""
    submitted = submit_queued(ctx)
    stored, errored = collect(ctx)
    return {"submitted": submitted, "collected": stored, "errored": errored}
