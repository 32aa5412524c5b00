"""The contract between pilot's Resolve and the notes service: the note snapshot taken inside
Resolve's transaction.

Resolve (services.pilot.sessions.resolve_session) owns the session's state; the notes service
owns the note rows and knows what a note is made from. Resolving must create each note kind's
row, carrying a snapshot of exactly the resolved version's data, in the same transaction as the
bump (under the session's row lock), so a resolved version always has its notes and nothing
written after the resolve can leak into them. Neither service imports the other: pilot calls
`take_snapshot`, typed by `ResolutionSnapshot`; the composition root (`app.wiring.wire`, run by
the gateway and by the standalone pilot entry point `app.pilot:create_app()`) provides the notes
service's implementation (`services.notes.bundle.snapshot_resolution`) once per process.

A process that never wired it fails loudly: pilot's app factory calls `require_provided()` at
start-up, and `take_snapshot` raises rather than resolving without notes.
"""

from __future__ import annotations

import uuid
from typing import Protocol

from sqlalchemy.orm import Session


class ResolutionSnapshot(Protocol):
    def __call__(self, session: Session, session_id: uuid.UUID) -> bool:
        """Inside Resolve's open transaction, after its bump: create every note kind's row with
        the snapshot of what it is made from. Returns whether the note can say what fixed it
        (a `resolution` fact, or a fix decided other than dismissed); False, creating nothing
        more, when the session's bundle cannot be read."""
        ...


class SnapshotNotProvided(RuntimeError):
    """Resolve was reached in a process whose composition root did not wire the snapshot."""


_provided: ResolutionSnapshot | None = None


def provide(snapshot: ResolutionSnapshot) -> None:
    """Install the implementation (the composition root calls this; calling it again with the
    same function is harmless)."""
    global _provided
    _provided = snapshot


def require_provided() -> ResolutionSnapshot:
    """The provided implementation; raises `SnapshotNotProvided` when there is none."""
    if _provided is None:
        raise SnapshotNotProvided(
            "Resolve needs the notes service's snapshot and none was provided: start pilot "
            "through its composition root (app.pilot:create_app() or the gateway)"
        )
    return _provided


def take_snapshot(session: Session, session_id: uuid.UUID) -> bool:
    """The provided `ResolutionSnapshot`, called in the caller's transaction."""
    return require_provided()(session, session_id)
