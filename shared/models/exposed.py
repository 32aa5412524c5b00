"""What one service may read of another: read-only views in the `exposed` schema, and the
declared list of every privilege a service's role holds outside its own schema.

The services share one database: a modular monolith deployed as separate processes. Each
service owns one schema (scripts, pilot, notes) and runs as its own role (`SERVICE_ROLES`),
with full DML there; `core` holds what shared/ writes on every service's behalf (accounts,
teams, users, the outbox, the LLM usage ledger). Anything else a service reads of another's
schema is one of the views below, mapped here as read-only models on their own metadata (so
neither alembic nor the test suite's table clean-up takes them for tables). The migration
`20261202_schemas_per_service` creates the views and the grants, and
`20261202_pilot_reads_scripts_views` the scripts views pilot reads and the one function it
writes through (`FUNCTIONS`); a test compares the database's catalog with
`CROSS_SERVICE_PRIVILEGES`, so a new cross-service read or write is a change to this file
first.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Integer, MetaData, String, Text, event
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSVECTOR, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from shared.models.base import EXPOSED, NOTES, PILOT, SCRIPTS

# NOLOGIN roles, one per service: a process sets its role on each pooled connection
# (shared.db). Roles are cluster-wide, so their names carry no database name; the grants are
# per database.
SERVICE_ROLES: dict[str, str] = {
    SCRIPTS: "rf_scripts",
    PILOT: "rf_pilot",
    NOTES: "rf_notes",
}

# The views, by name in the `exposed` schema, with the service that owns the data and the
# services that read them.
VIEWS: dict[str, tuple[str, tuple[str, ...]]] = {
    # Pilot reads its own views too: Resolve snapshots the note's bundle through notes' code.
    "pilot_sessions": (PILOT, (SCRIPTS, PILOT, NOTES)),
    "pilot_session_facts": (PILOT, (PILOT, NOTES)),
    "pilot_suggested_fixes": (PILOT, (PILOT, NOTES)),
    "scripts_session_runs": (SCRIPTS, (PILOT, NOTES)),
    "scripts_templates": (SCRIPTS, (PILOT,)),
    "scripts_categories": (SCRIPTS, (PILOT,)),
    "notes_integrations": (NOTES, (PILOT,)),
}

# The functions, by name in the `exposed` schema: SECURITY DEFINER, owned by the role of the
# service whose tables they write (so they write with that service's privileges), with a fixed
# search_path, executable only by the services listed.
FUNCTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    # A template decision on a fix files a draft template with its version 1
    # (services.pilot.drafts); returns the template's id.
    "file_template_draft": (SCRIPTS, (PILOT,)),
}

_EVERY_SERVICE_READS_CORE = (
    "USAGE ON SCHEMA core",
    "USAGE ON SCHEMA exposed",
    # Every request loads its principal (shared.auth).
    "SELECT ON core.accounts",
    "SELECT ON core.teams",
    "SELECT ON core.users",
)
_OUTBOX_WRITER = (
    # shared.events: bump() adds the events, publish_events() marks them sent.
    "SELECT ON core.outbox_events",
    "INSERT ON core.outbox_events",
    "UPDATE (last_error, publish_attempts, published_at, updated_at) ON core.outbox_events",
)

# Every privilege each service role holds outside its own schema, as the test spells them:
# "PRIVILEGE ON SCHEMA name", "PRIVILEGE ON schema.relation" or
# "PRIVILEGE (column, ...) ON schema.relation" (columns sorted).
CROSS_SERVICE_PRIVILEGES: dict[str, frozenset[str]] = {
    "rf_scripts": frozenset(
        (
            *_EVERY_SERVICE_READS_CORE,
            *_OUTBOX_WRITER,
            # Login rehashes a password stored with older Argon2 parameters.
            "UPDATE (password_hash, updated_at) ON core.users",
            # Owners set the account's default delivery of sensitive parameters.
            "UPDATE (default_secret_delivery, updated_at) ON core.accounts",
            "SELECT ON exposed.pilot_sessions",
            # Owner of exposed.file_template_draft (an owner's own privilege, listed once the
            # function's ACL is set).
            "EXECUTE ON FUNCTION exposed.file_template_draft",
            # The one cross-service write: a generation linked to a session bumps it
            # (shared.events.bump, the same code path pilot uses), which reads these columns.
            "USAGE ON SCHEMA pilot",
            "SELECT (account_id, id, state_version, status) ON pilot.ai_sessions",
            "UPDATE (state_version, updated_at) ON pilot.ai_sessions",
        )
    ),
    "rf_pilot": frozenset(
        (
            *_EVERY_SERVICE_READS_CORE,
            *_OUTBOX_WRITER,
            # The usage ledger (shared.usage): chat turns record their calls; the usage API
            # reports them and sets the budget.
            "SELECT ON core.llm_usage",
            "INSERT ON core.llm_usage",
            "SELECT ON core.note_reuses",
            "UPDATE (budget_warned_month, monthly_budget_usd, updated_at) ON core.accounts",
            "SELECT ON exposed.scripts_session_runs",
            "SELECT ON exposed.scripts_templates",
            "SELECT ON exposed.notes_integrations",
            # Resolve creates the note rows, with the bundle's snapshot, in its own transaction
            # (the notes service's shared.resolution_snapshot implementation, which runs with
            # pilot's role), so a resolved version always has its note: the one write pilot
            # makes in notes' schema.
            "SELECT ON exposed.pilot_sessions",
            "SELECT ON exposed.pilot_session_facts",
            "SELECT ON exposed.pilot_suggested_fixes",
            "USAGE ON SCHEMA notes",
            "INSERT ON notes.resolution_notes",
            "SELECT (id, kind, session_id, state_version) ON notes.resolution_notes",
            # The library match (services.pilot.library_match) ranks the templates by their
            # search document; a template decision on a fix files a draft under a category
            # through scripts' own function (services.pilot.drafts): pilot holds no privilege
            # on scripts' schema.
            "SELECT ON exposed.scripts_categories",
            "EXECUTE ON FUNCTION exposed.file_template_draft",
        )
    ),
    "rf_notes": frozenset(
        (
            *_EVERY_SERVICE_READS_CORE,
            *_OUTBOX_WRITER,
            "SELECT ON core.llm_usage",
            "INSERT ON core.llm_usage",
            "INSERT ON core.note_reuses",
            "UPDATE (budget_warned_month, updated_at) ON core.accounts",
            "SELECT ON exposed.pilot_sessions",
            "SELECT ON exposed.pilot_session_facts",
            "SELECT ON exposed.pilot_suggested_fixes",
            "SELECT ON exposed.scripts_session_runs",
        )
    ),
}


class ExposedBase(DeclarativeBase):
    """Read-only models of the `exposed` views; not part of `Base.metadata`."""

    metadata = MetaData(schema=EXPOSED)
    type_annotation_map = {
        dict[str, Any]: JSONB,
        uuid.UUID: UUID(as_uuid=True),
        datetime: DateTime(timezone=True),
    }


class PilotSession(ExposedBase):
    """A FlowPilot session's state, as notes and scripts may read it."""

    __tablename__ = "pilot_sessions"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    account_id: Mapped[uuid.UUID]
    title: Mapped[str] = mapped_column(String(300))
    ticket_ref: Mapped[str | None] = mapped_column(String(200))
    problem: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20))
    state_version: Mapped[int] = mapped_column(Integer)
    resolved_at: Mapped[datetime | None]
    resolved_version: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime]


