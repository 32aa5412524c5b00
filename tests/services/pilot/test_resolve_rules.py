"""What a note needs, captured through the API: root_cause and resolution facts, the problem
statement, and Resolve's refusal (422, writing nothing) when the note would have no resolution
or the ticketing system could not place it."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import func, select

from services.pilot.fixes import persist_fix
from shared.db import db
from shared.models import OutboxEvent, ResolutionNote, SessionFact, TicketingIntegration


def _resolve(client: Any, actor: Any, sid: str, **body: Any) -> Any:
    return client.post(f"/api/v1/ai-sessions/{sid}/resolve", json=body, headers=actor.headers)


def _facts(sid: str) -> list[tuple[str, str]]:
    with db.session() as session:
        rows = session.scalars(
            select(SessionFact)
            .where(SessionFact.session_id == uuid.UUID(sid))
            .order_by(SessionFact.created_at)
        ).all()
        return [(row.kind, row.text) for row in rows]


def _outbox(sid: str) -> int:
    with db.session() as session:
        return int(
            session.execute(
                select(func.count())
                .select_from(OutboxEvent)
                .where(OutboxEvent.session_id == uuid.UUID(sid))
            ).scalar_one()
        )


@pytest.mark.parametrize("kind", ["root_cause", "resolution"])
def test_root_cause_and_resolution_facts_are_versioned_writes(
    pilot_client: Any, engineer: Any, helpers: SimpleNamespace, kind: str
) -> None:
    sid = helpers.create_session(pilot_client, engineer)["id"]
    before = _outbox(sid)
    fact = helpers.add_fact(pilot_client, engineer, sid, "Stale cached credential", kind=kind)
    assert fact["kind"] == kind and fact["state_version"] == 2
    assert helpers.session_version(sid) == 2
    assert _outbox(sid) == before + 1
    edited = pilot_client.patch(
        f"/api/v1/ai-sessions/{sid}/facts/{fact['id']}",
        json={"kind": "confirmed"},
        headers=engineer.headers,
    )
    assert edited.status_code == 200 and edited.get_json()["state_version"] == 3


def test_patch_accepts_the_problem_statement(
    pilot_client: Any, engineer: Any, helpers: SimpleNamespace
) -> None:
    sid = helpers.create_session(pilot_client, engineer)["id"]
    response = pilot_client.patch(
        f"/api/v1/ai-sessions/{sid}",
        json={"problem": "  Outlook asks for the password every few minutes  "},
        headers=engineer.headers,
    )
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["problem"] == "Outlook asks for the password every few minutes"
    assert body["state_version"] == 2
    too_long = pilot_client.patch(
        f"/api/v1/ai-sessions/{sid}", json={"problem": "x" * 20001}, headers=engineer.headers
    )
    assert too_long.status_code == 422
    assert "problem" in too_long.get_json()["errors"]["json"]
    assert helpers.session_version(sid) == 2


def test_resolve_without_a_resolution_is_refused_naming_it(
    pilot_client: Any, engineer: Any, helpers: SimpleNamespace
) -> None:
    sid = helpers.create_session(pilot_client, engineer)["id"]
    helpers.add_fact(pilot_client, engineer, sid, "Spooler stuck", kind="symptom")
    outbox = _outbox(sid)
    refused = _resolve(pilot_client, engineer, sid)
    assert refused.status_code == 422
    body = refused.get_json()
    assert "resolution" in body["errors"]["json"]
    assert "resolution" in body["message"]
    # Nothing was written: no bump, no event, no note row.
    assert helpers.session_version(sid) == 2 and _outbox(sid) == outbox
    with db.session() as session:
        assert session.scalars(select(ResolutionNote.id)).first() is None
    got = pilot_client.get(f"/api/v1/ai-sessions/{sid}", headers=engineer.headers).get_json()
    assert got["status"] == "active"


def test_a_dismissed_fix_is_no_resolution_but_a_decided_one_is(
    pilot_client: Any, engineer: Any, helpers: SimpleNamespace
) -> None:
    sid = helpers.create_session(pilot_client, engineer)["id"]
    with db.transaction() as session:
        fix = persist_fix(
            session,
            account_id=engineer.account_id,
            session_id=uuid.UUID(sid),
            values={"title": "Restart the spooler"},
        )
        fix_id = str(fix.id)
    decide = f"/api/v1/ai-sessions/{sid}/suggested-fixes/{fix_id}/decision"
    assert (
        pilot_client.post(decide, json={"decision": "one_off"}, headers=engineer.headers)
    ).status_code == 200
    assert (
        pilot_client.post(decide, json={"decision": "dismissed"}, headers=engineer.headers)
    ).status_code == 200
    assert _resolve(pilot_client, engineer, sid).status_code == 422

    with db.transaction() as session:
        fix = persist_fix(
            session,
            account_id=engineer.account_id,
            session_id=uuid.UUID(sid),
            values={"title": "Clear the print queue"},
        )
        second = str(fix.id)
    decide = f"/api/v1/ai-sessions/{sid}/suggested-fixes/{second}/decision"
    assert (
        pilot_client.post(decide, json={"decision": "one_off"}, headers=engineer.headers)
    ).status_code == 200
    assert _resolve(pilot_client, engineer, sid).status_code == 202


def test_resolve_records_the_resolution_text_as_a_fact_in_the_same_write(
    pilot_client: Any, engineer: Any, helpers: SimpleNamespace
) -> None:
    sid = helpers.create_session(pilot_client, engineer)["id"]
    response = _resolve(
        pilot_client, engineer, sid, resolution="  Cleared the spooler folder and restarted it "
    )
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["state_version"] == 2
    assert _facts(sid) == [("resolution", "Cleared the spooler folder and restarted it")]
    with db.session() as session:
        note = session.scalars(select(ResolutionNote)).one()
    assert note.state_version == 2 and note.bundle is not None
    assert [f["kind"] for f in note.bundle["facts"]] == ["resolution"]


def test_force_resolves_without_a_resolution(
    pilot_client: Any, engineer: Any, helpers: SimpleNamespace
) -> None:
    sid = helpers.create_session(pilot_client, engineer)["id"]
    response = _resolve(pilot_client, engineer, sid, force=True)
    assert response.status_code == 202
    assert response.get_json()["resolved_version"] == 2


def test_a_ticketing_account_needs_a_ticket_ref(
    pilot_client: Any, engineer: Any, helpers: SimpleNamespace
) -> None:
    with db.transaction() as session:
        session.add(
            TicketingIntegration(
                account_id=engineer.account_id, url="https://tickets.example/hook", secret="s"
            )
        )
    sid = helpers.create_session(pilot_client, engineer)["id"]
    refused = _resolve(pilot_client, engineer, sid, resolution="Restarted the spooler")
    assert refused.status_code == 422
    assert "ticket_ref" in refused.get_json()["errors"]["json"]
    assert helpers.session_version(sid) == 1 and _facts(sid) == []
    ok = _resolve(
        pilot_client, engineer, sid, resolution="Restarted the spooler", ticket_ref="INC-9"
    )
    assert ok.status_code == 202 and ok.get_json()["ticket_ref"] == "INC-9"


def test_the_final_note_is_made_from_the_resolved_version_never_a_later_one(
    pilot_client: Any, engineer: Any, helpers: SimpleNamespace, migrated: Any
) -> None:
    """Resolve, then reopen and change the session before any worker materialised the note:
    the final note still says what the resolved version said."""
    from services.notes import resolve
    from services.notes.context import NotesContext
    from shared.tasks import TASK_DELIVER

    class Recording(NotesContext):
        def __init__(self, settings: Any) -> None:
            super().__init__(settings)
            self.enqueued: list[tuple[str, tuple[Any, ...]]] = []

        def enqueue(self, name: str, *args: Any, countdown: float | None = None) -> None:
            self.enqueued.append((name, args))

    sid = helpers.create_session(pilot_client, engineer, problem="Print jobs stuck")["id"]
    base = f"/api/v1/ai-sessions/{sid}"
    cause = helpers.add_fact(
        pilot_client, engineer, sid, "A corrupt spool file blocked the queue", kind="root_cause"
    )
    resolved = _resolve(pilot_client, engineer, sid, resolution="Cleared the spool folder")
    assert resolved.status_code == 202
    version = resolved.get_json()["resolved_version"]

    assert pilot_client.post(f"{base}/reopen", headers=engineer.headers).status_code == 200
    changed = pilot_client.patch(
        f"{base}/facts/{cause['id']}",
        json={"text": "LATER-EDIT: the driver was wrong"},
        headers=engineer.headers,
    )
    assert changed.status_code == 200
    helpers.add_fact(pilot_client, engineer, sid, "LATER-FACT confirmed", kind="confirmed")
    assert helpers.session_version(sid) > version

    with db.session() as session:
        note_id = session.scalars(
            select(ResolutionNote.id).where(
                ResolutionNote.session_id == uuid.UUID(sid),
                ResolutionNote.state_version == version,
            )
        ).one()
    ctx = Recording(migrated)
    assert resolve.materialise_note(ctx, note_id, owner="test-owner") == "materialised"
    with db.session() as session:
        note = session.get(ResolutionNote, note_id)
        assert note is not None and note.markdown is not None
        markdown, cites = note.markdown, note.citations
    assert "A corrupt spool file blocked the queue" in markdown
    assert "Cleared the spool folder" in markdown
    assert "LATER" not in markdown
    assert cites and all("LATER" not in c["text"] for c in cites)
    assert ctx.enqueued == [(TASK_DELIVER, (str(note_id),))]
