"""FlowPilot HTTP API (/api/v1/ai-sessions): sessions, facts, chat, suggested fixes, resolve.

Thin views: validate with a schema, call one domain function (services.pilot.sessions or
services.pilot.chat), serialise. Every route needs a bearer token and sees only the caller's
account; every write answers with the session's new `state_version`.

Deleting a fact answers 200 with `{id, deleted: true, state_version}` rather than 204, because
every write response carries the version it produced.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

from flask import Response, current_app, request
from marshmallow import RAISE
from sqlalchemy import inspect

from services.pilot import chat, draft_params, drafts, facts, fixes, sessions, similar
from services.pilot.schemas import (
    ChatMessageSchema,
    ChatTurnResponseSchema,
    ChatUnavailableSchema,
    DecisionRequestSchema,
    DecisionResponseSchema,
    FactCreateSchema,
    FactDeleteResponseSchema,
    FactSchema,
    FactUpdateSchema,
    FactWriteResponseSchema,
    MessageCreateSchema,
    MessageQueryArgsSchema,
    ResolveRequestSchema,
    ResolveResponseSchema,
    SessionCreateSchema,
    SessionQueryArgsSchema,
    SessionResponseSchema,
    SessionUpdateSchema,
    SimilarQueryArgsSchema,
    SimilarSessionSchema,
    SuggestedFixSchema,
)
from shared.auth import current_principal
from shared.config import Settings
from shared.db import db
from shared.endpoints import (
    ApiBlueprint,
    BearerView,
    paging,
    read_as_caller,
    read_page,
    write_as_caller,
)
from shared.events import write_transaction
from shared.llm import LLMClient, LLMUnavailable
from shared.usage import budget_status

blp = ApiBlueprint(
    "pilot",
    __name__,
    url_prefix="/api/v1/ai-sessions",
    description="FlowPilot AI troubleshooting sessions",
)

SSE_MIMETYPE = "text/event-stream"

_llm_lock = threading.Lock()


# The errors each route can answer besides 422, documented in the spec with the error schema.
_READ = (401, 404)
_WRITE = (401, 403, 404, 409)  # viewers read only; a resolved session is read-only
ERROR_RESPONSES: dict[str, dict[str, tuple[int, ...]]] = {
    "/api/v1/ai-sessions": {"get": (401,), "post": (401, 403)},
    "/api/v1/ai-sessions/{session_id}": {"get": _READ, "patch": _WRITE},
    "/api/v1/ai-sessions/{session_id}/resolve": {"post": _WRITE},
    "/api/v1/ai-sessions/{session_id}/reopen": {"post": _WRITE},
    "/api/v1/ai-sessions/{session_id}/facts": {"get": _READ, "post": _WRITE},
    "/api/v1/ai-sessions/{session_id}/facts/{fact_id}": {"patch": _WRITE, "delete": _WRITE},
    "/api/v1/ai-sessions/{session_id}/messages": {"get": _READ, "post": _WRITE},
    "/api/v1/ai-sessions/{session_id}/suggested-fixes": {"get": _READ},
    "/api/v1/ai-sessions/{session_id}/suggested-fixes/active": {"get": _READ},
    "/api/v1/ai-sessions/{session_id}/suggested-fixes/{fix_id}/decision": {"post": _WRITE},
    "/api/v1/ai-sessions/{session_id}/similar": {"get": _READ},
    "/api/v1/usage": {"get": (401, 403)},
    "/api/v1/usage/budget": {"put": (401, 403)},
    "/api/v1/ai-sessions/{session_id}/usage": {"get": (401, 403, 404)},
}


def blueprints() -> list[ApiBlueprint]:
    from services.pilot import usage_api

    return [blp, *usage_api.blueprints()]


# ── Helpers ───────────────────────────────────────────────────────────────


def _settings() -> Settings:
    settings: Settings = current_app.config["SETTINGS"]
    return settings


def _llm() -> LLMClient:
    """One LLM client per app, built from that app's settings on first use (the SDK client
    pools its connections and is thread-safe)."""
    settings = _settings()
    with _llm_lock:
        cached = current_app.extensions.get("pilot_llm")
        if cached is None or cached[0] is not settings:
            cached = (settings, LLMClient.from_settings(settings))
            current_app.extensions["pilot_llm"] = cached
        client: LLMClient = cached[1]
        return client


def _columns(obj: Any, **extra: Any) -> dict[str, Any]:
    # Deferred columns (a session's stored search document) are never part of an answer.
    data = {
        attr.key: getattr(obj, attr.key)
        for attr in inspect(obj).mapper.column_attrs
        if not attr.deferred
    }
    data.update(extra)
    return data


def _versioned(result: sessions.Versioned) -> dict[str, Any]:
    return _columns(result.obj, state_version=result.state_version)


_turn_schema = ChatTurnResponseSchema()
_message_schema = ChatMessageSchema()


def _turn_body(turn: chat.TurnResult) -> dict[str, Any]:
    body: dict[str, Any] = _turn_schema.dump(turn)
    return body


def _unavailable_body(prepared: chat.PreparedTurn, error: LLMUnavailable) -> dict[str, Any]:
    if error.retryable:
        message = (
            "The assistant is unavailable right now; your message was saved. Try again in a moment."
        )
    else:
        message = (
            "The assistant is unavailable: the AI provider refused the request "
            f"({error.reason}). Your message was saved; contact your administrator."
        )
    return {
        "code": 503,
        "status": "Service Unavailable",
        "message": message,
        "reason": error.reason,
        "retryable": error.retryable,
        "user_message": _message_schema.dump(prepared.user_message),
        "state_version": prepared.state_version,
    }


def _over_budget(account_id: uuid.UUID) -> Any:
    """The 402 answer when the account's monthly LLM budget is spent (nothing is stored)."""
    with db.transaction() as session:
        status = budget_status(session, account_id)
    if not status.exceeded:
        return None
    assert status.monthly_usd is not None
    response = current_app.json.response(
        {
            "code": 402,
            "status": "Payment Required",
            "message": (
                f"The account's monthly LLM budget (monthly_budget_usd = "
                f"{status.monthly_usd:.2f} USD) is spent for {status.month}; the assistant "
                "answers again next month or once an owner raises the budget."
            ),
            "errors": {"budget": ["monthly_budget_usd exceeded"]},
            "budget": status.body(),
        }
    )
    response.status_code = 402
    return response


