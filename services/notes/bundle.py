"""Reading what a note is made from: the session, its facts, the active fix and the script runs
linked to it, together with the `state_version` they belong to.

Everything is read in ONE repeatable-read transaction, so the bundle and the version come from
the same snapshot: a note stored under a version key was generated from exactly that version's
data, whatever writes commit while the bundle is being read.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from services.notes.generator import (
    NOTE_KINDS,
    BundleFact,
    BundleFix,
    BundleScriptRun,
    NoteBundle,
    bundle_from_dict,
    bundle_to_dict,
)
from shared.auth import principal_from_row, principal_select
from shared.db import db
from shared.models import ResolutionNote, User
from shared.models.exposed import (
    PilotSession,
    PilotSessionFact,
    PilotSuggestedFix,
    ScriptSessionRun,
)
from shared.principal import Principal

REPEATABLE_READ = "REPEATABLE READ"


@dataclass(frozen=True)
class SessionState:
    """The session row's fields the notes service cares about."""

    session_id: uuid.UUID
    account_id: uuid.UUID
    state_version: int
    status: str
    ticket_ref: str | None
    resolved_version: int | None


@dataclass(frozen=True)
class LoadedBundle:
    bundle: NoteBundle
    session: SessionState

    @property
    def state_version(self) -> int:
        return self.session.state_version


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value is not None else ""


def _state(row: PilotSession) -> SessionState:
    return SessionState(
        session_id=row.id,
        account_id=row.account_id,
        state_version=int(row.state_version),
        status=row.status,
        ticket_ref=row.ticket_ref,
        resolved_version=row.resolved_version,
    )


def read_session_state(
    session: Session, session_id: uuid.UUID, *, account_id: uuid.UUID | None = None
) -> SessionState | None:
    """The session's current state (account-scoped when `account_id` is given), or None."""
    query = select(PilotSession).where(PilotSession.id == session_id)
    if account_id is not None:
        query = query.where(PilotSession.account_id == account_id)
    row = session.scalars(query).one_or_none()
    return _state(row) if row is not None else None


def session_state(
    session_id: uuid.UUID, *, account_id: uuid.UUID | None = None
) -> SessionState | None:
    with db.session() as session:
        return read_session_state(session, session_id, account_id=account_id)


def principal_and_session_state(
    user_id: uuid.UUID, session_id: uuid.UUID
) -> tuple[Principal | None, SessionState | None]:
    """The preview's whole database read, ONE statement: the active principal of `user_id`
    (as every request reads it, see shared.auth) and the state of the session if it is in the
    principal's account. (None, None): no such active user; (principal, None): no such session
    for that account."""
    sessions, users = PilotSession.__table__, User.__table__
    statement = (
        principal_select(user_id)
        .add_columns(
            sessions.c.id.label("session_id"),
            sessions.c.state_version,
            sessions.c.status,
            sessions.c.ticket_ref,
            sessions.c.resolved_version,
        )
        .outerjoin(
            sessions,
            and_(sessions.c.id == session_id, sessions.c.account_id == users.c.account_id),
        )
    )
    row = db.read_row(statement)
    if row is None:
        return None, None
    principal = principal_from_row(row)
    if row.session_id is None:
        return principal, None
    return principal, SessionState(
        session_id=row.session_id,
        account_id=row.account_id,
        state_version=int(row.state_version),
        status=row.status,
        ticket_ref=row.ticket_ref,
        resolved_version=row.resolved_version,
    )


def _fix(row: PilotSuggestedFix | None) -> BundleFix | None:
    if row is None:
        return None
    steps: list[Any] = row.steps if isinstance(row.steps, list) else []
    return BundleFix(
        title=row.title,
        summary=row.summary,
        steps=tuple(str(step) for step in steps),
        script=row.script,
        confidence=row.confidence,
        decision=row.decision,
        template_id=str(row.template_id) if row.template_id else None,
        created_at=_iso(row.created_at),
    )


