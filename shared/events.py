"""One code path for every writer of a FlowPilot session.

`bump()` raises the session's state_version by exactly one with one atomic
`UPDATE ... SET state_version = state_version + 1 RETURNING state_version`, and writes the
matching outbox rows, all inside the caller's transaction. `write_transaction()` publishes those
rows after the commit; anything the broker did not take is published later by `relay_outbox()`
(run periodically by the notes worker's beat), so a broker outage loses no event.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from shared.db import db
from shared.event_payloads import SessionEvent, StateChanged
from shared.models import AISession, OutboxEvent

log = logging.getLogger(__name__)

_OUTBOX_KEY = "rf_outbox_ids"

# After a failed publish, writes skip the immediate publish for a while and leave their events to
# the relay, so a broker outage does not add a connect timeout to every write's response.
PUBLISH_BACKOFF_S = 5.0
_publish_suspended_until = 0.0


class SessionNotFound(LookupError):
    """No session with that id in the caller's account: answer 404."""


class SessionReadOnly(RuntimeError):
    """The session is resolved: answer 409 until it is reopened."""


def _now() -> datetime:
    return datetime.now(UTC)


def enqueue_event(session: Session, event: SessionEvent) -> OutboxEvent:
    """Write the event's outbox row inside the caller's transaction (published after commit).
    The payload is the event's typed one (shared.event_payloads) inside the outbox's
    envelope: event_id, occurred_at and the request id."""
    event_id = uuid.uuid4()
    body: dict[str, Any] = {
        "event_id": str(event_id),
        "occurred_at": _now().isoformat(),
        **event.to_payload(),
    }
    try:
        from shared.observability import current_request_id

        request_id = current_request_id()
        if request_id:
            body["request_id"] = request_id
    except ImportError:  # pragma: no cover - observability is optional for this module
        pass
    row = OutboxEvent(
        id=event_id,
        topic=event.TOPIC,
        account_id=event.account_id,
        session_id=event.session_id,
        payload=body,
    )
    session.add(row)
    session.info.setdefault(_OUTBOX_KEY, []).append(event_id)
    return row


def bump(
    session: Session,
    *,
    session_id: uuid.UUID,
    account_id: uuid.UUID,
    cause: str,
    require_active: bool = True,
    extra_events: Iterable[Callable[..., SessionEvent]] = (),
) -> int:
    """Raise state_version by one and record why. Returns the new version.

    The account condition is part of the UPDATE, so naming another account's session changes
    nothing and raises SessionNotFound. With require_active, a resolved session raises
    SessionReadOnly and is left untouched. Each of `extra_events` is called with the
    session's `account_id`, `session_id` and the new `state_version` and returns a typed event
    (e.g. ``functools.partial(FixDecided, fix_id=..., decision=..., decided_by=...)``), written
    to the outbox after the `session.state_changed` one.
    """
    conditions = [AISession.id == session_id, AISession.account_id == account_id]
    if require_active:
        conditions.append(AISession.status == "active")
    version = session.execute(
        update(AISession)
        .where(*conditions)
        .values(state_version=AISession.state_version + 1, updated_at=func.now())
        .returning(AISession.state_version)
    ).scalar_one_or_none()
    if version is None:
        exists = session.execute(
            select(AISession.status).where(
                AISession.id == session_id, AISession.account_id == account_id
            )
        ).scalar_one_or_none()
        if exists is None:
            raise SessionNotFound(str(session_id))
        raise SessionReadOnly(str(session_id))
    version = int(version)
    enqueue_event(
        session,
        StateChanged(
            account_id=account_id, session_id=session_id, state_version=version, cause=cause
        ),
    )
    for make_event in extra_events:
        enqueue_event(
            session,
            make_event(account_id=account_id, session_id=session_id, state_version=version),
        )
    return version


def pending_event_ids(session: Session) -> list[uuid.UUID]:
    return list(session.info.get(_OUTBOX_KEY, []))


@contextmanager
def write_transaction() -> Iterator[Session]:
    """A write transaction whose outbox events are published once it has committed."""
    with db.transaction() as session:
        yield session
        event_ids = pending_event_ids(session)
        session.info.pop(_OUTBOX_KEY, None)
    if event_ids:
        publish_events(event_ids)


def _broker_url() -> str | None:
    from shared.runtime import current_settings

    settings = current_settings()
    return settings.REDIS_URL if settings is not None else None


def _publish_locked(session: Session, events: list[OutboxEvent], broker_url: str) -> int:
    global _publish_suspended_until
    from shared.messaging import send_event

    published = 0
    for event in events:
        try:
            headers = {}
            request_id = event.payload.get("request_id")
            if request_id:
                headers["request_id"] = str(request_id)
            send_event(broker_url, event.payload, headers=headers)
        except Exception as exc:  # noqa: BLE001 - any broker failure leaves the row for the relay
            event.publish_attempts += 1
            event.last_error = f"{type(exc).__name__}: {exc}"[:500]
            _publish_suspended_until = time.monotonic() + PUBLISH_BACKOFF_S
            log.warning("outbox publish failed; the relay will retry", extra={"topic": event.topic})
            # Keep commit order: a later event must not overtake one that failed.
            break
        event.published_at = _now()
        event.publish_attempts += 1
        published += 1
    return published


def publish_events(event_ids: list[uuid.UUID]) -> int:
    """Publish the given outbox rows now. Rows another process is publishing are skipped."""
    broker_url = _broker_url()
    if broker_url is None or time.monotonic() < _publish_suspended_until:
        return 0
    with db.transaction() as session:
        events = list(
            session.scalars(
                select(OutboxEvent)
                .where(OutboxEvent.id.in_(event_ids), OutboxEvent.published_at.is_(None))
                .order_by(OutboxEvent.seq)
                .with_for_update(skip_locked=True)
            )
        )
        return _publish_locked(session, events, broker_url)


def relay_outbox(broker_url: str, *, batch: int = 200, min_age_s: float = 1.0) -> int:
    """Publish everything left unsent (oldest first). Returns how many were published."""
    global _publish_suspended_until
    cutoff = _now() - timedelta(seconds=min_age_s)
    with db.transaction() as session:
        events = list(
            session.scalars(
                select(OutboxEvent)
                .where(OutboxEvent.published_at.is_(None), OutboxEvent.created_at <= cutoff)
                .order_by(OutboxEvent.seq)
                .limit(batch)
                .with_for_update(skip_locked=True)
            )
        )
        published = _publish_locked(session, events, broker_url)
    if published and published == len(events):
        # The broker answers again: writes may publish immediately.
        _publish_suspended_until = 0.0
    return published


def outbox_backlog(session: Session) -> int:
    return int(
        session.execute(
            select(func.count()).select_from(OutboxEvent).where(OutboxEvent.published_at.is_(None))
        ).scalar_one()
    )
