"""FlowPilot chat turns: the LLM request, the offline assistant, and persisting a turn.

No Flask. A turn is two transactions with the LLM call between them, so a slow or failed call
holds no database connection or lock and never loses what the engineer typed:

1. store the user's message and bump the session (`chat_message`); read, in the same
   transaction, everything the request needs;
2. once the assistant has answered: store its reply with any `[SUGGEST_FIX]` block stripped,
   persist the proposed fix (superseding the active one), record the usage ledger row, and
   bump again (`assistant_reply`, or `fix_suggested` when a fix came with it).

Request layout: the stable `ASSISTANT_SYSTEM_PROMPT` is the first system block, marked for
prompt caching; the per-turn session context (facts, active fix, script runs, templates) is a
second system block without cache_control, after the cache breakpoint. Keeping the context
out of the conversation means the history sent is exactly what was said, and the cached
prefix stays byte-identical across turns and sessions.

Streaming runs the LLM call in a background thread that feeds a queue; the HTTP response reads
the queue. A client that disconnects stops reading, but the thread still finishes and stores
the turn. `wait_for_background_turns()` lets tests and shutdown hooks wait for those threads.
"""

from __future__ import annotations

import contextvars
import logging
import queue
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.pilot import sessions
from services.pilot.prompts import (
    ASSISTANT_SYSTEM_PROMPT,
    PROMPT_VERSION,
    format_context_block,
)
from services.pilot.suggest_fix import (
    ParsedReply,
    SuggestedFixProposal,
    SuggestFixStreamFilter,
    parse_suggest_fix,
)
from shared.errors import DomainError
from shared.events import write_transaction
from shared.llm import (
    GENERATOR_ANTHROPIC,
    LLMClient,
    LLMResult,
    LLMUnavailable,
    LLMUsage,
    fit_history,
)
from shared.models import (
    ChatMessage,
    SuggestedFix,
)
from shared.models.exposed import ScriptSessionRun, ScriptTemplateSummary
from shared.permissions import template_visibility
from shared.principal import Principal
from shared.usage import record_usage

log = logging.getLogger(__name__)

CAUSE_CHAT_MESSAGE = "chat_message"
CAUSE_ASSISTANT_REPLY = "assistant_reply"
CAUSE_FIX_SUGGESTED = "fix_suggested"
USAGE_PURPOSE = "chat"

CHAT_MAX_TOKENS = 2048
# Upper bound on the messages read for the history; fit_history then trims to the budget.
HISTORY_LOAD_LIMIT = 200
SCRIPT_RUNS_LIMIT = 20
TEMPLATES_LIMIT = 25
# A comment line on an idle stream, so proxies do not drop a long wait for the LLM.
STREAM_HEARTBEAT_S = 15.0

_CACHE_CONTROL = {"type": "ephemeral"}


# ── Values passed between the steps ────────────────────────────────────────


@dataclass(frozen=True)
class LLMRequest:
    system: list[dict[str, Any]]
    messages: list[dict[str, Any]]
    max_tokens: int
    offline_text: str


@dataclass(frozen=True)
class PreparedTurn:
    """The outcome of transaction 1: the stored user message and the request to send."""

    session_id: uuid.UUID
    account_id: uuid.UUID
    user_id: uuid.UUID
    user_message: ChatMessage
    state_version: int
    request: LLMRequest


@dataclass(frozen=True)
class TurnResult:
    user_message: ChatMessage
    assistant_message: ChatMessage
    suggested_fix: SuggestedFix | None
    state_version: int
    generator: str
    model: str


class TurnUnavailable(Exception):
    """The LLM could not answer; the user's message is stored (at `prepared.state_version`)."""

    def __init__(self, prepared: PreparedTurn, error: LLMUnavailable) -> None:
        super().__init__(str(error))
        self.prepared = prepared
        self.error = error


# ── Reading the session for a request ──────────────────────────────────────


def _fix_context(fix: SuggestedFix | None) -> dict[str, Any] | None:
    if fix is None:
        return None
    return {
        "title": fix.title,
        "summary": fix.summary,
        "steps": list(fix.steps or []),
        "script": fix.script,
        "confidence": fix.confidence,
        "template_id": str(fix.template_id) if fix.template_id else None,
        "status": f"decided: {fix.decision}" if fix.decision else "proposed, no decision yet",
    }


