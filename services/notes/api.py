"""Notes HTTP API: previews, the final note of a resolved session, redelivery, and the account's
ticketing webhook. Thin views over `preview`, `materialise` and `integrations`."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Response, current_app, g, jsonify, request
from flask.views import MethodView

from services.notes import deliveries, final_note, integrations, preview
from services.notes.adapters import describe_kinds
from services.notes.bundle import principal_and_session_state
from services.notes.context import NotesContext, context_for
from services.notes.preview_body import hit_body
from services.notes.preview_lane import PREVIEW_CACHE_CONTROL, if_none_match_tags
from services.notes.schemas import (
    FinalNoteResponseSchema,
    NoteKindArgsSchema,
    PreviewPendingSchema,
    PreviewQueryArgsSchema,
    PreviewResponseSchema,
    RedeliverResponseSchema,
    TicketingCreatedSchema,
    TicketingKindsResponseSchema,
    TicketingResponseSchema,
    TicketingTestArgsSchema,
    TicketingTestResponseSchema,
    TicketingUpdateSchema,
    preview_response_body,
)
from shared.auth import bearer_user_id, current_principal
from shared.db import db
from shared.endpoints import ApiBlueprint, BearerView
from shared.errors import (
    AI_SESSION_NOT_FOUND,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from shared.permissions import can_administer_account
from shared.tasks import TASK_DELIVER

notes_blp = ApiBlueprint(
    "notes",
    __name__,
    url_prefix="/api/v1/ai-sessions",
    description="Resolution notes: preview, final note and its delivery",
)
integrations_blp = ApiBlueprint(
    "integrations",
    __name__,
    url_prefix="/api/v1/integrations",
    description="The account's ticketing integration (a webhook or a native adapter)",
)


# The errors each route can answer besides 422, documented in the spec with the error schema.
ERROR_RESPONSES: dict[str, dict[str, tuple[int, ...]]] = {
    "/api/v1/ai-sessions/{session_id}/resolution-note/preview": {"get": (401, 404)},
    "/api/v1/ai-sessions/{session_id}/resolution-note": {"get": (401, 404)},
    "/api/v1/ai-sessions/{session_id}/resolution-note/redeliver": {"post": (401, 403, 404, 409)},
    "/api/v1/integrations/ticketing": {
        "get": (401, 404),
        "put": (401, 403),
        "delete": (401, 403, 404),
    },
    "/api/v1/integrations/ticketing/kinds": {"get": (401,)},
    "/api/v1/integrations/ticketing/test": {"post": (401, 403, 404)},
}


def blueprints() -> list[ApiBlueprint]:
    return [notes_blp, integrations_blp]


def _context() -> NotesContext:
    return context_for(current_app.config["SETTINGS"])


def _require_owner() -> None:
    if not can_administer_account(current_principal()):
        raise PermissionDenied("only the account's owners can do this")


def _auth_with_session_state(view: Callable[..., Any]) -> Callable[..., Any]:
    """auth_required for the preview, the request the product serves most: the principal and
    the session's state come from ONE statement (no cache, so a disabled user or a changed
    role takes effect at the next request)."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        principal, state = principal_and_session_state(bearer_user_id(), kwargs["session_id"])
        if principal is None:
            raise Unauthenticated("user is inactive or unknown")
        g.principal = principal
        g.session_state = state
        return view(*args, **kwargs)

    return wrapper


def _if_none_match() -> list[str]:
    """The opaque tags of If-None-Match (weak comparison: W/ is ignored)."""
    return if_none_match_tags(request.headers.get("If-None-Match"))


@notes_blp.route("/<uuid:session_id>/resolution-note/preview")
class PreviewView(MethodView):
    decorators = [_auth_with_session_state]

    # A schema instance, not the class: webargs would build one per request.
    @notes_blp.endpoint(200, PreviewResponseSchema, args=PreviewQueryArgsSchema(), location="query")
    @notes_blp.alt_response(202, schema=PreviewPendingSchema, description="Not ready yet")
    @notes_blp.alt_response(304, description="If-None-Match holds the current note's ETag: no body")
    def get(self, args: dict[str, Any], session_id: uuid.UUID) -> Any:
        """The note for the session's current state_version: from the cache, or generated once
        however many ask. Answers 202 when it is not ready within `wait` seconds.

        A ready note carries a weak ETag; send it back in If-None-Match while polling and the
        answer is 304 with no body as long as the note is current."""
        state = g.session_state
        if state is None:
            raise NotFound(AI_SESSION_NOT_FOUND)
        ctx = _context()
        wait = args.get("wait")
        outcome = preview.preview_note(
            ctx,
            session_id=session_id,
            account_id=current_principal().account_id,
            kind=args["kind"],
            wait_s=ctx.settings.NOTES_PREVIEW_WAIT_S if wait is None else float(wait),
            state=state,
            if_none_match=_if_none_match(),
            rendered=True,
        )
        if not outcome.ready:
            response = jsonify(outcome.body())
            response.status_code = 202
            response.headers["Retry-After"] = str(math.ceil(outcome.retry_after))
            return response
        headers = {"Cache-Control": PREVIEW_CACHE_CONTROL}
        if outcome.matched_tag is not None:
            response = Response(status=304, headers=headers)
            response.set_etag(outcome.matched_tag, weak=True)
            return response
        tag = outcome.tag
        if tag is not None:
            headers["ETag"] = f'W/"{tag}"'
        if outcome.hit is not None:
            # The hit path: the note's fields as the cache stored them rendered, joined with
            # the request's as bytes (services.notes.preview_body; the same JSON document as
            # below, a test holds that).
            body = hit_body(
                outcome.hit.parts,
                kind=outcome.kind,
                session_id=str(outcome.session_id),
                state_version=outcome.state_version,
                ticket_ref=outcome.ticket_ref,
            )
            return Response(body, headers=headers, mimetype="application/json")
        # Serialised without the response schema's dump (the schema documents it): the body is
        # put in its shape directly, and marshmallow's dump was the largest CPU cost of the
        # hit path.
        response = jsonify(preview_response_body(outcome.body()))
        response.headers.update(headers)
        return response


