"""Process-wide wiring: resolve settings (starting embedded servers when URLs are unset) and
configure the database once per process. Called by every app factory, the CLI and the worker;
nothing here runs at import."""

from __future__ import annotations

import os
import threading
from dataclasses import replace
from pathlib import Path

from shared import secrets_at_rest
from shared.config import Settings
from shared.db import db

_settings: Settings | None = None
_lock = threading.Lock()
# The data folder of the embedded Redis this very process started (not joined), if any.
_started_redis: Path | None = None


def resolve_servers(settings: Settings) -> Settings:
    """Fill unset DATABASE_URL / REDIS_URL with the embedded servers under DATA_DIR, and export
    them so that child processes (gunicorn workers, Celery pools) use the same ones."""
    if settings.DATABASE_URL and settings.REDIS_URL:
        return settings
    global _started_redis
    from shared.embedded import ensure_servers, redis_owner

    joined = settings.REDIS_URL is not None or redis_owner(settings.DATA_DIR) is not None
    servers = ensure_servers(
        settings.DATA_DIR,
        database_url=settings.DATABASE_URL,
        redis_url=settings.REDIS_URL,
        redis_port=settings.EMBEDDED_REDIS_PORT,
    )
    assert servers.database_url is not None and servers.redis_url is not None
    if not joined and redis_owner(settings.DATA_DIR) is not None:
        # Remembered so that `make run` (on Ctrl-C) or the CLI (on exit) stops what it started.
        _started_redis = settings.DATA_DIR
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
        overflow = settings.DB_POOL_OVERFLOW
        if overflow is None:
            overflow = max(20, 2 * settings.WORKER_CONCURRENCY)
        db.configure(settings.DATABASE_URL, pool_size=settings.DB_POOL_SIZE, max_overflow=overflow)
        _settings = settings
        return settings


def release_servers() -> None:
    """Stop the embedded Redis if this process started it; one it joined is left running.
    (The embedded PostgreSQL counts its users and stops with the last one by itself.)"""
    global _started_redis
    if _started_redis is not None:
        from shared.embedded import stop_redis

        stop_redis(_started_redis)
        _started_redis = None


def current_settings() -> Settings | None:
    return _settings


def require_settings() -> Settings:
    if _settings is None:
        raise RuntimeError("runtime is not configured; call shared.runtime.configure() first")
    return _settings