def script_runs(
    session: Session, account_id: uuid.UUID, session_id: uuid.UUID
) -> list[dict[str, Any]]:
    """Scripts generated for the session, oldest first, with their parameters as stored:
    the scripts service replaced every sensitive value by the redaction marker before
    storing. The generated script text itself is not sent."""
    rows = session.scalars(
        select(ScriptSessionRun)
        .where(
            ScriptSessionRun.ai_session_id == session_id,
            ScriptSessionRun.account_id == account_id,
        )
        .order_by(ScriptSessionRun.created_at.desc(), ScriptSessionRun.id.desc())
        .limit(SCRIPT_RUNS_LIMIT)
    ).all()
    return [
        {
            "script_name": run.template_name,
            "status": "generated",
            "ran_at": run.created_at.isoformat(),
            "parameters": dict(run.parameters_used or {}),
        }
        for run in reversed(rows)
    ]


def fix_templates(session: Session, account_id: uuid.UUID) -> list[dict[str, Any]]:
    """Templates the account can see that a fix may name, most used first."""
    templates = ScriptTemplateSummary
    rows = session.scalars(
        select(templates)
        .where(
            templates.is_active.is_(True),
            template_visibility(sessions.account_principal(account_id), templates),
        )
        .order_by(templates.usage_count.desc(), templates.name, templates.id)
        .limit(TEMPLATES_LIMIT)
    ).all()
    return [{"id": str(t.id), "name": t.name, "description": t.description} for t in rows]


def history(session: Session, account_id: uuid.UUID, session_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(ChatMessage)
        .where(ChatMessage.session_id == session_id, ChatMessage.account_id == account_id)
        .order_by(ChatMessage.created_at.desc(), ChatMessage.id.desc())
        .limit(HISTORY_LOAD_LIMIT)
    ).all()
    return [{"role": m.role, "content": m.content} for m in reversed(rows)]


# ── The offline assistant ──────────────────────────────────────────────────


def _bullets(items: list[str], limit: int = 8) -> list[str]:
    shown = [f"- {' '.join(item.split())}" for item in items[:limit]]
    if len(items) > limit:
        shown.append(f"- ... and {len(items) - limit} more")
    return shown


def next_step(grouped: dict[str, list[str]], active_fix_title: str | None) -> str:
    """A next diagnostic step, from which kinds of fact the session has so far."""
    if not any(grouped.values()):
        return (
            "Record what the user reports as a symptom fact, then what you have already "
            "checked as observations, so the diagnosis starts from evidence."
        )
    if active_fix_title and grouped.get("confirmed"):
        return (
            f"Carry out the active fix ({active_fix_title}), verify it with the user, record "
            "the result as a confirmed fact, then resolve the session."
        )
    if grouped.get("confirmed"):
        return (
            "Apply a fix that addresses the confirmed cause, verify it with the user, record "
            "the verification as a confirmed fact, then resolve the session."
        )
    if grouped.get("observation"):
        return (
            "Test the most likely cause behind your observations with a read-only check, and "
            "record the result as confirmed or ruled_out."
        )
    if grouped.get("symptom"):
        return (
            "Gather evidence for the symptom: reproduce it, check the relevant event logs and "
            "service states on the affected machine, and record what you see as observations."
        )
    return "Record the symptom the user reports so the diagnosis has a starting point."


def offline_answer(grouped: dict[str, list[str]], active_fix_title: str | None) -> str:
    """The deterministic answer given when no LLM is configured: a summary of the recorded
    facts and a next step, saying plainly that it comes from the facts only."""
    lines = [
        "The AI assistant is offline (no LLM is configured), so this answer is built only "
        "from the facts recorded in this session."
    ]
    sections = (
        ("symptom", "Symptoms"),
        ("confirmed", "Confirmed"),
        ("ruled_out", "Ruled out"),
        ("observation", "Observations"),
        ("environment", "Environment"),
        ("root_cause", "Root cause"),
        ("resolution", "Resolution"),
    )
    for kind, heading in sections:
        items = grouped.get(kind) or []
        if items:
            lines += ["", f"{heading}:", *_bullets(items)]
    if not any(grouped.values()):
        lines += ["", "No facts are recorded yet."]
    if active_fix_title:
        lines += ["", f"Active fix: {active_fix_title}"]
    lines += ["", f"Suggested next step: {next_step(grouped, active_fix_title)}"]
    if any(grouped.values()) and not grouped.get("environment"):
        lines.append(
            "Also record the environment (OS and client versions, network, tenant) as an "
            "environment fact."
        )
    return "\n".join(lines)


