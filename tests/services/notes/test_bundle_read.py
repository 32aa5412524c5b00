"""The bundle's one-statement read gives exactly the bundle that reading each table through the
ORM gives: same facts and runs in the same order, same fix, same timestamps to the character
(the fingerprint and the prompt are made from them), for every note kind."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from services.notes.bundle import (
    BundleFact,
    BundleFix,
    BundleScriptRun,
    LoadedBundle,
    NoteBundle,
    SessionState,
    load_bundle,
    read_bundle,
)
from services.notes.kinds import prepared_bundle
from services.notes.vocabulary import NOTE_KINDS
from shared.db import db
from shared.models import (
    ScriptCategory,
    ScriptGeneration,
    ScriptTemplate,
    SessionFact,
    SuggestedFix,
)
from shared.models.exposed import (
    PilotSession,
    PilotSessionFact,
    PilotSuggestedFix,
    ScriptSessionRun,
)
from tests.support.workers import create_session


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value is not None else ""


def _orm_bundle(session_id: uuid.UUID, kind: str) -> LoadedBundle:
    """The bundle as the ORM reads it, table by table, in one repeatable-read transaction."""
    with db.transaction(isolation_level="REPEATABLE READ") as session:
        row = session.scalars(select(PilotSession).where(PilotSession.id == session_id)).one()
        facts = session.scalars(
            select(PilotSessionFact)
            .where(PilotSessionFact.session_id == session_id)
            .order_by(PilotSessionFact.created_at, PilotSessionFact.id)
        ).all()
        fix = session.scalars(
            select(PilotSuggestedFix).where(
                PilotSuggestedFix.session_id == session_id,
                PilotSuggestedFix.superseded_at.is_(None),
            )
        ).one_or_none()
        runs = session.scalars(
            select(ScriptSessionRun)
            .where(ScriptSessionRun.ai_session_id == session_id)
            .order_by(ScriptSessionRun.created_at, ScriptSessionRun.id)
        ).all()
        bundle = NoteBundle(
            kind=kind,
            session_id=str(row.id),
            account_id=str(row.account_id),
            state_version=int(row.state_version),
            title=row.title,
            problem=row.problem,
            facts=tuple(
                BundleFact(kind=f.kind, text=f.text, created_at=_iso(f.created_at), id=str(f.id))
                for f in facts
            ),
            active_fix=None
            if fix is None
            else BundleFix(
                title=fix.title,
                summary=fix.summary,
                steps=tuple(str(step) for step in fix.steps),
                script=fix.script,
                confidence=fix.confidence,
                decision=fix.decision,
                template_id=str(fix.template_id) if fix.template_id else None,
                created_at=_iso(fix.created_at),
            ),
            script_runs=tuple(
                BundleScriptRun(
                    template_name=r.template_name,
                    parameters=dict(r.parameters_used or {}),
                    created_at=_iso(r.created_at),
                    template_id=str(r.template_id) if r.template_id else None,
                )
                for r in runs
            ),
        )
        return LoadedBundle(
            bundle=prepared_bundle(bundle, ticket_ref=row.ticket_ref),
            session=SessionState(
                session_id=row.id,
                account_id=row.account_id,
                state_version=int(row.state_version),
                status=row.status,
                ticket_ref=row.ticket_ref,
                resolved_version=row.resolved_version,
            ),
        )


def _populate(make_user: Any) -> uuid.UUID:
    user = make_user("engineer")
    account = user.account_id
    sid = create_session(account, problem="Spooler keeps stopping", ticket_ref="INC-77")
    # Timestamps whose fraction PostgreSQL's JSON shortens (none, trailing zeros) or keeps.
    base = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    stamps = [base, base + timedelta(microseconds=120000), base + timedelta(microseconds=123457)]
    with db.transaction() as session:
        for i, (kind, stamp) in enumerate(
            zip(("symptom", "confirmed", "resolution"), reversed(stamps), strict=True)
        ):
            session.add(
                SessionFact(
                    session_id=sid,
                    account_id=account,
                    kind=kind,
                    text=f'fact {i}: spooler \u00e9t\u00e9 "quoted" \\ back',
                    created_at=stamp,
                )
            )
        # Two facts at the same instant: ordered by id, as the ORM read did.
        for i in range(2):
            session.add(
                SessionFact(
                    session_id=sid,
                    account_id=account,
                    kind="observation",
                    text=f"tie {i}",
                    created_at=base,
                )
            )
        category = ScriptCategory(slug=f"c-{uuid.uuid4().hex[:8]}", name="Printing")
        session.add(category)
        session.flush()
        template = ScriptTemplate(
            category_id=category.id,
            scope="personal",
            created_by=user.id,
            account_id=account,
            name="Restart spooler",
            slug=f"restart-{uuid.uuid4().hex[:8]}",
            script_body="Restart-Service {{service}}",
        )
        session.add(template)
        session.flush()
        session.add(
            SuggestedFix(
                session_id=sid,
                account_id=account,
                title="Old fix",
                steps=["a"],
                superseded_at=base,
                decision="dismissed",
            )
        )
        session.flush()
        session.add(
            SuggestedFix(
                session_id=sid,
                account_id=account,
                title="Restart the spooler",
                summary="It hangs",
                steps=["Stop it", 2, 1.5],
                script="Restart-Service Spooler",
                template_id=template.id,
                confidence=80,
                decision="one_off",
                created_at=stamps[1],
            )
        )
        for i, stamp in enumerate((stamps[2], stamps[0])):
            session.add(
                ScriptGeneration(
                    template_id=template.id,
                    template_version=1,
                    user_id=user.id,
                    account_id=account,
                    ai_session_id=sid,
                    parameters_used={"service": "Spooler", "n": i, "secret": "[REDACTED]"},
                    generated_script="Restart-Service Spooler",
                    created_at=stamp,
                )
            )
    return sid


def test_the_one_statement_read_is_the_orm_read_for_every_kind(make_user: Any) -> None:
    sid = _populate(make_user)
    for kind in NOTE_KINDS:
        expected = _orm_bundle(sid, kind)
        assert len(expected.bundle.facts) == 5 and len(expected.bundle.script_runs) == 2
        assert expected.bundle.active_fix is not None
        assert load_bundle(sid, kind) == expected
        with db.transaction() as session:
            assert read_bundle(session, sid, kind) == expected


def test_a_session_without_facts_fix_or_runs_reads_empty(make_account: Any) -> None:
    sid = create_session(make_account(), problem=None)
    loaded = load_bundle(sid, NOTE_KINDS[0])
    assert loaded is not None
    assert loaded == _orm_bundle(sid, NOTE_KINDS[0])
    assert loaded.bundle.facts == () and loaded.bundle.script_runs == ()
    assert loaded.bundle.active_fix is None


def test_an_unknown_session_reads_none(migrated: Any) -> None:
    assert load_bundle(uuid.uuid4(), NOTE_KINDS[0]) is None