class PilotSessionFact(ExposedBase):
    __tablename__ = "pilot_session_facts"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    session_id: Mapped[uuid.UUID]
    account_id: Mapped[uuid.UUID]
    kind: Mapped[str] = mapped_column(String(20))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class PilotSuggestedFix(ExposedBase):
    __tablename__ = "pilot_suggested_fixes"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    session_id: Mapped[uuid.UUID]
    account_id: Mapped[uuid.UUID]
    title: Mapped[str] = mapped_column(String(200))
    summary: Mapped[str | None] = mapped_column(Text)
    steps: Mapped[list[Any]] = mapped_column(JSONB)
    script: Mapped[str | None] = mapped_column(Text)
    template_id: Mapped[uuid.UUID | None]
    confidence: Mapped[int | None] = mapped_column(Integer)
    decision: Mapped[str | None] = mapped_column(String(20))
    superseded_at: Mapped[datetime | None]
    created_at: Mapped[datetime]


class ScriptSessionRun(ExposedBase):
    """A script generated for a FlowPilot session, with its template's name. The parameters
    are stored already redacted by the scripts service; the script text is not exposed."""

    __tablename__ = "scripts_session_runs"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    ai_session_id: Mapped[uuid.UUID]
    account_id: Mapped[uuid.UUID]
    template_id: Mapped[uuid.UUID]
    template_name: Mapped[str] = mapped_column(String(200))
    parameters_used: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class ScriptTemplateSummary(ExposedBase):
    """What a fix may name of a template, with the columns its visibility rule reads, and what
    the library match ranks (its search document) and a draft's category is taken from."""

    __tablename__ = "scripts_templates"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    scope: Mapped[str] = mapped_column(String(20))
    account_id: Mapped[uuid.UUID | None]
    team_id: Mapped[uuid.UUID | None]
    created_by: Mapped[uuid.UUID | None]
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    usage_count: Mapped[int] = mapped_column(Integer)
    is_active: Mapped[bool]
    # draft: made from a fix and not yet published, so no fix may name it.
    status: Mapped[str] = mapped_column(String(20))
    source_fix_id: Mapped[uuid.UUID | None]
    category_id: Mapped[uuid.UUID]
    use_case: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[list[str]] = mapped_column(ARRAY(String(64)))
    # The library's weighted search document; only the library match reads it.
    search_vector: Mapped[Any] = mapped_column(TSVECTOR, deferred=True)


class ScriptCategorySummary(ExposedBase):
    """A category a draft may be filed under."""

    __tablename__ = "scripts_categories"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(200))
    sort_order: Mapped[int] = mapped_column(Integer)
    is_active: Mapped[bool]


class NotesIntegration(ExposedBase):
    """Whether an account has a ticketing integration, and of which kind: never its secrets."""

    __tablename__ = "notes_integrations"

    account_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20))


@event.listens_for(Session, "before_flush")
def _refuse_writes_to_views(session: Session, *_: Any) -> None:
    # The roles' grants refuse them too; this names the mistake before the database does.
    for obj in (*session.new, *session.dirty, *session.deleted):
        if isinstance(obj, ExposedBase):
            raise TypeError(f"{type(obj).__name__} maps a read-only view of another service")