@notes_blp.route("/<uuid:session_id>/resolution-note")
class FinalNoteView(BearerView):
    @notes_blp.endpoint(200, FinalNoteResponseSchema, args=NoteKindArgsSchema, location="query")
    def get(self, args: dict[str, Any], session_id: uuid.UUID) -> Any:
        """The final note of a resolved session, with its delivery status and attempts."""
        principal = current_principal()
        return final_note.final_note(
            account_id=principal.account_id,
            session_id=session_id,
            kind=args["kind"],
            show_errors=can_administer_account(principal),
        )


@notes_blp.route("/<uuid:session_id>/resolution-note/redeliver")
class RedeliverView(BearerView):
    @notes_blp.endpoint(202, RedeliverResponseSchema, args=NoteKindArgsSchema, location="query")
    def post(self, args: dict[str, Any], session_id: uuid.UUID) -> Any:
        """Queue another delivery of the final note (account owners)."""
        _require_owner()
        note_id, status = deliveries.request_redelivery(
            account_id=current_principal().account_id, session_id=session_id, kind=args["kind"]
        )
        try:
            _context().enqueue(TASK_DELIVER, str(note_id))
        except Exception as exc:  # noqa: BLE001 - the sweeper delivers it anyway
            raise Unavailable(
                "delivery queued, but the workers cannot be reached right now"
            ) from exc
        return {"note_id": note_id, "delivery_status": status}


@integrations_blp.route("/ticketing")
class TicketingView(BearerView):
    @integrations_blp.endpoint(200, TicketingResponseSchema)
    def get(self) -> Any:
        """The account's webhook URL and status (never the secret). Only owners see the whole
        URL (it can carry a token); everyone else sees its origin."""
        principal = current_principal()
        with db.session() as session:
            view = integrations.get_ticketing(session, account_id=principal.account_id)
        return view if can_administer_account(principal) else view.redacted()

    @integrations_blp.endpoint(200, TicketingCreatedSchema, args=TicketingUpdateSchema)
    def put(self, data: dict[str, Any]) -> Any:
        """Set the account's ticketing integration (owners): `{kind, base_url, credentials,
        options}`, or the webhook's `{url, secret?}`. Credentials are encrypted at rest and
        never returned; a webhook secret is generated when absent (shown in this response
        only) and kept when only the URL changes."""
        _require_owner()
        settings = current_app.config["SETTINGS"]
        kind = data["kind"]
        credentials = dict(data["credentials"])
        if kind == "webhook" and data.get("secret"):
            credentials["secret"] = data["secret"]
        with db.transaction() as session:
            result = integrations.configure_integration(
                session,
                account_id=current_principal().account_id,
                kind=kind,
                base_url=data.get("base_url") or data.get("url"),
                credentials=credentials,
                options=data["options"],
                allow_private=settings.ALLOW_PRIVATE_WEBHOOKS,
            )
        body: dict[str, Any] = {
            "kind": result.kind,
            "url": result.url,
            "base_url": result.url,
            "status": result.status,
            "credentials_set": list(result.credentials_set),
            "options": result.options,
        }
        if result.kind == "webhook":
            body.update(
                secret=result.secret,
                secret_generated=result.secret_generated,
                secret_kept=result.secret_kept,
            )
        return body

    @integrations_blp.endpoint(204)
    def delete(self) -> Any:
        """Remove the account's ticketing integration (owners). Notes resolved afterwards are
        "not_configured"."""
        _require_owner()
        with db.transaction() as session:
            integrations.delete_ticketing(session, account_id=current_principal().account_id)
        return None


@integrations_blp.route("/ticketing/kinds")
class TicketingKindsView(BearerView):
    @integrations_blp.endpoint(200, TicketingKindsResponseSchema)
    def get(self) -> Any:
        """Every ticketing kind with its fields (name, label, type, required, secret), so a
        form can be built from it."""
        return {"kinds": describe_kinds()}


@integrations_blp.route("/ticketing/test")
class TicketingTestView(BearerView):
    @integrations_blp.endpoint(200, TicketingTestResponseSchema, args=TicketingTestArgsSchema)
    def post(self, data: dict[str, Any]) -> Any:
        """One harmless authenticated call with the stored configuration (owners): read the
        ticket given as `ticket_ref`, or the system's who-am-I. `ok` false carries the
        system's refusal."""
        _require_owner()
        settings = current_app.config["SETTINGS"]
        with db.session() as session:
            configured = integrations.configured_ticketing(
                session,
                account_id=current_principal().account_id,
                timeout_s=settings.WEBHOOK_TIMEOUT_S,
                allow_private=settings.ALLOW_PRIVATE_WEBHOOKS,
            )
        return integrations.check_ticketing(configured, data.get("ticket_ref"))
