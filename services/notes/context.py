"""What the notes code needs in one process (settings, Redis, the note cache, the generator,
a way to enqueue tasks), built once per process. No Flask: the API and the tasks both pass it."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import redis

from services.notes.bundle import LoadedBundle
from services.notes.cache import NoteCache
from services.notes.generator import (
    ResolutionNoteGenerator,
    bundle_fingerprint,
)
from shared.config import Settings
from shared.llm import OFFLINE_MODEL, LLMClient
from shared.redis_client import get_redis
from shared.tasks import TASK_QUEUES

# How many times `NOTES_LOCK_TTL_S` a lock handed to a queued task lives (30 s -> 120 s).
HANDOVER_LOCK_FACTOR = 4


class NotesContext:
    """What the notes code needs in one process: settings, Redis, the cache, the generator and
    a way to enqueue tasks. Built once per process (see :func:`context_for`)."""

    def __init__(self, settings: Settings, redis_client: redis.Redis | None = None) -> None:
        if settings.REDIS_URL is None:
            raise RuntimeError("REDIS_URL is not configured")
        self.settings = settings
        # Durable keys (event de-duplication) live beside the broker; the note cache may live on
        # its own LRU-bounded Redis (CACHE_REDIS_URL). Losing a cache key costs one generation.
        self.redis = redis_client or get_redis(settings.REDIS_URL)
        cache_url = settings.cache_redis_url or settings.REDIS_URL
        cache_redis = redis_client or get_redis(cache_url)
        self.cache = NoteCache(cache_redis, prefix=settings.REDIS_KEY_PREFIX)
        self._generator: ResolutionNoteGenerator | None = None
        self._lock = threading.Lock()

    @property
    def generator(self) -> ResolutionNoteGenerator:
        # Built on first use: an API process only fingerprints and never needs the SDK client.
        with self._lock:
            if self._generator is None:
                self._generator = ResolutionNoteGenerator(LLMClient.from_settings(self.settings))
            return self._generator

    @property
    def model(self) -> str:
        """The model a generation would report (what fingerprints are computed with)."""
        return self.settings.ANTHROPIC_MODEL if self.settings.llm_online else OFFLINE_MODEL

    @property
    def lock_ttl_s(self) -> float:
        return self.settings.NOTES_LOCK_TTL_S

    @property
    def handover_lock_ttl_s(self) -> float:
        """The lock a preview takes for a task still waiting in the queue: nothing renews it
        until a worker starts the task (and shortens it to `lock_ttl_s`, kept alive by its
        heartbeat), so it must outlast a queue backlog, or a second preview would take the lock
        and generate the same version again."""
        return self.settings.NOTES_LOCK_TTL_S * HANDOVER_LOCK_FACTOR

    def fingerprint(self, loaded: LoadedBundle) -> str:
        return bundle_fingerprint(loaded.bundle, model=self.model)

    def enqueue(self, name: str, *args: Any, countdown: float | None = None) -> None:
        """Publish a task by name on its queue; raises if the broker cannot take it."""
        from shared.messaging import get_publisher

        assert self.settings.REDIS_URL is not None
        options: dict[str, Any] = {"queue": TASK_QUEUES[name], "retry": False}
        if countdown is not None and countdown > 0:
            options["countdown"] = countdown
        get_publisher(self.settings.REDIS_URL).send_task(name, args=list(args), **options)


_context: NotesContext | None = None
_context_lock = threading.Lock()


def context_for(settings: Settings) -> NotesContext:
    """The process's context for these settings (rebuilt when the settings object changes)."""
    global _context
    with _context_lock:
        if _context is None or _context.settings is not settings:
            _context = NotesContext(settings)
        return _context


def now_iso() -> str:
    return datetime.now(UTC).isoformat()
