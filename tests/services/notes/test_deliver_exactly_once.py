"""`deliver_note` looks for the note on the ticket before posting whenever an earlier attempt's
outcome is unknown: a worker that died mid-call (the note still "delivering", its lease gone,
no attempt recorded) and any retry. Run against the Zendesk fake, called directly."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select, update

from services.notes import deliveries
from services.notes.context import context_for
from services.notes.integrations import configure_integration
from shared.db import db
from shared.models import ResolutionNote, WebhookAttempt
from tests.support.fake_saas import ZendeskFake
from tests.support.servers import settings_with
from tests.support.workers import create_session


def _note(account_id: uuid.UUID, *, status: str) -> uuid.UUID:
    sid = create_session(account_id, ticket_ref="4711")
    with db.transaction() as session:
        note = ResolutionNote(
            session_id=sid,
            account_id=account_id,
            kind="resolution_note",
            state_version=1,
            ticket_ref="4711",
            markdown="## Problem\nPrinter offline.\n\n## Resolution\nRestarted the spooler.",
            delivery_status=status,
        )
        session.add(note)
        session.flush()
        return note.id


def _configure(account_id: uuid.UUID, fake: Any) -> None:
    with db.transaction() as session:
        configure_integration(
            session,
            account_id=account_id,
            kind="zendesk",
            base_url=fake.base_url,
            credentials=fake.credentials,
            options={},
            allow_private=True,
        )


def _post_marked(fake: Any, note_id: uuid.UUID) -> None:
    """What a worker that died after Zendesk committed left behind: the note on the ticket."""
    with fake.lock:
        fake.notes_by_ticket.setdefault("4711", []).append(
            {"id": 1, "html_body": f"<p>note</p><p>RF-Ref: {note_id}</p>", "public": False}
        )


def test_a_worker_that_died_mid_call_is_not_followed_by_a_second_post(
    migrated: Any, make_user: Any
) -> None:
    ctx = context_for(settings_with(migrated, WEBHOOK_TIMEOUT_S=10.0))
    owner = make_user("owner")
    with ZendeskFake() as fake:
        _configure(owner.account_id, fake)
        note_id = _note(owner.account_id, status="delivering")  # lease expired, outcome unknown
        _post_marked(fake, note_id)

        step = deliveries.deliver_note(ctx, note_id, owner="w:recover")

        assert step.status == "delivered"
        assert fake.writes() == 0  # found, not posted again
        assert len(fake.notes("4711")) == 1
    with db.session() as session:
        (attempt,) = session.scalars(
            select(WebhookAttempt).where(WebhookAttempt.note_id == note_id)
        ).all()
        assert attempt.outcome == "delivered" and attempt.kind == "zendesk"
        assert attempt.status_code is None  # nothing was posted in this attempt
        note = session.get(ResolutionNote, note_id)
        assert note is not None and note.delivered_ticket == "4711"


def test_a_fresh_note_is_posted_without_looking_first(migrated: Any, make_user: Any) -> None:
    ctx = context_for(settings_with(migrated, WEBHOOK_TIMEOUT_S=10.0))
    owner = make_user("owner")
    with ZendeskFake() as fake:
        _configure(owner.account_id, fake)
        note_id = _note(owner.account_id, status="pending")

        assert deliveries.deliver_note(ctx, note_id, owner="w:first").status == "delivered"
        assert [m for m, _ in fake.requests] == ["PUT"]  # one call, no listing

        # A redelivery of a delivered note finds it and posts nothing.
        with db.transaction() as session:
            session.execute(
                update(ResolutionNote)
                .where(ResolutionNote.id == note_id)
                .values(delivery_status="pending")
            )
        assert deliveries.deliver_note(ctx, note_id, owner="w:again").status == "delivered"
        assert fake.writes() == 1
        assert len(fake.notes("4711")) == 1
