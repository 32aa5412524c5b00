"""The contracts between services, wired to their implementations once per process.

A service that needs another's behaviour calls a typed contract in `shared/` and never imports
the other service; this module, part of the composition root, is the one place that names both
sides. `wire()` is idempotent; every entry point that serves a service calling a contract runs
it before creating that service's app (the gateway, `app.pilot`).

- `shared.resolution_snapshot`: pilot's Resolve → `services.notes.bundle.snapshot_resolution`
  (the note rows and their snapshot, inside Resolve's transaction).
"""

from __future__ import annotations


def wire() -> None:
    from services.notes.bundle import snapshot_resolution
    from shared import resolution_snapshot

    resolution_snapshot.provide(snapshot_resolution)
