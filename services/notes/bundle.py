"""Reading what a note is made from: the session, its facts, the active fix and the script runs
linked to it, together with the `state_version` they belong to.

Everything is read by ONE statement (the facts, the fix and the runs as JSON beside the session
row), so the bundle and the version come from the same snapshot: a note stored under a version
key was generated from exactly that version's data, whatever writes commit while the bundle is
being read. One round trip, no transaction around it and no ORM object: a worker reads it once
per note.

Length: the bundle's dataclasses, their (de)serialisation and their loader stay in this one
module (about 600 lines) so the shape of a bundle and the reading that fills it change
together; the generator and the preview import the shape from here.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, func, literal_column, select
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from services.notes.kinds import prepared_bundle
from services.notes.vocabulary import (
    FIX_REF,
    NOTE_KINDS,
    REDACTED,
    REJECTED_DECISIONS,
)
from shared.auth import PRINCIPAL_COLUMNS, principal_from_values, principal_select
from shared.db import db, driver_sql
from shared.models import ResolutionNote, User
from shared.models.exposed import (
    PilotSession,
    PilotSessionFact,
    PilotSuggestedFix,
    ScriptSessionRun,
)
from shared.principal import Principal
from shared.vocabulary import FACT_KINDS

# -- the bundle's data ----------------------------------------------------------------------


@dataclass(frozen=True)
class BundleFact:
    kind: str
    text: str
    created_at: str
    id: str = ""


@dataclass(frozen=True)
class BundleFix:
    title: str
    summary: str | None
    steps: tuple[str, ...]
    script: str | None
    confidence: int | None
    decision: str | None
    template_id: str | None = None
    created_at: str = ""

    @property
    def applied(self) -> bool:
        """False when the fix was dismissed (it then explains nothing and fixed nothing)."""
        return self.decision not in REJECTED_DECISIONS

    @property
    def decided(self) -> bool:
        """A decision other than ``dismissed`` was recorded: the fix was carried out."""
        return self.decision is not None and self.applied


@dataclass(frozen=True)
class BundleScriptRun:
    template_name: str
    parameters: Mapping[str, Any]
    created_at: str
    template_id: str | None = None

    def redacted_keys(self) -> tuple[str, ...]:
        return tuple(str(k) for k, v in self.parameters.items() if v == REDACTED)


@dataclass(frozen=True)
class NoteBundle:
    kind: str
    session_id: str
    account_id: str
    state_version: int
    problem: str | None
    facts: tuple[BundleFact, ...]
    active_fix: BundleFix | None
    script_runs: tuple[BundleScriptRun, ...]
    forbidden_values: frozenset[str] = field(default_factory=frozenset)
    title: str | None = None
    # Customer details a generalised kind replaced by placeholders (services.notes.kinds): no
    # note of the bundle may bring one back.
    withheld: frozenset[str] = field(default_factory=frozenset)

    def facts_by_kind(self) -> dict[str, list[BundleFact]]:
        """Facts grouped by kind, in bundle order: every known kind (possibly empty) in
        :data:`FACT_KINDS` order, then any unknown kind in order of first appearance."""
        grouped: dict[str, list[BundleFact]] = {kind: [] for kind in FACT_KINDS}
        for fact in self.facts:
            grouped.setdefault(fact.kind, []).append(fact)
        return grouped

    def fact_refs(self) -> dict[str, BundleFact]:
        """``F1``.. for the facts, in bundle order (the order they were recorded)."""
        return {f"F{n}": fact for n, fact in enumerate(self.facts, start=1)}

    def run_refs(self) -> dict[str, BundleScriptRun]:
        return {f"S{n}": run for n, run in enumerate(self.script_runs, start=1)}

    def ref_of(self, fact: BundleFact) -> str:
        return next(f"F{n}" for n, f in enumerate(self.facts, start=1) if f is fact)

    def known_refs(self) -> frozenset[str]:
        refs = set(self.fact_refs()) | set(self.run_refs())
        if self.active_fix is not None and self.active_fix.applied:
            refs.add(FIX_REF)
        return frozenset(refs)

    def sensitive_keys(self) -> frozenset[str]:
        """Script-run parameter names whose value was redacted."""
        return frozenset(key for run in self.script_runs for key in run.redacted_keys())

    def problem_statement(self) -> str:
        return (self.problem or "").strip() or (self.title or "").strip()

    def fix_for_cause(self) -> BundleFix | None:
        """The active fix, unless dismissed: its summary is the stated cause."""
        fix = self.active_fix
        return fix if fix is not None and fix.applied else None

    def decided_fix(self) -> BundleFix | None:
        fix = self.active_fix
        return fix if fix is not None and fix.decided else None

    def runs_for_fix(self) -> list[BundleScriptRun]:
        """The script runs made for the decided fix: runs of its template, or (a fix with no
        template) runs made once it had been proposed."""
        fix = self.decided_fix()
        if fix is None:
            return []
        if fix.template_id:
            return [run for run in self.script_runs if run.template_id == fix.template_id]
        return [
            run for run in self.script_runs if fix.created_at and run.created_at >= fix.created_at
        ]

    def has_resolution(self) -> bool:
        """Whether the note can say what fixed it: a ``resolution`` fact, or a fix with a
        recorded decision other than ``dismissed``."""
        return bool(self.facts_by_kind()["resolution"]) or self.decided_fix() is not None


def _fix_dict(fix: BundleFix | None) -> dict[str, Any] | None:
    if fix is None:
        return None
    return {
        "title": fix.title,
        "summary": fix.summary,
        "steps": list(fix.steps),
        "script": fix.script,
        "confidence": fix.confidence,
        "decision": fix.decision,
    }


def bundle_to_dict(bundle: NoteBundle) -> dict[str, Any]:
    """The bundle as JSON-able data (the Resolve snapshot); :func:`bundle_from_dict` reverses
    it. ``forbidden_values`` are never serialised."""
    fix = bundle.active_fix
    return {
        "kind": bundle.kind,
        "session_id": bundle.session_id,
        "account_id": bundle.account_id,
        "state_version": bundle.state_version,
        "title": bundle.title,
        "problem": bundle.problem,
        "facts": [
            {"id": f.id, "kind": f.kind, "text": f.text, "created_at": f.created_at}
            for f in bundle.facts
        ],
        "active_fix": None
        if fix is None
        else {
            **(_fix_dict(fix) or {}),
            "template_id": fix.template_id,
            "created_at": fix.created_at,
        },
        "script_runs": [
            {
                "template_name": r.template_name,
                "template_id": r.template_id,
                "parameters": dict(r.parameters),
                "created_at": r.created_at,
            }
            for r in bundle.script_runs
        ],
    }


def bundle_from_dict(data: Mapping[str, Any]) -> NoteBundle:
    fix = data.get("active_fix")
    return NoteBundle(
        kind=str(data["kind"]),
        session_id=str(data["session_id"]),
        account_id=str(data["account_id"]),
        state_version=int(data["state_version"]),
        title=data.get("title"),
        problem=data.get("problem"),
        facts=tuple(
            BundleFact(
                kind=str(f["kind"]),
                text=str(f["text"]),
                created_at=str(f.get("created_at") or ""),
                id=str(f.get("id") or ""),
            )
            for f in data.get("facts") or []
        ),
        active_fix=None
        if not fix
        else BundleFix(
            title=str(fix["title"]),
            summary=fix.get("summary"),
            steps=tuple(str(s) for s in fix.get("steps") or []),
            script=fix.get("script"),
            confidence=fix.get("confidence"),
            decision=fix.get("decision"),
            template_id=fix.get("template_id"),
            created_at=str(fix.get("created_at") or ""),
        ),
        script_runs=tuple(
            BundleScriptRun(
                template_name=str(r["template_name"]),
                parameters=dict(r.get("parameters") or {}),
                created_at=str(r.get("created_at") or ""),
                template_id=r.get("template_id"),
            )
            for r in data.get("script_runs") or []
        ),
    )


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


# -- reading it -----------------------------------------------------------------------------


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


@functools.cache
def _principal_and_session_state_sql() -> str:
    """The preview's statement, compiled once (`%(user_id)s`, `%(session_id)s`)."""
    sessions, users = PilotSession.__table__, User.__table__
    statement = (
        principal_select(bindparam("user_id"))
        .add_columns(
            # Whether the session was found: its id is the one asked for, so it is not read
            # back (each uuid column read is a uuid.UUID built at every request).
            sessions.c.id.isnot(None).label("session_found"),
            sessions.c.state_version,
            sessions.c.status,
            sessions.c.ticket_ref,
            sessions.c.resolved_version,
        )
        .outerjoin(
            sessions,
            and_(
                sessions.c.id == bindparam("session_id"),
                sessions.c.account_id == users.c.account_id,
            ),
        )
    )
    return driver_sql(statement)