# ── Building the request ───────────────────────────────────────────────────


def build_request(
    session: Session, *, account_id: uuid.UUID, session_id: uuid.UUID, history_budget: int
) -> LLMRequest:
    facts = sessions.list_facts(session, sessions.account_principal(account_id), session_id)
    grouped = sessions.facts_by_kind(facts)
    fix = sessions.active_fix(session, account_id, session_id)
    context = format_context_block(
        grouped,
        _fix_context(fix),
        script_runs(session, account_id, session_id),
        fix_templates(session, account_id),
    )
    system: list[dict[str, Any]] = [
        {"type": "text", "text": ASSISTANT_SYSTEM_PROMPT, "cache_control": dict(_CACHE_CONTROL)},
        {"type": "text", "text": context},
    ]
    return LLMRequest(
        system=system,
        messages=fit_history(history(session, account_id, session_id), history_budget),
        max_tokens=CHAT_MAX_TOKENS,
        offline_text=offline_answer(grouped, fix.title if fix else None),
    )


# ── Transaction 1: the user's message ──────────────────────────────────────


def start_turn(
    principal: Principal, session_id: uuid.UUID, content: str, *, history_budget: int
) -> PreparedTurn:
    with write_transaction() as session:
        sessions.require_writer(session, principal, session_id)
        version = sessions.bump(session, principal, session_id, CAUSE_CHAT_MESSAGE)
        message = ChatMessage(
            session_id=session_id,
            account_id=principal.account_id,
            role="user",
            content=content,
            created_by=principal.id,
        )
        session.add(message)
        session.flush()
        request = build_request(
            session,
            account_id=principal.account_id,
            session_id=session_id,
            history_budget=history_budget,
        )
    return PreparedTurn(
        session_id=session_id,
        account_id=principal.account_id,
        user_id=principal.id,
        user_message=message,
        state_version=version,
        request=request,
    )


# ── Transaction 2: the assistant's reply ───────────────────────────────────


def _fix_values(
    session: Session, account_id: uuid.UUID, proposal: SuggestedFixProposal
) -> dict[str, Any]:
    return {
        "title": proposal.title,
        "summary": proposal.summary,
        "steps": list(proposal.steps),
        "script": proposal.script,
        # Kept only when it names a template the session's account can see.
        "template_id": sessions.visible_template_id(session, account_id, proposal.template_id),
        "confidence": proposal.confidence,
    }


def _reply_text(parsed: ParsedReply) -> str:
    if parsed.text:
        return parsed.text
    if parsed.fix is not None:
        return f"I've proposed a fix: {parsed.fix.title}."
    return "(The assistant returned no text.)"


def _record_usage(
    session: Session, prepared: PreparedTurn, result: LLMResult, version: int | None
) -> None:
    record_usage(
        session,
        account_id=prepared.account_id,
        ai_session_id=prepared.session_id,
        purpose=USAGE_PURPOSE,
        generator=result.generator,
        model=result.model,
        usage=result.usage,
        latency_ms=result.latency_ms,
        state_version=version,
    )


def record_refusal(prepared: PreparedTurn, error: LLMUnavailable, model: str) -> None:
    """A call the API refused for good (4xx) still reaches the ledger, with the API's error;
    transient failures (the SDK retried them) and local refusals (nothing was sent) do not."""
    if error.retryable or error.reason == "unsupported_request" or error.status_code is None:
        return
    with write_transaction() as session:
        record_usage(
            session,
            account_id=prepared.account_id,
            ai_session_id=prepared.session_id,
            purpose=USAGE_PURPOSE,
            generator=GENERATOR_ANTHROPIC,
            model=model,
            usage=LLMUsage(),
            state_version=None,
            fallback_reason="permanent_error",
            error=error.error,
        )


