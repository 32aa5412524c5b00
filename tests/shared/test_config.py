from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from shared.config import DEFAULT_WEBHOOK_RETRY_SCHEDULE, PROJECT_ROOT, ConfigError, Settings


def test_missing_secret_key_outside_dev_is_a_startup_error() -> None:
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        Settings.from_env({"RF_ENV": "prod"}).validate()
    key = Fernet.generate_key().decode()
    ok = Settings.from_env(
        {"RF_ENV": "prod", "SECRET_KEY": "x" * 40, "INTEGRATION_KEY": key}
    ).validate()
    assert ok.secret_key == "x" * 40


def test_dev_uses_a_development_key() -> None:
    settings = Settings.from_env({"RF_ENV": "dev"}).validate()
    assert settings.is_dev and len(settings.secret_key) >= 32


def test_fail_open_signing_key_unset_rf_env_is_production() -> None:
    # With RF_ENV unset the API used to sign and accept tokens with the development key that
    # is in the repository.
    settings = Settings.from_env({})
    assert settings.ENV == "production" and not settings.is_dev
    with pytest.raises(ConfigError, match="SECRET_KEY must be set"):
        settings.validate()
    with pytest.raises(ConfigError, match="SECRET_KEY must be set"):
        settings.secret_key  # noqa: B018 - even unvalidated settings never hand out the dev key
    for other in ("staging", "prod", "develop", "testing"):
        with pytest.raises(ConfigError, match="SECRET_KEY"):
            Settings.from_env({"RF_ENV": other}).validate()


def test_short_secret_key_is_refused() -> None:
    with pytest.raises(ConfigError, match="32"):
        Settings.from_env({"RF_ENV": "dev", "SECRET_KEY": "short"}).validate()


def test_typed_parsing() -> None:
    settings = Settings.from_env(
        {
            "GATEWAY_PORT": "9000",
            "NOTES_PREWARM": "off",
            "NOTES_PREWARM_QUIET_S": "0.5",
            "WEBHOOK_RETRY_SCHEDULE_S": "0, 1,2",
        }
    )
    assert settings.GATEWAY_PORT == 9000
    assert settings.NOTES_PREWARM is False
    assert settings.NOTES_PREWARM_QUIET_S == 0.5
    assert settings.WEBHOOK_RETRY_SCHEDULE_S == (0, 1, 2)
    assert Settings.from_env({}).WEBHOOK_RETRY_SCHEDULE_S == DEFAULT_WEBHOOK_RETRY_SCHEDULE
    with pytest.raises(ConfigError, match="GATEWAY_PORT"):
        Settings.from_env({"GATEWAY_PORT": "eighty"})
    with pytest.raises(ConfigError, match="NOTES_PREWARM"):
        Settings.from_env({"NOTES_PREWARM": "maybe"})


def test_default_model_is_a_current_sonnet_from_the_sdk_list() -> None:
    import typing

    from anthropic.types import Model

    known = typing.get_args(typing.get_args(Model)[0])
    model = Settings.from_env({}).ANTHROPIC_MODEL
    assert model in known and "sonnet" in model
    assert model not in ("claude-sonnet-4-5", "claude-sonnet-4-5-20250929")


def test_fail_open_signing_key_no_app_starts_without_rf_env_or_secret_key() -> None:
    from shared import runtime

    with pytest.raises(ConfigError, match="SECRET_KEY must be set"):
        runtime.configure(Settings.from_env({"DATABASE_URL": "postgresql://x@127.0.0.1:1/x"}))