def principal_and_session_state(
    user_id: uuid.UUID, session_id: uuid.UUID
) -> tuple[Principal | None, SessionState | None]:
    """The preview's whole database read, ONE statement: the active principal of `user_id`
    (as every request reads it, see shared.auth) and the state of the session if it is in the
    principal's account. (None, None): no such active user; (principal, None): no such session
    for that account."""
    values = db.read_values_sql(
        _principal_and_session_state_sql(), {"user_id": user_id, "session_id": session_id}
    )
    if values is None:
        return None, None
    principal = principal_from_values(values)
    session_found, state_version, status, ticket_ref, resolved_version = values[PRINCIPAL_COLUMNS:]
    if not session_found:
        return principal, None
    return principal, SessionState(
        session_id=session_id,
        account_id=principal.account_id,
        state_version=int(state_version),
        status=status,
        ticket_ref=ticket_ref,
        resolved_version=resolved_version,
    )


def _json_object(table: Any, *names: str) -> Any:
    """json_build_object('name', table.name, ...) over these columns (the keys inlined: they
    are our own column names, not parameters)."""
    parts: list[Any] = []
    for name in names:
        parts += [literal_column(f"'{name}'"), table.c[name]]
    return func.json_build_object(*parts)


@functools.cache
def _bundle_sql() -> str:
    """What a bundle is made from, in ONE statement compiled once (`%(session_id)s`): the
    session row, and as JSON its facts (in order), its active fix and its script runs (in
    order). One statement reads one snapshot, so the bundle and the version agree without
    a repeatable-read transaction around several reads."""
    sessions = PilotSession.__table__
    facts = PilotSessionFact.__table__
    fixes = PilotSuggestedFix.__table__
    runs = ScriptSessionRun.__table__
    empty: Any = literal_column("'[]'::json")
    fact_list = (
        select(
            func.coalesce(
                func.json_agg(
                    aggregate_order_by(
                        _json_object(facts, "id", "kind", "text", "created_at"),
                        facts.c.created_at,
                        facts.c.id,
                    )
                ),
                empty,
            )
        )
        .where(facts.c.session_id == sessions.c.id)
        .scalar_subquery()
    )
    # Dismissing a fix supersedes it, so "not superseded" is the active fix (at most one: a
    # partial unique index holds that; a second would fail the statement, as one_or_none did).
    active_fix = (
        select(
            _json_object(
                fixes,
                "title",
                "summary",
                "steps",
                "script",
                "confidence",
                "decision",
                "template_id",
                "created_at",
            )
        )
        .where(fixes.c.session_id == sessions.c.id, fixes.c.superseded_at.is_(None))
        .scalar_subquery()
    )
    run_list = (
        select(
            func.coalesce(
                func.json_agg(
                    aggregate_order_by(
                        _json_object(
                            runs, "template_name", "parameters_used", "created_at", "template_id"
                        ),
                        runs.c.created_at,
                        runs.c.id,
                    )
                ),
                empty,
            )
        )
        .where(runs.c.ai_session_id == sessions.c.id)
        .scalar_subquery()
    )
    statement = select(
        sessions.c.id,
        sessions.c.account_id,
        sessions.c.state_version,
        sessions.c.status,
        sessions.c.title,
        sessions.c.problem,
        sessions.c.ticket_ref,
        sessions.c.resolved_version,
        fact_list.label("facts"),
        active_fix.label("active_fix"),
        run_list.label("script_runs"),
    ).where(sessions.c.id == bindparam("session_id"))
    return driver_sql(statement)


