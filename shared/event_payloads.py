"""Typed, versioned payloads of the events published through the outbox: the one definition
the producers (shared.events.bump, pilot's Resolve and fix decisions) and the consumer (the
notes worker) share.

Each event is a frozen dataclass with its topic and version. :meth:`SessionEvent.to_payload`
is what the outbox row stores and the broker carries; :func:`parse_event` turns a received
payload back into its class and refuses (:class:`InvalidEvent`, naming the field) one that
lacks a required field, has a field of the wrong type, or was written by a newer version of
the producer than this consumer knows. Validation is marshmallow's, with the schema derived
from the dataclass's fields, so a field is declared once.

The envelope — `event_id`, `occurred_at`, `request_id` — is added by the outbox
(:func:`shared.events.enqueue_event`). A payload without `version` is version 1: the rows
written before the field existed.
"""

from __future__ import annotations

import dataclasses
import types
import typing
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

STATE_CHANGED = "session.state_changed"
SESSION_RESOLVED = "session.resolved"
FIX_DECIDED = "fix.decided"


class InvalidEvent(ValueError):
    """A payload the consumer refuses: `errors` names each offending field."""

    def __init__(self, topic: str | None, errors: Mapping[str, Any]) -> None:
        super().__init__(f"invalid {topic or 'event'} payload: {dict(errors)}")
        self.topic = topic
        self.errors = dict(errors)


@dataclass(frozen=True, kw_only=True)
class SessionEvent:
    """What every session event carries: whose session, and the version the write produced."""

    TOPIC: ClassVar[str] = ""
    VERSION: ClassVar[int] = 1

    account_id: uuid.UUID
    session_id: uuid.UUID
    state_version: int

    def to_payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {"topic": self.TOPIC, "version": self.VERSION}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            body[field.name] = str(value) if isinstance(value, uuid.UUID) else value
        return body

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Self:
        try:
            # The envelope (event_id, occurred_at, request_id) is the outbox's, not the event's.
            loaded = _schema_for(cls)(unknown=EXCLUDE).load(dict(payload))
        except ValidationError as exc:
            raise InvalidEvent(cls.TOPIC, _messages(exc)) from exc
        loaded.pop("topic", None)
        loaded.pop("version", None)
        return cls(**loaded)


@dataclass(frozen=True, kw_only=True)
class StateChanged(SessionEvent):
    """Any write to a session (bump): its cause names what changed."""

    TOPIC: ClassVar[str] = STATE_CHANGED

    cause: str


@dataclass(frozen=True, kw_only=True)
class SessionResolved(SessionEvent):
    """Resolve: the note is made from exactly `resolved_version`'s data."""

    TOPIC: ClassVar[str] = SESSION_RESOLVED

    resolved_version: int
    ticket_ref: str | None
    resolved_by: uuid.UUID | None
    forced: bool


@dataclass(frozen=True, kw_only=True)
class FixDecided(SessionEvent):
    """The engineer's decision on the session's suggested fix."""

    TOPIC: ClassVar[str] = FIX_DECIDED

    fix_id: uuid.UUID
    decision: str
    decided_by: uuid.UUID


EVENT_TYPES: dict[str, type[SessionEvent]] = {
    event.TOPIC: event for event in (StateChanged, SessionResolved, FixDecided)
}


@dataclass(frozen=True)
class ReceivedEvent:
    """A consumed payload: its outbox id (for de-duplication) and the typed event."""

    event_id: uuid.UUID
    event: SessionEvent


def parse_event(payload: Mapping[str, Any]) -> ReceivedEvent | None:
    """The typed event of a received payload; None for a topic this consumer does not know
    (another consumer's event). Raises InvalidEvent for a payload it refuses."""
    topic = payload.get("topic")
    event_type = EVENT_TYPES.get(topic) if isinstance(topic, str) else None
    if event_type is None:
        return None
    try:
        event_id = uuid.UUID(str(payload["event_id"]))
    except (KeyError, ValueError) as exc:
        raise InvalidEvent(topic, {"event_id": ["a UUID is required"]}) from exc
    return ReceivedEvent(event_id, event_type.from_payload(payload))


def _messages(exc: ValidationError) -> dict[str, Any]:
    messages = exc.normalized_messages()
    return messages if isinstance(messages, dict) else {"_schema": messages}


def _field_for(hint: Any, *, required: bool) -> fields.Field[Any]:
    nullable = False
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        nullable = len(args) < len(typing.get_args(hint))
        (hint,) = args
    kinds: dict[Any, type[fields.Field[Any]]] = {
        uuid.UUID: fields.UUID,
        int: fields.Integer,
        str: fields.String,
        bool: fields.Boolean,
    }
    options: dict[str, Any] = {"required": required, "allow_none": nullable}
    if hint is int:
        options["strict"] = True
    return kinds[hint](**options)


_schemas: dict[type[SessionEvent], type[Schema]] = {}


def _schema_for(event_type: type[SessionEvent]) -> type[Schema]:
    if event_type in _schemas:
        return _schemas[event_type]
    hints = typing.get_type_hints(event_type)
    declared: dict[str, fields.Field[Any]] = {
        field.name: _field_for(
            hints[field.name],
            required=field.default is dataclasses.MISSING
            and field.default_factory is dataclasses.MISSING,
        )
        for field in dataclasses.fields(event_type)
    }
    declared["topic"] = fields.String(required=True, validate=validate.Equal(event_type.TOPIC))
    declared["version"] = fields.Integer(
        load_default=1,
        strict=True,
        validate=validate.Range(min=1, max=event_type.VERSION),
    )
    schema = Schema.from_dict(declared, name=f"{event_type.__name__}PayloadSchema")
    _schemas[event_type] = schema
    return schema