def _wants_stream() -> bool:
    best = request.accept_mimetypes.best_match(["application/json", SSE_MIMETYPE])
    return best == SSE_MIMETYPE


def _sse(kind: str, data: dict[str, Any] | None) -> str:
    if kind == "ping":
        return ": ping\n\n"
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


# ── Sessions ──────────────────────────────────────────────────────────────


@blp.route("")
class SessionsView(BearerView):
    @blp.list_endpoint(SessionResponseSchema, args=SessionQueryArgsSchema, unknown=RAISE)
    def get(self, args: dict[str, Any]) -> Any:
        """Your account's sessions, newest first. `X-Total-Count` gives the unpaged total."""
        return read_page(
            sessions.list_sessions,
            current_principal(),
            status=args.get("status"),
            search=args.get("search"),
            ticket_ref=args.get("ticket_ref"),
            **paging(args),
        )

    @blp.endpoint(201, SessionResponseSchema, args=SessionCreateSchema)
    def post(self, data: dict[str, Any]) -> Any:
        """Open a troubleshooting session (engineers and owners). Its state_version starts at 1."""
        result = write_as_caller(
            sessions.create_session,
            title=data["title"],
            ticket_ref=data.get("ticket_ref"),
            problem=data.get("problem"),
        )
        return _versioned(result)


@blp.route("/<uuid:session_id>")
class SessionView(BearerView):
    @blp.endpoint(200, SessionResponseSchema)
    def get(self, session_id: uuid.UUID) -> Any:
        """One session."""
        return read_as_caller(sessions.get_session, session_id)

    @blp.endpoint(200, SessionResponseSchema, args=SessionUpdateSchema)
    def patch(self, data: dict[str, Any], session_id: uuid.UUID) -> Any:
        """Change the title, ticket reference or problem statement. 409 while the session is
        resolved."""
        result = write_as_caller(sessions.update_session, session_id, data)
        return _versioned(result)