def finish_turn(prepared: PreparedTurn, result: LLMResult) -> TurnResult:
    parsed = parse_suggest_fix(result.text)
    principal = sessions.account_principal(prepared.account_id)
    cause = CAUSE_FIX_SUGGESTED if parsed.fix is not None else CAUSE_ASSISTANT_REPLY
    try:
        with write_transaction() as session:
            version = sessions.bump(session, principal, prepared.session_id, cause)
            reply = ChatMessage(
                session_id=prepared.session_id,
                account_id=prepared.account_id,
                role="assistant",
                content=_reply_text(parsed),
                generator=result.generator,
                model=result.model,
            )
            session.add(reply)
            session.flush()
            fix = None
            if parsed.fix is not None:
                fix = sessions.persist_fix(
                    session,
                    account_id=prepared.account_id,
                    session_id=prepared.session_id,
                    values=_fix_values(session, prepared.account_id, parsed.fix),
                    source_message_id=reply.id,
                )
            _record_usage(session, prepared, result, version)
    except DomainError:
        # The session was resolved while the LLM was answering: the reply cannot be stored,
        # but the call was made (and billed), so the ledger still counts it.
        with write_transaction() as session:
            _record_usage(session, prepared, result, None)
        raise
    log.info(
        "pilot.chat_turn",
        extra={
            "session_id": str(prepared.session_id),
            "state_version": version,
            "generator": result.generator,
            "prompt_version": PROMPT_VERSION,
            "fix_suggested": fix is not None,
            "malformed_fix_blocks": parsed.malformed_blocks,
        },
    )
    return TurnResult(
        user_message=prepared.user_message,
        assistant_message=reply,
        suggested_fix=fix,
        state_version=version,
        generator=result.generator,
        model=result.model,
    )


# ── A whole turn ───────────────────────────────────────────────────────────


def _offline(prepared: PreparedTurn) -> Callable[[], str]:
    text = prepared.request.offline_text
    return lambda: text


def complete_turn(llm: LLMClient, prepared: PreparedTurn) -> TurnResult:
    """Ask the LLM for the whole answer and store it. Raises TurnUnavailable when the LLM
    cannot answer (the user's message stays stored)."""
    try:
        result = llm.complete(
            system=prepared.request.system,
            messages=prepared.request.messages,
            max_tokens=prepared.request.max_tokens,
            offline=_offline(prepared),
        )
    except LLMUnavailable as exc:
        record_refusal(prepared, exc, llm.model)
        raise TurnUnavailable(prepared, exc) from exc
    return finish_turn(prepared, result)


def run_turn(
    llm: LLMClient,
    principal: Principal,
    session_id: uuid.UUID,
    content: str,
    *,
    history_budget: int,
) -> TurnResult:
    """One chat turn, answered in full: both transactions and the call between them."""
    prepared = start_turn(principal, session_id, content, history_budget=history_budget)
    return complete_turn(llm, prepared)


# ── Streaming ──────────────────────────────────────────────────────────────

StreamEvent = tuple[str, dict[str, Any] | None]

_background: set[threading.Thread] = set()
_background_lock = threading.Lock()

# A streamed turn's thread outlives its request on purpose (the turn is stored even if the
# client leaves), so each holds a slot of a per-process bound: without one, a client opening
# and dropping streams could start threads (each holding an LLM call) without limit.
DEFAULT_STREAM_SLOTS = 32
STREAM_RETRY_AFTER_S = 5


class StreamsBusy(DomainError):
    """429: every streamed-turn slot of this process is taken; nothing was stored."""

    status_code = 429

    def __init__(self) -> None:
        super().__init__("too many streamed chat turns in progress; try again shortly")
        self.retry_after = STREAM_RETRY_AFTER_S


class _StreamSlots:
    def __init__(self, size: int) -> None:
        self.configure(size)

    def configure(self, size: int) -> None:
        if size < 1:
            raise ValueError("CHAT_STREAM_CONCURRENCY must be at least 1")
        self.size = size
        self._semaphore = threading.BoundedSemaphore(size)

    def reserve(self) -> StreamSlot:
        semaphore = self._semaphore
        if not semaphore.acquire(blocking=False):
            raise StreamsBusy()
        return StreamSlot(semaphore)


class StreamSlot:
    """One reserved streaming slot; released exactly once."""

    def __init__(self, semaphore: threading.BoundedSemaphore) -> None:
        self._semaphore: threading.BoundedSemaphore | None = semaphore
        self._lock = threading.Lock()

    def release(self) -> None:
        with self._lock:
            semaphore, self._semaphore = self._semaphore, None
        if semaphore is not None:
            semaphore.release()