def _json_iso(value: str | None) -> str:
    """A timestamp PostgreSQL wrote into JSON, as :func:`_iso` writes the same value read as
    a column (PostgreSQL drops trailing zeros of the fraction; isoformat keeps six digits)."""
    return datetime.fromisoformat(value).isoformat() if value else ""


def _fix_of(data: Mapping[str, Any] | None) -> BundleFix | None:
    if data is None:
        return None
    steps = data.get("steps")
    return BundleFix(
        title=data["title"],
        summary=data.get("summary"),
        steps=tuple(str(step) for step in steps) if isinstance(steps, list) else (),
        script=data.get("script"),
        confidence=data.get("confidence"),
        decision=data.get("decision"),
        template_id=str(data["template_id"]) if data.get("template_id") else None,
        created_at=_json_iso(data.get("created_at")),
    )


def _loaded_from_row(row: Any, kind: str) -> LoadedBundle:
    bundle = NoteBundle(
        kind=kind,
        session_id=str(row.id),
        account_id=str(row.account_id),
        state_version=int(row.state_version),
        title=row.title,
        problem=row.problem,
        facts=tuple(
            BundleFact(
                kind=fact["kind"],
                text=fact["text"],
                created_at=_json_iso(fact["created_at"]),
                id=str(fact["id"]),
            )
            for fact in row.facts
        ),
        active_fix=_fix_of(row.active_fix),
        script_runs=tuple(
            BundleScriptRun(
                template_name=run["template_name"],
                # Stored already redacted by the scripts service: the real sensitive values
                # never reach the database, so there is nothing else to forbid here.
                parameters=dict(run.get("parameters_used") or {}),
                created_at=_json_iso(run.get("created_at")),
                template_id=str(run["template_id"]) if run.get("template_id") else None,
            )
            for run in row.script_runs
        ),
    )
    # A generalised kind (the KB article) is made from the generalised bundle only: whatever
    # reads it next (prompt, fingerprint, offline note, validation) never sees the originals.
    bundle = prepared_bundle(bundle, ticket_ref=row.ticket_ref)
    return LoadedBundle(bundle=bundle, session=_state(row))