@blp.route("/<uuid:session_id>/resolve")
class ResolveView(BearerView):
    @blp.endpoint(202, ResolveResponseSchema, args=ResolveRequestSchema)
    def post(self, data: dict[str, Any], session_id: uuid.UUID) -> Any:
        """Resolve the session at its next state_version; the notes service writes the note
        and delivers it (hence 202). `resolution` is recorded as a `resolution` fact in the
        same write. 422 when nothing says what fixed it (no `resolution` fact, no fix decided
        other than dismissed) unless `force: true`, and when the account has a ticketing
        integration and there is no `ticket_ref`. Resolving twice is a 409; the session is
        read-only until reopened."""
        result = write_as_caller(
            sessions.resolve_session,
            session_id,
            ticket_ref=data.get("ticket_ref"),
            resolution=data.get("resolution"),
            force=bool(data.get("force")),
        )
        # ResolveResponseSchema answers the id, status, versions and ticket_ref of it.
        return _versioned(result)


@blp.route("/<uuid:session_id>/reopen")
class ReopenView(BearerView):
    @blp.endpoint(200, SessionResponseSchema)
    def post(self, session_id: uuid.UUID) -> Any:
        """Make a resolved session writable again. 409 if it is not resolved."""
        result = write_as_caller(sessions.reopen_session, session_id)
        return _versioned(result)


# ── Facts ─────────────────────────────────────────────────────────────────


@blp.route("/<uuid:session_id>/facts")
class FactsView(BearerView):
    @blp.endpoint(200, FactSchema(many=True))
    def get(self, session_id: uuid.UUID) -> Any:
        """The session's facts, oldest first."""
        return read_as_caller(facts.list_facts, session_id)

    @blp.endpoint(201, FactWriteResponseSchema, args=FactCreateSchema)
    def post(self, data: dict[str, Any], session_id: uuid.UUID) -> Any:
        """Record a fact: text (trimmed, 1..4000 characters) and kind (default observation)."""
        result = write_as_caller(facts.add_fact, session_id, text=data["text"], kind=data["kind"])
        return _versioned(result)


@blp.route("/<uuid:session_id>/facts/<uuid:fact_id>")
class FactView(BearerView):
    @blp.endpoint(200, FactWriteResponseSchema, args=FactUpdateSchema)
    def patch(self, data: dict[str, Any], session_id: uuid.UUID, fact_id: uuid.UUID) -> Any:
        """Change a fact's text or kind."""
        result = write_as_caller(facts.update_fact, session_id, fact_id, data)
        return _versioned(result)

    @blp.endpoint(200, FactDeleteResponseSchema)
    def delete(self, session_id: uuid.UUID, fact_id: uuid.UUID) -> Any:
        """Delete a fact. Answers 200 (not 204) so the new state_version can be returned."""
        result = write_as_caller(facts.delete_fact, session_id, fact_id)
        return {"id": fact_id, "deleted": True, "state_version": result.state_version}


# ── Chat ──────────────────────────────────────────────────────────────────


