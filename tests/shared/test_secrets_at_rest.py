"""shared.secrets_at_rest: integration secrets never reach PostgreSQL in clear.

The attack: a database dump, a replica or a backup read by someone who is not a tenant's owner
yields every customer's webhook signing secret and any token carried in a webhook URL."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg2
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from services.notes import delivery
from services.notes.integrations import configure_ticketing
from shared import secrets_at_rest
from shared.config import ConfigError, Settings
from shared.db import db, normalise_database_url
from shared.secrets_at_rest import SecretBox, SecretKeyError
from tests.support.servers import admin_database_url, settings_with

URL_WITH_TOKEN = "http://127.0.0.1:9/hooks/T0K3N-in-the-path?sig=query-secret"


def test_db_dump_shows_no_webhook_secret_or_url_in_clear(make_account: Any) -> None:
    account_id = make_account()
    secret = delivery.generate_secret()
    with db.transaction() as session:
        configure_ticketing(
            session, account_id=account_id, url=URL_WITH_TOKEN, secret=secret, allow_private=True
        )
    with db.engine.connect() as conn:
        raw_url, raw_secret = conn.execute(
            text("SELECT url, secret FROM ticketing_integrations WHERE account_id = :a"),
            {"a": account_id},
        ).one()
        dump = " ".join(
            str(value)
            for row in conn.execute(text("SELECT * FROM ticketing_integrations")).all()
            for value in row
        )
    assert raw_secret.startswith("gAAAAA") and raw_url.startswith("gAAAAA")
    for clear in (secret, secret.removeprefix("whsec_"), "T0K3N", "query-secret"):
        assert clear not in dump
    assert secrets_at_rest.decrypt(raw_secret) == secret
    assert secrets_at_rest.decrypt(raw_url) == URL_WITH_TOKEN

    # Replacing the endpoint (the upsert path) stores ciphertext too.
    other = delivery.generate_secret()
    with db.transaction() as session:
        configure_ticketing(
            session, account_id=account_id, url=URL_WITH_TOKEN, secret=other, allow_private=True
        )
    with db.engine.connect() as conn:
        stored = conn.execute(
            text("SELECT secret FROM ticketing_integrations WHERE account_id = :a"),
            {"a": account_id},
        ).scalar_one()
    assert other not in stored and secrets_at_rest.decrypt(stored) == other


def test_a_stolen_database_is_useless_without_the_key() -> None:
    token = secrets_at_rest.encrypt("whsec_c2VjcmV0")
    with pytest.raises(SecretKeyError, match="INTEGRATION_KEY"):
        SecretBox([Fernet.generate_key().decode()]).decrypt(token)


def test_key_rotation_new_key_first_still_reads_old_rows() -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    token = SecretBox([old]).encrypt("whsec_abc")
    both = SecretBox([new, old])
    assert both.decrypt(token) == "whsec_abc"
    rotated = both.rotate(token)
    assert SecretBox([new]).decrypt(rotated) == "whsec_abc"
    with pytest.raises(SecretKeyError):
        SecretBox([old]).decrypt(rotated)


def test_production_without_integration_key_refuses_to_start() -> None:
    env = {"RF_ENV": "prod", "SECRET_KEY": "k" * 40}
    with pytest.raises(ConfigError, match="INTEGRATION_KEY must be set"):
        Settings.from_env(env).validate()
    with pytest.raises(ConfigError, match="INTEGRATION_KEY key #1 is not a Fernet key"):
        Settings.from_env({**env, "INTEGRATION_KEY": "too-short"}).validate()
    key = Fernet.generate_key().decode()
    ok = Settings.from_env({**env, "INTEGRATION_KEY": f" {key} ,{key}"}).validate()
    assert ok.integration_keys == (key, key)


def test_dev_and_test_use_a_fixed_development_key_only() -> None:
    assert Settings.from_env({"RF_ENV": "test"}).integration_keys == (secrets_at_rest.dev_key(),)
    assert Settings.from_env({"RF_ENV": "dev"}).integration_keys == (secrets_at_rest.dev_key(),)


def _scratch_database() -> tuple[str, str]:
    admin = admin_database_url()
    name = f"rf_i11_{uuid.uuid4().hex[:10]}"
    conn = psycopg2.connect(admin)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return admin, make_url(admin).set(database=name).render_as_string(hide_password=False)


def _drop_database(admin: str, url: str) -> None:
    conn = psycopg2.connect(admin)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')
    conn.close()


def test_migration_encrypts_existing_clear_rows_and_drops_target_bodies(
    settings: Settings,
) -> None:
    from app.cli import migrate

    admin, url = _scratch_database()
    try:
        scratch = settings_with(settings, DATABASE_URL=url)
        migrate(scratch, revision="0002")
        engine = create_engine(normalise_database_url(url))
        secret = delivery.generate_secret()
        account_id, note_session, note_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        with engine.begin() as conn:
            conn.execute(
                text("INSERT INTO accounts (id, name) VALUES (:id, 'acme')"), {"id": account_id}
            )
            conn.execute(
                text(
                    "INSERT INTO ticketing_integrations (id, account_id, url, secret) "
                    "VALUES (:id, :a, :url, :secret)"
                ),
                {"id": uuid.uuid4(), "a": account_id, "url": URL_WITH_TOKEN, "secret": secret},
            )
            user_id = uuid.uuid4()
            conn.execute(
                text(
                    "INSERT INTO users (id, account_id, email, account_role) "
                    "VALUES (:id, :a, 'o@x.test', 'owner')"
                ),
                {"id": user_id, "a": account_id},
            )
            conn.execute(
                text(
                    "INSERT INTO ai_sessions (id, account_id, created_by, title) "
                    "VALUES (:id, :a, :u, 't')"
                ),
                {"id": note_session, "a": account_id, "u": user_id},
            )
            conn.execute(
                text(
                    "INSERT INTO resolution_notes (id, session_id, account_id, kind, "
                    "state_version, delivery_status, last_error) VALUES (:id, :s, :a, "
                    "'resolution_note', 1, 'retrying', 'HTTP 500: internal-db-password=hunter2')"
                ),
                {"id": note_id, "s": note_session, "a": account_id},
            )
            conn.execute(
                text(
                    "INSERT INTO webhook_attempts (id, note_id, attempt_number, url, outcome, "
                    "status_code, error, duration_ms) VALUES (:id, :n, 1, :url, 'retry', 500, "
                    "'HTTP 500: internal-db-password=hunter2', 3)"
                ),
                {"id": uuid.uuid4(), "n": note_id, "url": URL_WITH_TOKEN},
            )
        migrate(scratch)
        # Later migrations move the tables into per-service schemas: a new connection takes the
        # database's new search_path.
        engine.dispose()
        with engine.connect() as conn:
            raw_url, raw_secret = conn.execute(
                text("SELECT url, secret FROM ticketing_integrations")
            ).one()
            last_error = conn.execute(text("SELECT last_error FROM resolution_notes")).scalar()
            attempt_url, attempt_error = conn.execute(
                text("SELECT url, error FROM webhook_attempts")
            ).one()
        engine.dispose()
        assert secrets_at_rest.decrypt(raw_secret) == secret and secret not in raw_secret
        assert secrets_at_rest.decrypt(raw_url) == URL_WITH_TOKEN
        assert last_error == "HTTP 500" and attempt_error == "HTTP 500"
        assert attempt_url == "http://127.0.0.1:9"
    finally:
        _drop_database(admin, url)