def read_bundle(session: Session, session_id: uuid.UUID, kind: str) -> LoadedBundle | None:
    """Build the bundle inside the caller's transaction (one statement: see _bundle_sql)."""
    row = session.connection().exec_driver_sql(_bundle_sql(), {"session_id": session_id}).first()
    return _loaded_from_row(row, kind) if row is not None else None


def loaded_from_snapshot(snapshot: dict[str, Any], state: SessionState) -> LoadedBundle:
    """A bundle captured at Resolve (see :func:`bundle_to_dict`),
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
    """The bundle and its state_version from one snapshot (None: no session): one statement
    (see _bundle_sql), one round trip outside any transaction (db.read_row_sql)."""
    row = db.read_row_sql(_bundle_sql(), {"session_id": session_id})
    return _loaded_from_row(row, kind) if row is not None else None


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


def snapshot_resolution(session: Session, session_id: uuid.UUID) -> bool:
    """Inside the Resolve transaction (after its bump, under the session's row lock): read each
    note kind's bundle and create its note row carrying that snapshot. Returns whether the
    resolution note can say what fixed it, for Resolve's check. This is the notes side of
    `shared.resolution_snapshot.ResolutionSnapshot`; the composition root provides it to pilot."""
    first: LoadedBundle | None = None
    for kind in NOTE_KINDS:
        loaded = read_bundle(session, session_id, kind)
        if loaded is None:
            return False
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
    return first is not None and first.bundle.has_resolution()