def test_a_kill_during_generation_is_recovered_within_the_readmes_bound() -> None:
    """The README states the liveness bound the defaults give (a killed worker's job back
    within WORKER_DEAD_AFTER_S + WORKER_BEAT_S, under 10 s), and the lease backstop. The lock
    a killed generation held must expire before the backstop hands the job on, or it (not
    they) sets the delay when no worker is left to take the lock over."""
    defaults = Settings.from_env({})
    bound = defaults.WORKER_DEAD_AFTER_S + defaults.WORKER_BEAT_S
    assert bound < 10
    assert defaults.WORKER_DEAD_AFTER_S >= 2 * defaults.WORKER_BEAT_S
    backstop = defaults.JOB_LEASE_S + defaults.SWEEP_INTERVAL_S
    assert defaults.NOTES_LOCK_TTL_S < backstop
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert f"`WORKER_DEAD_AFTER_S + WORKER_BEAT_S` = **{bound:g} s**" in readme
    assert f"`JOB_LEASE_S + SWEEP_INTERVAL_S` = {backstop:g} s" in readme
    assert f"| `NOTES_LOCK_TTL_S` | `{defaults.NOTES_LOCK_TTL_S:g}` |" in readme
    leases = (PROJECT_ROOT / "services" / "notes" / "leases.py").read_text()
    assert (
        f"({defaults.WORKER_DEAD_AFTER_S:g} s + {defaults.WORKER_BEAT_S:g} s = {bound:g} s"
        in leases
    )


def test_a_worker_beat_that_could_not_tell_a_slow_worker_from_a_dead_one_is_refused() -> None:
    with pytest.raises(ConfigError, match="WORKER_DEAD_AFTER_S"):
        Settings.from_env(
            {"RF_ENV": "test", "WORKER_BEAT_S": "2", "WORKER_DEAD_AFTER_S": "3"}
        ).validate()
    with pytest.raises(ConfigError, match="DB_POOL_SIZE"):
        Settings.from_env({"RF_ENV": "test", "DB_POOL_SIZE": "0"}).validate()


def test_sentinel_urls_are_parsed_for_redis_py_and_kombu() -> None:
    from shared.redis_client import broker_options, parse_sentinel_url

    url = "sentinel://10.0.0.1:26379;sentinel://10.0.0.2:26380;sentinel://10.0.0.3/2?master_name=rf"
    target = parse_sentinel_url(url)
    assert target.sentinels == (("10.0.0.1", 26379), ("10.0.0.2", 26380), ("10.0.0.3", 26379))
    assert (target.master_name, target.db) == ("rf", 2)
    broker, options = broker_options(url)
    assert (
        broker == "sentinel://10.0.0.1:26379;sentinel://10.0.0.2:26380;sentinel://10.0.0.3:26379/2"
    )
    assert options["master_name"] == "rf"
    assert broker_options("redis://127.0.0.1:6379/0") == ("redis://127.0.0.1:6379/0", {})
    with pytest.raises(ConfigError, match="REDIS_URL: .*master name"):
        Settings.from_env({"RF_ENV": "test", "REDIS_URL": "sentinel://10.0.0.1:26379/0"}).validate()
    with pytest.raises(ConfigError, match="CACHE_REDIS_URL"):
        Settings.from_env(
            {"RF_ENV": "test", "CACHE_REDIS_URL": "sentinel://;redis://x/0?master_name=a"}
        ).validate()


def test_workers_retry_the_broker_for_ever_and_follow_a_sentinel_group() -> None:
    from services.notes.worker import celery_config

    plain = celery_config(Settings.from_env({"REDIS_URL": "redis://127.0.0.1:6390/0"}))
    assert plain["broker_url"] == "redis://127.0.0.1:6390/0"
    assert plain["broker_connection_retry"] is True
    assert plain["broker_connection_retry_on_startup"] is True
    assert plain["broker_connection_max_retries"] is None  # for ever
    assert "master_name" not in plain["broker_transport_options"]
    url = "sentinel://127.0.0.1:26379;sentinel://127.0.0.1:26380/0?master_name=rf"
    sentinel = celery_config(Settings.from_env({"REDIS_URL": url}))
    assert sentinel["broker_url"] == "sentinel://127.0.0.1:26379;sentinel://127.0.0.1:26380/0"
    assert sentinel["broker_transport_options"]["master_name"] == "rf"
    assert sentinel["broker_transport_options"]["visibility_timeout"] == 3600
