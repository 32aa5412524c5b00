"""A chat turn's two transactions and the LLM call between them: the user's message (and the
request read with it), then the assistant's reply, its fix and the usage ledger row."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from services.pilot import fixes, sessions
from services.pilot.chat.request import LLMRequest, build_request
from services.pilot.prompts import (
    PROMPT_VERSION,
)
from services.pilot.suggest_fix import (
    ParsedReply,
    SuggestedFixProposal,
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
)
from shared.models import (
    ChatMessage,
    SuggestedFix,
)
from shared.principal import Principal
from shared.usage import record_call, record_usage

log = logging.getLogger(__name__)

CAUSE_CHAT_MESSAGE = "chat_message"
CAUSE_ASSISTANT_REPLY = "assistant_reply"
CAUSE_FIX_SUGGESTED = "fix_suggested"
USAGE_PURPOSE = "chat"


# ── Values passed between the steps ────────────────────────────────────────


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
        "template_id": fixes.visible_template_id(session, account_id, proposal.template_id),
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
    record_call(
        session,
        result,
        account_id=prepared.account_id,
        ai_session_id=prepared.session_id,
        purpose=USAGE_PURPOSE,
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
    principal = fixes.account_principal(prepared.account_id)
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
                fix = fixes.persist_fix(
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