def read_bundle(session: Session, session_id: uuid.UUID, kind: str) -> LoadedBundle | None:
    """Build the bundle inside the caller's transaction (which should be repeatable read)."""
    row = session.scalars(select(PilotSession).where(PilotSession.id == session_id)).one_or_none()
    if row is None:
        return None
    facts = session.scalars(
        select(PilotSessionFact)
        .where(PilotSessionFact.session_id == session_id)
        .order_by(PilotSessionFact.created_at, PilotSessionFact.id)
    ).all()
    # Dismissing a fix supersedes it, so "not superseded" is the active fix (at most one: a
    # partial unique index holds that).
    active_fix = session.scalars(
        select(PilotSuggestedFix).where(
            PilotSuggestedFix.session_id == session_id, PilotSuggestedFix.superseded_at.is_(None)
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
            BundleFact(
                kind=fact.kind, text=fact.text, created_at=_iso(fact.created_at), id=str(fact.id)
            )
            for fact in facts
        ),
        active_fix=_fix(active_fix),
        script_runs=tuple(
            BundleScriptRun(
                template_name=generation.template_name,
                # Stored already redacted by the scripts service: the real sensitive values
                # never reach the database, so there is nothing else to forbid here.
                parameters=dict(generation.parameters_used or {}),
                created_at=_iso(generation.created_at),
                template_id=str(generation.template_id) if generation.template_id else None,
            )
            for generation in runs
        ),
    )
    return LoadedBundle(bundle=bundle, session=_state(row))


def loaded_from_snapshot(snapshot: dict[str, Any], state: SessionState) -> LoadedBundle:
    """A bundle captured at Resolve (see :func:`services.notes.generator.bundle_to_dict`),
    paired with the session's identity and the resolved version."""
    bundle = bundle_from_dict(snapshot)
    return LoadedBundle(
        bundle=bundle,
        session=SessionState(
            session_id=state.session_id,
            account_id=state.account_id,
            state_version=bundle.state_version,
            status="resolved",
            ticket_ref=state.ticket_ref,
            resolved_version=bundle.state_version,
        ),
    )


def load_bundle(session_id: uuid.UUID, kind: str) -> LoadedBundle | None:
    """The bundle and its state_version from one repeatable-read snapshot (None: no session)."""
    with db.transaction(isolation_level=REPEATABLE_READ) as session:
        return read_bundle(session, session_id, kind)


def record_resolution(
    session: Session,
    *,
    session_id: uuid.UUID,
    account_id: uuid.UUID,
    state_version: int,
    ticket_ref: str | None,
    kind: str = NOTE_KINDS[0],
    snapshot: dict[str, Any] | None = None,
) -> uuid.UUID:
    """The note row for (session, kind, version): created once, whoever asks (insert ... on
    conflict do nothing), so a duplicated event or a sweep creates nothing twice. The Resolve
    transaction creates it first, with ``snapshot``: what the note is made from at exactly
    the resolved version."""
    session.execute(
        pg_insert(ResolutionNote)
        .values(
            id=uuid.uuid4(),
            session_id=session_id,
            account_id=account_id,
            kind=kind,
            state_version=state_version,
            ticket_ref=ticket_ref,
            delivery_status="pending",
            attempts=0,
            bundle=snapshot,
        )
        .on_conflict_do_nothing(constraint="uq_resolution_notes_version")
    )
    note_id = session.scalars(
        select(ResolutionNote.id).where(
            ResolutionNote.session_id == session_id,
            ResolutionNote.kind == kind,
            ResolutionNote.state_version == state_version,
        )
    ).one()
    return note_id


def snapshot_resolution(session: Session, session_id: uuid.UUID) -> LoadedBundle | None:
    """Inside the Resolve transaction (after its bump, under the session's row lock): read each
    note kind's bundle and create its note row carrying that snapshot. Returns the bundle of
    the first kind (the resolution note), for the caller's checks."""
    first: LoadedBundle | None = None
    for kind in NOTE_KINDS:
        loaded = read_bundle(session, session_id, kind)
        if loaded is None:
            return None
        first = first or loaded
        record_resolution(
            session,
            session_id=loaded.session.session_id,
            account_id=loaded.session.account_id,
            state_version=loaded.state_version,
            ticket_ref=loaded.session.ticket_ref,
            kind=kind,
            snapshot=bundle_to_dict(loaded.bundle),
        )
    return first