@blp.route("/<uuid:session_id>/messages")
class MessagesView(BearerView):
    @blp.list_endpoint(ChatMessageSchema, args=MessageQueryArgsSchema)
    def get(self, args: dict[str, Any], session_id: uuid.UUID) -> Any:
        """The conversation, oldest first. `X-Total-Count` gives the unpaged total."""
        return read_page(chat.list_messages, current_principal(), session_id, **paging(args))

    @blp.endpoint(201, ChatTurnResponseSchema, args=MessageCreateSchema)
    @blp.alt_response(
        503,
        schema=ChatUnavailableSchema,
        description="The LLM could not answer (after the SDK's retries); the message is stored.",
    )
    @blp.alt_response(
        200,
        content_type=SSE_MIMETYPE,
        schema={"type": "string", "format": "event-stream"},
        success=True,
        description=(
            'With `Accept: text/event-stream`: `event: delta` / `data: {"text": ...}` for '
            "each piece of the visible answer (never a [SUGGEST_FIX] block), then one "
            "`event: done` carrying the 201 body, or `event: error` carrying the 503 body."
        ),
    )
    def post(self, data: dict[str, Any], session_id: uuid.UUID) -> Any:
        """Send a message and get the assistant's answer (and any fix it proposes).

        The user's message is stored before the assistant is asked, so it survives an LLM
        failure. A streamed turn is stored even if the client disconnects mid-stream."""
        llm = _llm()
        if llm.online:
            over = _over_budget(current_principal().account_id)
            if over is not None:
                return over
        # A stream's slot is reserved before the message is stored: a refusal writes nothing.
        slot = chat.reserve_stream() if _wants_stream() else None
        try:
            prepared = chat.start_turn(
                current_principal(),
                session_id,
                data["content"],
                history_budget=_settings().CHAT_HISTORY_TOKEN_BUDGET,
            )
        except BaseException:
            if slot is not None:
                slot.release()
            raise
        if slot is not None:
            events = chat.stream_turn(
                llm, prepared, on_done=_turn_body, on_unavailable=_unavailable_body, slot=slot
            )

            def body() -> Iterator[str]:
                for kind, payload in events:
                    yield _sse(kind, payload)

            return Response(
                body(),
                status=200,
                mimetype=SSE_MIMETYPE,
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        try:
            result = chat.complete_turn(llm, prepared)
        except chat.TurnUnavailable as exc:
            response = current_app.json.response(_unavailable_body(exc.prepared, exc.error))
            response.status_code = 503
            if exc.error.retryable:
                response.headers["Retry-After"] = "5"
            return response
        return result


# ── Suggested fixes ───────────────────────────────────────────────────────


@blp.route("/<uuid:session_id>/similar")
class SimilarView(BearerView):
    @blp.list_endpoint(SimilarSessionSchema, args=SimilarQueryArgsSchema, unknown=RAISE)
    def get(self, args: dict[str, Any], session_id: uuid.UUID) -> Any:
        """Up to five resolved sessions of your account whose problem and facts are closest
        to this one's (full-text rank plus trigram similarity), each with its root cause,
        resolution and the templates used."""
        found = read_as_caller(similar.similar_sessions, session_id, limit=args["limit"])
        return [item.as_dict() for item in found]


@blp.route("/<uuid:session_id>/suggested-fixes")
class FixesView(BearerView):
    @blp.endpoint(200, SuggestedFixSchema(many=True))
    def get(self, session_id: uuid.UUID) -> Any:
        """Every fix proposed in the session, newest first, with supersession and decision."""
        return read_as_caller(fixes.list_fixes, session_id)


@blp.route("/<uuid:session_id>/suggested-fixes/active")
class ActiveFixView(BearerView):
    @blp.endpoint(200, SuggestedFixSchema)
    def get(self, session_id: uuid.UUID) -> Any:
        """The active (not superseded) fix, or 404 when there is none."""
        return read_as_caller(fixes.get_active_fix, session_id)


@blp.route("/<uuid:session_id>/suggested-fixes/<uuid:fix_id>/decision")
class DecisionView(BearerView):
    @blp.endpoint(200, DecisionResponseSchema, args=DecisionRequestSchema)
    def post(self, data: dict[str, Any], session_id: uuid.UUID, fix_id: uuid.UUID) -> Any:
        """Record what the engineer does with the active fix: one_off, draft_template,
        build_template or dismissed (which supersedes it). 409 on a superseded fix or one
        already decided."""
        principal = current_principal()
        proposal = None
        if data["decision"] in drafts.TEMPLATE_DECISIONS:
            # The LLM is asked before the transaction, so no row stays locked while it answers.
            proposal = draft_params.propose_for_fix(_llm(), principal, session_id, fix_id)
        with write_transaction() as session:
            result = sessions.decide_fix(session, principal, session_id, fix_id, data["decision"])
            draft = drafts.draft_from_fix(
                session, principal, result.obj, data["decision"], proposal
            )
            body = _versioned(result)
            body["draft_template"] = draft.as_dict() if draft is not None else None
        return body
