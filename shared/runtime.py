"""Process-wide wiring: resolve settings (starting embedded servers when URLs are unset) and
configure the database once per process. Called by every app factory, the CLI and the worker;
nothing here runs at import."""

from __future__ import annotations

import os
import threading
from dataclasses import replace

from shared import secrets_at_rest
from shared.config import Settings
from shared.db import db

_settings: Settings | None = None
_lock = threading.Lock()


def resolve_servers(settings: Settings) -> Settings:
    """Fill unset DATABASE_URL / REDIS_URL with the embedded servers under DATA_DIR, and export
    them so that child processes (gunicorn workers, Celery pools) use the same ones."""
    if settings.DATABASE_URL and settings.REDIS_URL:
        return settings
    from shared.embedded import ensure_servers

    if settings.REDIS_URL is None:
        # Remembered so that `make run` stops, on Ctrl-C, the Redis it started.
        os.environ.setdefault("RF_STARTED_EMBEDDED_REDIS", "1")
    servers = ensure_servers(
        settings.DATA_DIR,
        database_url=settings.DATABASE_URL,
        redis_url=settings.REDIS_URL,
        redis_port=settings.EMBEDDED_REDIS_PORT,
    )
    assert servers.database_url is not None and servers.redis_url is not None
    os.environ["DATABASE_URL"] = servers.database_url
    os.environ["REDIS_URL"] = servers.redis_url
    return replace(settings, DATABASE_URL=servers.database_url, REDIS_URL=servers.redis_url)


def configure(settings: Settings | None = None) -> Settings:
    global _settings
    with _lock:
        settings = (settings or Settings.from_env()).validate()
        secrets_at_rest.configure(settings.integration_keys)
        settings = resolve_servers(settings)
        assert settings.DATABASE_URL is not None
        # Connections open lazily; the ceiling must cover a worker's threads (one generation or
        # delivery each) so that none waits on the pool while another waits on the LLM.
        db.configure(settings.DATABASE_URL, max_overflow=max(20, 2 * settings.WORKER_CONCURRENCY))
        _settings = settings
        return settings


def current_settings() -> Settings | None:
    return _settings


def require_settings() -> Settings:
    if _settings is None:
        raise RuntimeError("runtime is not configured; call shared.runtime.configure() first")
    return _settings
