"""Settings, read from the environment with typed parsers.

Nothing here runs at import: `Settings.from_env()` is called by each app factory, the CLI and
the worker, and `validate()` turns a dangerous configuration into a start-up error.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# A current Sonnet id from the anthropic SDK's own model list; Sonnet 4.5 retired on
# 2026-11-30.
DEFAULT_ANTHROPIC_MODEL = "claude-sonnet-5-5"

# immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: the schedule the established webhook
# providers (Svix, Standard Webhooks) use.
DEFAULT_WEBHOOK_RETRY_SCHEDULE = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)

DEV_ENVS = frozenset({"dev", "development", "test"})
DEV_SECRET_KEY = "dev-only-secret-key-change-me-0123456789abcdef"


class ConfigError(RuntimeError):
    """The environment describes a configuration the product must not start with."""


def _str(env: Mapping[str, str], name: str, default: str | None = None) -> str | None:
    value = env.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip()


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = _str(env, name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = _str(env, name)
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = _str(env, name)
    if raw is None:
        return default
    lowered = raw.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be a boolean (true/false/on/off), got {raw!r}")


def _schedule(env: Mapping[str, str], name: str, default: tuple[int, ...]) -> tuple[int, ...]:
    raw = _str(env, name)
    if raw is None:
        return default
    try:
        delays = tuple(int(part.strip()) for part in raw.split(",") if part.strip())
    except ValueError as exc:
        raise ConfigError(f"{name} must be comma-separated seconds, got {raw!r}") from exc
    if not delays or any(d < 0 for d in delays):
        raise ConfigError(f"{name} needs at least one non-negative delay, got {raw!r}")
    return delays


@dataclass(frozen=True)
class Settings:
    # Unset means production: only an explicit dev or test may use the development keys.
    ENV: str = "production"
    DATABASE_URL: str | None = None
    REDIS_URL: str | None = None
    # The notes cache may live on its own LRU-bounded Redis (deploy/); defaults to REDIS_URL.
    CACHE_REDIS_URL: str | None = None
    SECRET_KEY: str | None = None
    # Fernet key(s) encrypting integration secrets at rest, comma-separated, newest first.
    INTEGRATION_KEY: str | None = None
    DATA_DIR: Path = PROJECT_ROOT / ".data"
    # Prefix of every Redis key the product writes, so tests and tenants of one server can
    # share it without seeing each other.
    REDIS_KEY_PREFIX: str = "rf"

    TOKEN_TTL_S: int = 12 * 3600
    LOG_LEVEL: str = "INFO"

    GATEWAY_PORT: int = 8000
    SCRIPTS_PORT: int = 8001
    PILOT_PORT: int = 8002
    NOTES_PORT: int = 8003
    EMBEDDED_REDIS_PORT: int = 6389
    WEB_CONCURRENCY: int = 2
    WORKER_CONCURRENCY: int = 8
    # `make run`'s Celery worker processes, each with WORKER_CONCURRENCY threads. Two, so that a
    # killed worker's jobs are taken over by the other within WORKER_DEAD_AFTER_S + a beat,
    # instead of waiting for the restarted process to boot.
    WORKER_PROCESSES: int = 2

    ANTHROPIC_API_KEY: str | None = None
    ANTHROPIC_BASE_URL: str | None = None
    ANTHROPIC_MODEL: str = DEFAULT_ANTHROPIC_MODEL
    LLM_TIMEOUT_S: float = 60.0
    LLM_MAX_RETRIES: int = 3
    # Token budget for the conversation history sent with each chat turn.
    CHAT_HISTORY_TOKEN_BUDGET: int = 12000
    # Streamed chat turns in progress at once per API process (each holds a thread and an
    # LLM call, and may outlive its request); past it a stream answers 429.
    CHAT_STREAM_CONCURRENCY: int = 32

    NOTES_PREWARM: bool = True
    NOTES_PREWARM_QUIET_S: float = 2.0
    # The single-flight lock's expiry if its holder dies; a live holder's heartbeat renews it
    # every third of it. Kept below JOB_LEASE_S + SWEEP_INTERVAL_S so that a kill during a
    # generation delays the note by no more than the lease and the sweeper do.
    NOTES_LOCK_TTL_S: float = 30.0
    NOTES_PREVIEW_WAIT_S: float = 30.0
    # How long a claimed job (note materialisation, delivery) may go silent before the sweeper
    # hands it to another worker. The backstop: a job whose worker process stopped beating
    # (below) is handed on long before its lease runs out.
    JOB_LEASE_S: int = 45
    SWEEP_INTERVAL_S: float = 10.0
    # Every worker process records that it is alive every WORKER_BEAT_S (one write per process,
    # not per job) and, as often, hands on the jobs of a process silent for WORKER_DEAD_AFTER_S:
    # a SIGKILLed worker's job is back within WORKER_DEAD_AFTER_S + WORKER_BEAT_S (7 s).
    WORKER_BEAT_S: float = 2.0
    WORKER_DEAD_AFTER_S: float = 5.0
    # Each process's PostgreSQL pool (the transactional engine and the autocommit read engine
    # each get one): connections kept, and extra ones allowed under load (unset: 20, or twice
    # WORKER_CONCURRENCY when larger).
    DB_POOL_SIZE: int = 10
    DB_POOL_OVERFLOW: int | None = None
    # How often beat submits queued batch generations and polls the Message Batches API.
    BATCH_INTERVAL_S: float = 60.0
    OUTBOX_RELAY_INTERVAL_S: float = 5.0

    WEBHOOK_RETRY_SCHEDULE_S: tuple[int, ...] = DEFAULT_WEBHOOK_RETRY_SCHEDULE
    # A whole attempt (connect, TLS, send, answer) must finish within this many seconds.
    WEBHOOK_TIMEOUT_S: float = 15.0
    # Deliveries of one account in flight at once (a slow endpoint holds this many worker
    # slots, not all of them), and how soon a delivery over that cap is tried again.
    WEBHOOK_ACCOUNT_CONCURRENCY: int = 2
    WEBHOOK_ACCOUNT_BUSY_DELAY_S: float = 2.0
    ALLOW_PRIVATE_WEBHOOKS: bool = False

    # Login: rate limits per client IP and per account (the `limits` notation), lockout after
    # that many failures in a row, and how many Argon2 hashes one process runs at once.
    LOGIN_RATE_PER_IP: str = "30/minute"
    LOGIN_RATE_PER_ACCOUNT: str = "10/minute"
    LOGIN_LOCKOUT_FAILURES: int = 10
    LOGIN_LOCKOUT_S: int = 900
    LOGIN_HASH_CONCURRENCY: int = 2
    LOGIN_HASH_WAIT_S: float = 10.0
    # Bearer token Prometheus sends to read an API process's /metrics (unset: not served).
    METRICS_TOKEN: str | None = None
    # Proxies in front of the API whose X-Forwarded-For is trusted for the client address
    # (1 behind the deploy's nginx or ingress; 0 when clients connect directly).
    TRUSTED_PROXY_HOPS: int = 0

    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if env is None else env
        app_env = (_str(env, "RF_ENV") or "production").lower()
        settings = cls(
            ENV=app_env,
            DATABASE_URL=_str(env, "DATABASE_URL"),
            REDIS_URL=_str(env, "REDIS_URL"),
            CACHE_REDIS_URL=_str(env, "CACHE_REDIS_URL"),
            SECRET_KEY=_str(env, "SECRET_KEY"),
            INTEGRATION_KEY=_str(env, "INTEGRATION_KEY"),
            DATA_DIR=Path(_str(env, "RF_DATA_DIR") or str(PROJECT_ROOT / ".data")),
            REDIS_KEY_PREFIX=_str(env, "REDIS_KEY_PREFIX", "rf") or "rf",
            TOKEN_TTL_S=_int(env, "TOKEN_TTL_S", cls.TOKEN_TTL_S),
            LOG_LEVEL=(_str(env, "LOG_LEVEL", "INFO") or "INFO").upper(),
            GATEWAY_PORT=_int(env, "GATEWAY_PORT", cls.GATEWAY_PORT),
            SCRIPTS_PORT=_int(env, "SCRIPTS_PORT", cls.SCRIPTS_PORT),
            PILOT_PORT=_int(env, "PILOT_PORT", cls.PILOT_PORT),
            NOTES_PORT=_int(env, "NOTES_PORT", cls.NOTES_PORT),
            EMBEDDED_REDIS_PORT=_int(env, "EMBEDDED_REDIS_PORT", cls.EMBEDDED_REDIS_PORT),
            WEB_CONCURRENCY=_int(env, "WEB_CONCURRENCY", cls.WEB_CONCURRENCY),
            WORKER_CONCURRENCY=_int(env, "WORKER_CONCURRENCY", cls.WORKER_CONCURRENCY),
            WORKER_PROCESSES=_int(env, "WORKER_PROCESSES", cls.WORKER_PROCESSES),
            ANTHROPIC_API_KEY=_str(env, "ANTHROPIC_API_KEY"),
            ANTHROPIC_BASE_URL=_str(env, "ANTHROPIC_BASE_URL"),
            ANTHROPIC_MODEL=_str(env, "ANTHROPIC_MODEL", DEFAULT_ANTHROPIC_MODEL)
            or DEFAULT_ANTHROPIC_MODEL,
            LLM_TIMEOUT_S=_float(env, "LLM_TIMEOUT_S", cls.LLM_TIMEOUT_S),
            LLM_MAX_RETRIES=_int(env, "LLM_MAX_RETRIES", cls.LLM_MAX_RETRIES),
            CHAT_HISTORY_TOKEN_BUDGET=_int(
                env, "CHAT_HISTORY_TOKEN_BUDGET", cls.CHAT_HISTORY_TOKEN_BUDGET
            ),
            CHAT_STREAM_CONCURRENCY=_int(
                env, "CHAT_STREAM_CONCURRENCY", cls.CHAT_STREAM_CONCURRENCY
            ),
            NOTES_PREWARM=_bool(env, "NOTES_PREWARM", cls.NOTES_PREWARM),
            NOTES_PREWARM_QUIET_S=_float(env, "NOTES_PREWARM_QUIET_S", cls.NOTES_PREWARM_QUIET_S),
            NOTES_LOCK_TTL_S=_float(env, "NOTES_LOCK_TTL_S", cls.NOTES_LOCK_TTL_S),
            NOTES_PREVIEW_WAIT_S=_float(env, "NOTES_PREVIEW_WAIT_S", cls.NOTES_PREVIEW_WAIT_S),
            JOB_LEASE_S=_int(env, "JOB_LEASE_S", cls.JOB_LEASE_S),
            SWEEP_INTERVAL_S=_float(env, "SWEEP_INTERVAL_S", cls.SWEEP_INTERVAL_S),
            WORKER_BEAT_S=_float(env, "WORKER_BEAT_S", cls.WORKER_BEAT_S),
            WORKER_DEAD_AFTER_S=_float(env, "WORKER_DEAD_AFTER_S", cls.WORKER_DEAD_AFTER_S),
            DB_POOL_SIZE=_int(env, "DB_POOL_SIZE", cls.DB_POOL_SIZE),
            DB_POOL_OVERFLOW=(
                _int(env, "DB_POOL_OVERFLOW", 0) if _str(env, "DB_POOL_OVERFLOW") else None
            ),
            BATCH_INTERVAL_S=_float(env, "BATCH_INTERVAL_S", cls.BATCH_INTERVAL_S),
            OUTBOX_RELAY_INTERVAL_S=_float(
                env, "OUTBOX_RELAY_INTERVAL_S", cls.OUTBOX_RELAY_INTERVAL_S
            ),
            WEBHOOK_RETRY_SCHEDULE_S=_schedule(
                env, "WEBHOOK_RETRY_SCHEDULE_S", DEFAULT_WEBHOOK_RETRY_SCHEDULE
            ),
            WEBHOOK_TIMEOUT_S=_float(env, "WEBHOOK_TIMEOUT_S", cls.WEBHOOK_TIMEOUT_S),
            WEBHOOK_ACCOUNT_CONCURRENCY=_int(
                env, "WEBHOOK_ACCOUNT_CONCURRENCY", cls.WEBHOOK_ACCOUNT_CONCURRENCY
            ),
            WEBHOOK_ACCOUNT_BUSY_DELAY_S=_float(
                env, "WEBHOOK_ACCOUNT_BUSY_DELAY_S", cls.WEBHOOK_ACCOUNT_BUSY_DELAY_S
            ),
            ALLOW_PRIVATE_WEBHOOKS=_bool(env, "ALLOW_PRIVATE_WEBHOOKS", False),
            LOGIN_RATE_PER_IP=_str(env, "LOGIN_RATE_PER_IP", cls.LOGIN_RATE_PER_IP)
            or cls.LOGIN_RATE_PER_IP,
            LOGIN_RATE_PER_ACCOUNT=_str(env, "LOGIN_RATE_PER_ACCOUNT", cls.LOGIN_RATE_PER_ACCOUNT)
            or cls.LOGIN_RATE_PER_ACCOUNT,
            LOGIN_LOCKOUT_FAILURES=_int(env, "LOGIN_LOCKOUT_FAILURES", cls.LOGIN_LOCKOUT_FAILURES),
            LOGIN_LOCKOUT_S=_int(env, "LOGIN_LOCKOUT_S", cls.LOGIN_LOCKOUT_S),
            LOGIN_HASH_CONCURRENCY=_int(env, "LOGIN_HASH_CONCURRENCY", cls.LOGIN_HASH_CONCURRENCY),
            LOGIN_HASH_WAIT_S=_float(env, "LOGIN_HASH_WAIT_S", cls.LOGIN_HASH_WAIT_S),
            TRUSTED_PROXY_HOPS=_int(env, "TRUSTED_PROXY_HOPS", cls.TRUSTED_PROXY_HOPS),
            METRICS_TOKEN=_str(env, "METRICS_TOKEN"),
        )
        return replace(settings, **overrides) if overrides else settings

    @property
    def is_dev(self) -> bool:
        return self.ENV in DEV_ENVS

    @property
    def secret_key(self) -> str:
        if self.SECRET_KEY:
            return self.SECRET_KEY
        if self.is_dev:
            return DEV_SECRET_KEY
        raise ConfigError(
            f"SECRET_KEY must be set when RF_ENV={self.ENV!r}; "
            "only RF_ENV=dev or test may use the built-in development key"
        )

    @property
    def integration_keys(self) -> tuple[str, ...]:
        """The Fernet keys of `shared.secrets_at_rest` (a fixed development key in dev/test)."""
        from shared.secrets_at_rest import SecretKeyError, keys_from_env

        env = {"INTEGRATION_KEY": self.INTEGRATION_KEY} if self.INTEGRATION_KEY else {}
        try:
            return keys_from_env(env, is_dev=self.is_dev)
        except SecretKeyError as exc:
            raise ConfigError(str(exc)) from exc

    @property
    def cache_redis_url(self) -> str | None:
        return self.CACHE_REDIS_URL or self.REDIS_URL

    @property
    def llm_online(self) -> bool:
        return bool(self.ANTHROPIC_API_KEY)

    def validate(self) -> Settings:
        if not self.is_dev and not self.SECRET_KEY:
            raise ConfigError(
                f"SECRET_KEY must be set when RF_ENV={self.ENV!r}; "
                "only RF_ENV=dev or test may run with the built-in development key"
            )
        self.integration_keys  # noqa: B018 - raises ConfigError when missing or malformed
        if self.SECRET_KEY is not None and len(self.SECRET_KEY) < 32:
            raise ConfigError("SECRET_KEY must be at least 32 characters (HS256 key)")
        for name in ("LOGIN_RATE_PER_IP", "LOGIN_RATE_PER_ACCOUNT"):
            from limits import parse

            try:
                parse(getattr(self, name))
            except ValueError as exc:
                raise ConfigError(
                    f"{name} must be a rate such as '30/minute', got {getattr(self, name)!r}"
                ) from exc
        if self.WEBHOOK_ACCOUNT_CONCURRENCY < 1:
            raise ConfigError("WEBHOOK_ACCOUNT_CONCURRENCY must be at least 1")
        if self.WEBHOOK_TIMEOUT_S <= 0:
            raise ConfigError("WEBHOOK_TIMEOUT_S must be positive")
        if self.CHAT_STREAM_CONCURRENCY < 1:
            raise ConfigError("CHAT_STREAM_CONCURRENCY must be at least 1")
        if self.LOGIN_HASH_CONCURRENCY < 1 or self.LOGIN_LOCKOUT_FAILURES < 1:
            raise ConfigError("LOGIN_HASH_CONCURRENCY and LOGIN_LOCKOUT_FAILURES must be >= 1")
        if self.METRICS_TOKEN is not None and len(self.METRICS_TOKEN) < 16:
            raise ConfigError("METRICS_TOKEN must be at least 16 characters")
        if self.WORKER_BEAT_S <= 0 or self.WORKER_DEAD_AFTER_S < 2 * self.WORKER_BEAT_S:
            raise ConfigError(
                "WORKER_BEAT_S must be positive and WORKER_DEAD_AFTER_S at least twice it "
                "(a process is declared dead only after missing two beats)"
            )
        overflow = self.DB_POOL_OVERFLOW
        if self.DB_POOL_SIZE < 1 or (overflow is not None and overflow < 0):
            raise ConfigError("DB_POOL_SIZE must be at least 1 and DB_POOL_OVERFLOW at least 0")
        if self.TRUSTED_PROXY_HOPS < 0:
            raise ConfigError("TRUSTED_PROXY_HOPS must be >= 0")
        from shared.redis_client import RedisURLError, is_sentinel_url, parse_sentinel_url

        for name in ("REDIS_URL", "CACHE_REDIS_URL"):
            url = getattr(self, name)
            if url and is_sentinel_url(url):
                try:
                    parse_sentinel_url(url)
                except RedisURLError as exc:
                    raise ConfigError(f"{name}: {exc}") from exc
        if self.WEB_CONCURRENCY < 1 or self.WORKER_CONCURRENCY < 1 or self.WORKER_PROCESSES < 1:
            raise ConfigError(
                "WEB_CONCURRENCY, WORKER_CONCURRENCY and WORKER_PROCESSES must be at least 1"
            )
        for name in (
            "GATEWAY_PORT",
            "SCRIPTS_PORT",
            "PILOT_PORT",
            "NOTES_PORT",
            "EMBEDDED_REDIS_PORT",
        ):
            port = getattr(self, name)
            if not 1 <= port <= 65535:
                raise ConfigError(f"{name} must be a TCP port (1..65535), got {port}")
        if self.TOKEN_TTL_S < 1:
            raise ConfigError(
                f"TOKEN_TTL_S must be a positive number of seconds, got {self.TOKEN_TTL_S}"
            )
        return self

    def as_flask_config(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