STREAM_SLOTS = _StreamSlots(DEFAULT_STREAM_SLOTS)


def configure_streams(size: int) -> None:
    STREAM_SLOTS.configure(size)


def reserve_stream() -> StreamSlot:
    """A slot for one streamed turn, or :class:`StreamsBusy` (before anything is stored)."""
    return STREAM_SLOTS.reserve()


def wait_for_background_turns(timeout_s: float) -> bool:
    """Wait until every streamed turn's background thread has finished (stored its turn or
    given up). Returns False if some were still running after `timeout_s`."""
    with _background_lock:
        threads = list(_background)
    for thread in threads:
        thread.join(timeout_s)
    return not any(thread.is_alive() for thread in threads)


def _run_stream(
    llm: LLMClient,
    prepared: PreparedTurn,
    out: queue.Queue[StreamEvent],
    on_done: Callable[[TurnResult], dict[str, Any]],
    on_unavailable: Callable[[PreparedTurn, LLMUnavailable], dict[str, Any]],
    slot: StreamSlot | None = None,
) -> None:
    terminal: StreamEvent | None = None
    try:
        result: LLMResult | None = None
        visible = SuggestFixStreamFilter()
        for item in llm.stream(
            system=prepared.request.system,
            messages=prepared.request.messages,
            max_tokens=prepared.request.max_tokens,
            offline=_offline(prepared),
        ):
            if isinstance(item, LLMResult):
                result = item
                continue
            text = visible.feed(item)
            if text:
                out.put(("delta", {"text": text}))
        rest = visible.finish()
        if rest:
            out.put(("delta", {"text": rest}))
        if result is None:  # pragma: no cover - LLMClient.stream always ends with a result
            raise LLMUnavailable("api_error", detail="stream ended without a result")
        terminal = ("done", on_done(finish_turn(prepared, result)))
    except LLMUnavailable as exc:
        record_refusal(prepared, exc, llm.model)
        terminal = ("error", on_unavailable(prepared, exc))
    except DomainError as exc:
        terminal = ("error", {"code": exc.status_code, "message": exc.message})
    except Exception:
        log.exception("pilot.chat_stream_failed", extra={"session_id": str(prepared.session_id)})
        terminal = (
            "error",
            {"code": 500, "message": "The assistant's answer could not be stored."},
        )
    finally:
        out.put(terminal or ("error", {"code": 500, "message": "The stream ended unexpectedly."}))
        with _background_lock:
            _background.discard(threading.current_thread())
        if slot is not None:
            slot.release()


def stream_turn(
    llm: LLMClient,
    prepared: PreparedTurn,
    *,
    on_done: Callable[[TurnResult], dict[str, Any]],
    on_unavailable: Callable[[PreparedTurn, LLMUnavailable], dict[str, Any]],
    heartbeat_s: float = STREAM_HEARTBEAT_S,
    slot: StreamSlot | None = None,
) -> Iterator[StreamEvent]:
    """Start the LLM stream in a background thread and return the events it produces:
    ("delta", {"text"}) for visible text (never any part of a `[SUGGEST_FIX]` block),
    ("ping", None) while nothing arrives, then one ("done", body) or ("error", body).

    The thread runs in a copy of the caller's context (request id for the outbox events)
    and finishes the turn whether or not anyone reads the events; it releases `slot` (from
    :func:`reserve_stream`) when it ends."""
    out: queue.Queue[StreamEvent] = queue.Queue()
    context = contextvars.copy_context()
    thread = threading.Thread(
        target=context.run,
        args=(_run_stream, llm, prepared, out, on_done, on_unavailable, slot),
        name=f"pilot-chat-{prepared.session_id}",
        # Not a daemon: a process shutting down waits for the turn to be stored.
        daemon=False,
    )
    with _background_lock:
        _background.add(thread)
    try:
        thread.start()
    except BaseException:
        with _background_lock:
            _background.discard(thread)
        if slot is not None:
            slot.release()
        raise

    def events() -> Iterator[StreamEvent]:
        while True:
            try:
                kind, data = out.get(timeout=heartbeat_s)
            except queue.Empty:
                yield ("ping", None)
                continue
            yield (kind, data)
            if kind in ("done", "error"):
                return

    return events()
