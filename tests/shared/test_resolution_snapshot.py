"""The Resolve → notes snapshot contract: wired by the composition root, loud when it is not."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from shared import resolution_snapshot
from shared.config import Settings


@pytest.fixture
def unwired() -> Iterator[None]:
    saved = resolution_snapshot._provided
    resolution_snapshot._provided = None
    try:
        yield
    finally:
        resolution_snapshot._provided = saved


def test_unwired_snapshot_refuses_rather_than_resolving_without_notes(unwired: None) -> None:
    with pytest.raises(resolution_snapshot.SnapshotNotProvided, match="composition root"):
        resolution_snapshot.take_snapshot(None, uuid.uuid4())  # type: ignore[arg-type]


def test_pilot_app_refuses_to_start_unwired(unwired: None, migrated: Settings) -> None:
    from services import pilot

    with pytest.raises(resolution_snapshot.SnapshotNotProvided):
        pilot.create_app(migrated)


def test_standalone_pilot_entry_point_wires_the_notes_snapshot(
    unwired: None, migrated: Settings
) -> None:
    from app.pilot import create_app
    from services.notes.bundle import snapshot_resolution

    create_app(migrated)
    assert resolution_snapshot.require_provided() is snapshot_resolution


def test_gateway_wires_the_notes_snapshot(unwired: None, migrated: Settings) -> None:
    from app.gateway import create_app
    from services.notes.bundle import snapshot_resolution

    create_app(migrated)
    assert resolution_snapshot.require_provided() is snapshot_resolution
