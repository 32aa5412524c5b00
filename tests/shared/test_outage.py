"""A database outage, for real: every backend of the test database terminated, and the
database refusing connections for a while. Requests during it answer 503 JSON with Retry-After
(never 500, never a hung request); the first request after it succeeds."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg2
from sqlalchemy.engine import make_url

from shared.config import Settings


def _admin(settings: Settings) -> Any:
    """A connection to the server's maintenance database, outside the pool under test."""
    assert settings.DATABASE_URL is not None
    url = make_url(settings.DATABASE_URL)
    conn = psycopg2.connect(
        host=url.host, port=url.port, user=url.username, password=url.password, dbname="postgres"
    )
    conn.autocommit = True
    return conn


def _terminate_every_backend(cur: Any, database: str) -> int:
    cur.execute(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = %s AND pid <> pg_backend_pid()",
        (database,),
    )
    return int(cur.fetchone()[0])


@contextmanager
def database_down(settings: Settings) -> Iterator[None]:
    """The database refuses new connections and has none left, until the block ends."""
    assert settings.DATABASE_URL is not None
    database = make_url(settings.DATABASE_URL).database
    conn = _admin(settings)
    try:
        with conn.cursor() as cur:
            cur.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
            _terminate_every_backend(cur, str(database))
        yield
    finally:
        with conn.cursor() as cur:
            cur.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        conn.close()


def test_every_backend_terminated_the_next_request_succeeds(
    migrated: Settings, client: Any, make_user: Any
) -> None:
    user = make_user("engineer")
    assert client.get("/api/v1/scripts/categories", headers=user.headers).status_code == 200
    database = str(make_url(migrated.DATABASE_URL or "").database)
    conn = _admin(migrated)
    try:
        with conn.cursor() as cur:
            # The app's pooled connections are among them.
            assert _terminate_every_backend(cur, database) >= 1
    finally:
        conn.close()
    answer = client.get("/api/v1/scripts/categories", headers=user.headers)
    assert answer.status_code == 200, answer.get_data(as_text=True)


def test_a_request_during_a_database_outage_is_503_json_with_retry_after(
    migrated: Settings, client: Any, make_user: Any
) -> None:
    user = make_user("engineer")
    assert client.get("/api/v1/scripts/categories", headers=user.headers).status_code == 200
    with database_down(migrated):
        started = time.monotonic()
        answer = client.get("/api/v1/scripts/categories", headers=user.headers)
        elapsed = time.monotonic() - started
        assert answer.status_code == 503, answer.get_data(as_text=True)
        assert answer.is_json and answer.get_json()["code"] == 503
        assert "database" in answer.get_json()["message"]
        assert int(answer.headers["Retry-After"]) > 0
        # Refused, not hung: a hung request would wait for ever (connects time out after 5 s).
        # The bound is loose on purpose: a busy 2-core machine stretches every step.
        assert elapsed < 60
        health = client.get("/healthz")
        assert health.status_code == 503
        assert health.get_json()["checks"]["database"].startswith("error")
    answer = client.get("/api/v1/scripts/categories", headers=user.headers)
    assert answer.status_code == 200, answer.get_data(as_text=True)


def test_a_redis_outage_is_503_json_with_retry_after(migrated: Settings, make_user: Any) -> None:
    """Redis unreachable (a port nobody listens on) while the notes API previews a note."""
    from dataclasses import replace

    from services.notes import create_app
    from shared import runtime
    from tests.support.workers import create_session, free_port

    user = make_user("engineer")
    sid = create_session(user.account_id)
    dead = replace(migrated, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    try:
        app = create_app(dead)
        answer = app.test_client().get(
            f"/api/v1/ai-sessions/{sid}/resolution-note/preview", headers=user.headers
        )
    finally:
        runtime.configure(migrated)
    assert answer.status_code == 503, answer.get_data(as_text=True)
    assert answer.is_json and "Retry-After" in answer.headers


def test_a_killed_connection_that_served_another_role_is_replaced(migrated: Settings) -> None:
    """The service role is set when a pooled connection is checked out; a connection the server
    closed fails that SET ROLE, and the pool must replace it rather than fail the request."""
    from sqlalchemy import text

    from shared.db import db, request_role

    try:
        request_role("rf_scripts")
        assert db.read_row(text("SELECT current_user")) == ("rf_scripts",)
        database = str(make_url(migrated.DATABASE_URL or "").database)
        conn = _admin(migrated)
        try:
            with conn.cursor() as cur:
                assert _terminate_every_backend(cur, database) >= 1
        finally:
            conn.close()
        request_role("rf_pilot")
        assert db.read_row(text("SELECT current_user")) == ("rf_pilot",)
        with db.session() as session:
            assert session.execute(text("SELECT current_user")).scalar() == "rf_pilot"
    finally:
        request_role(None)
