"""The cached preview, the request the product serves most: its budget of round trips, its
ETag and 304, and a principal that is never stale.

The notes app runs in-process with PostgreSQL and the note cache's Redis reached through
RoundTripProxy (tests/support/tcp_proxy.py), which counts the round trips each request makes.
The note is stored with the cache's own `put`, as a worker stores it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from services.notes.cache import NoteCache, note_tag
from shared.config import Settings
from shared.db import db
from tests.support.tcp_proxy import RoundTripProxy
from tests.support.workers import add_fact, create_session, store_note

if TYPE_CHECKING:
    from tests.support.servers import TestServers

KIND = "resolution_note"


@dataclass
class HotPath:
    client: Any
    pg: RoundTripProxy
    cache_redis: RoundTripProxy
    cache: NoteCache


@pytest.fixture
def hot(migrated: Settings, test_servers: TestServers) -> Iterator[HotPath]:
    from services.notes import create_app
    from shared import runtime

    db_url = make_url(test_servers.database_url)
    redis_url = urlsplit(test_servers.redis_url)
    with (
        RoundTripProxy(db_url.host or "127.0.0.1", db_url.port or 5432) as pg,
        RoundTripProxy(redis_url.hostname or "127.0.0.1", redis_url.port or 6379) as cache_redis,
    ):
        proxied = replace(
            migrated,
            DATABASE_URL=db_url.set(host="127.0.0.1", port=pg.port).render_as_string(
                hide_password=False
            ),
            CACHE_REDIS_URL=f"redis://127.0.0.1:{cache_redis.port}{redis_url.path}",
        )
        try:
            app = create_app(proxied)
            app.config["TESTING"] = True
            from services.notes.context import context_for

            yield HotPath(app.test_client(), pg, cache_redis, context_for(proxied).cache)
        finally:
            runtime.configure(migrated)


def _store_note(cache: NoteCache, sid: uuid.UUID, version: int, text_: str) -> dict[str, Any]:
    return store_note(cache, sid, version, f"## Problem\n{text_}\n" + "Details of the note. " * 200)


def _url(sid: uuid.UUID) -> str:
    return f"/api/v1/ai-sessions/{sid}/resolution-note/preview?wait=0"


def test_a_cache_hit_is_one_postgres_and_one_redis_round_trip(hot: HotPath, make_user: Any) -> None:
    user = make_user("engineer")
    sid = create_session(user.account_id, problem="hot path")
    version = add_fact(sid, user.account_id, "Confirmed: the hot path is measured")
    payload = _store_note(hot.cache, sid, version, "measured")
    # The first requests open the pooled connections and load the cache's script.
    first = hot.client.get(_url(sid), headers=user.headers)
    assert first.status_code == 200, first.get_json()
    hot.client.get(_url(sid), headers={**user.headers, "If-None-Match": first.headers["ETag"]})

    hot.pg.reset()
    hot.cache_redis.reset()
    hit = hot.client.get(_url(sid), headers=user.headers)
    assert hit.status_code == 200
    assert hit.get_json()["markdown"] == payload["markdown"]
    assert hit.get_json()["from_cache"] is True
    pg_trips, _, pg_connections = hot.pg.counts()
    redis_trips, redis_bytes, _ = hot.cache_redis.counts()
    assert (pg_trips, pg_connections) == (1, 0)
    assert redis_trips == 1 and redis_bytes > len(payload["markdown"])

    hot.pg.reset()
    hot.cache_redis.reset()
    revalidated = hot.client.get(
        _url(sid), headers={**user.headers, "If-None-Match": first.headers["ETag"]}
    )
    assert revalidated.status_code == 304
    assert hot.pg.counts()[0] == 1
    redis_trips, redis_bytes, _ = hot.cache_redis.counts()
    # One trip, and the note itself never crossed it: the answer is the short tag.
    assert redis_trips == 1 and redis_bytes < 200


def test_etag_and_if_none_match(hot: HotPath, make_user: Any) -> None:
    user = make_user("engineer")
    sid = create_session(user.account_id, problem="etag", ticket_ref="INC-7")
    version = add_fact(sid, user.account_id, "Confirmed: tags follow the version")
    payload = _store_note(hot.cache, sid, version, "first")

    first = hot.client.get(_url(sid), headers=user.headers)
    assert first.status_code == 200
    tag = first.headers["ETag"]
    assert tag == f'W/"{note_tag(KIND, str(sid), version, payload)}"'
    assert first.headers["Cache-Control"] == "private, no-cache"

    not_modified = hot.client.get(_url(sid), headers={**user.headers, "If-None-Match": tag})
    assert not_modified.status_code == 304
    assert not_modified.data == b""
    assert not_modified.headers["ETag"] == tag
    # Weak comparison, and a list of tags.
    strong = tag.removeprefix("W/")
    listed = f'"other", {strong}'
    for header in (strong, listed):
        again = hot.client.get(_url(sid), headers={**user.headers, "If-None-Match": header})
        assert again.status_code == 304, header
    stale = hot.client.get(_url(sid), headers={**user.headers, "If-None-Match": '"stale"'})
    assert stale.status_code == 200 and stale.headers["ETag"] == tag

    # A new version: the old tag no longer matches, the new note comes with a new tag.
    newer = add_fact(sid, user.account_id, "Confirmed: a second fact")
    second = _store_note(hot.cache, sid, newer, "second")
    moved = hot.client.get(_url(sid), headers={**user.headers, "If-None-Match": tag})
    assert moved.status_code == 200
    assert moved.get_json()["state_version"] == newer
    assert moved.get_json()["markdown"] == second["markdown"]
    assert moved.headers["ETag"] not in (tag, None)

    # The same version generated again (its key was evicted): a new tag as well.
    hot.cache.redis.delete(hot.cache.key(KIND, str(sid), newer))
    third = _store_note(hot.cache, sid, newer, "third")
    regenerated = hot.client.get(
        _url(sid), headers={**user.headers, "If-None-Match": moved.headers["ETag"]}
    )
    assert regenerated.status_code == 200
    assert regenerated.get_json()["markdown"] == third["markdown"]

    # Another account's session stays a 404, whatever tag is sent.
    stranger = make_user("engineer")
    foreign = hot.client.get(_url(sid), headers={**stranger.headers, "If-None-Match": tag})
    assert foreign.status_code == 404


def test_a_disabled_user_or_account_is_refused_at_the_next_preview(
    hot: HotPath, make_user: Any
) -> None:
    user = make_user("engineer")
    sid = create_session(user.account_id, problem="disable me")
    version = add_fact(sid, user.account_id, "Confirmed: access is checked every time")
    _store_note(hot.cache, sid, version, "note")
    assert hot.client.get(_url(sid), headers=user.headers).status_code == 200

    with db.transaction() as session:
        session.execute(text("UPDATE users SET is_active = false WHERE id = :id"), {"id": user.id})
    refused = hot.client.get(_url(sid), headers=user.headers)
    assert refused.status_code == 401
    assert refused.get_json()["message"] == "user is inactive or unknown"

    with db.transaction() as session:
        session.execute(text("UPDATE users SET is_active = true WHERE id = :id"), {"id": user.id})
        session.execute(
            text("UPDATE accounts SET is_active = false WHERE id = :id"), {"id": user.account_id}
        )
    assert hot.client.get(_url(sid), headers=user.headers).status_code == 401


def test_a_user_moved_to_another_account_loses_the_session_at_once(
    hot: HotPath, make_user: Any, make_account: Any
) -> None:
    user = make_user("engineer")
    sid = create_session(user.account_id, problem="moved")
    version = add_fact(sid, user.account_id, "Confirmed: the account is read every time")
    _store_note(hot.cache, sid, version, "note")
    assert hot.client.get(_url(sid), headers=user.headers).status_code == 200
    other = make_account()
    with db.transaction() as session:
        session.execute(
            text("UPDATE users SET account_id = :a, team_id = NULL WHERE id = :id"),
            {"a": other, "id": user.id},
        )
    assert hot.client.get(_url(sid), headers=user.headers).status_code == 404


def test_a_changed_role_takes_effect_at_the_next_request(hot: HotPath, make_user: Any) -> None:
    """Every authenticated request reads the principal in one statement, uncached."""
    owner = make_user("owner")
    url = "/api/v1/integrations/ticketing"
    body = {"url": "http://127.0.0.1:9/hooks/notes"}
    assert hot.client.put(url, json=body, headers=owner.headers).status_code == 200
    with db.transaction() as session:
        session.execute(
            text("UPDATE users SET account_role = 'engineer' WHERE id = :id"), {"id": owner.id}
        )
    demoted = hot.client.put(url, json=body, headers=owner.headers)
    assert demoted.status_code == 403
    with db.transaction() as session:
        session.execute(
            text("UPDATE users SET account_role = 'owner' WHERE id = :id"), {"id": owner.id}
        )
    assert hot.client.put(url, json=body, headers=owner.headers).status_code == 200


def test_healthz_is_one_postgres_and_one_redis_round_trip(
    migrated: Settings, test_servers: TestServers
) -> None:
    """Honest and cheap: one ping each, no pool pre-ping or ROLLBACK beside PostgreSQL's."""
    from services.notes import create_app
    from shared import runtime

    db_url = make_url(test_servers.database_url)
    redis_url = urlsplit(test_servers.redis_url)
    with (
        RoundTripProxy(db_url.host or "127.0.0.1", db_url.port or 5432) as pg,
        RoundTripProxy(redis_url.hostname or "127.0.0.1", redis_url.port or 6379) as broker,
    ):
        proxied = replace(
            migrated,
            DATABASE_URL=db_url.set(host="127.0.0.1", port=pg.port).render_as_string(
                hide_password=False
            ),
            REDIS_URL=f"redis://127.0.0.1:{broker.port}{redis_url.path}",
        )
        try:
            client = create_app(proxied).test_client()
            # The first answer opens the pooled connections.
            assert client.get("/healthz").status_code == 200
            pg.reset()
            broker.reset()
            health = client.get("/healthz")
            assert health.status_code == 200
            assert health.get_json()["checks"] == {"database": "ok", "redis": "ok"}
            assert (pg.counts()[0], pg.counts()[2]) == (1, 0)
            assert (broker.counts()[0], broker.counts()[2]) == (1, 0)
        finally:
            runtime.configure(migrated)


def test_the_hot_path_body_is_the_response_schemas_dump() -> None:
    from services.notes.schemas import PreviewResponseSchema, preview_response_body

    fact_id = uuid.uuid4()
    body = {
        "kind": KIND,
        "session_id": uuid.uuid4(),
        "state_version": 7,
        "markdown": "## Problem\nthe spooler",
        "citations": [
            {
                "section": "Problem",
                "text": "The spooler stops.",
                "cites": ["F1"],
                "fact_ids": [str(fact_id)],
                "internal": "not part of the API",
            },
            {"section": "Resolution", "text": "Restarted.", "cites": []},
        ],
        "from_cache": True,
        "generator": "llm",
        "model": "claude",
        "generated_at": "2026-12-01T00:00:00+00:00",
        "ticket_ref": None,
        "fallback_reason": None,
    }
    assert preview_response_body(body) == PreviewResponseSchema().dump(body)
    assert list(preview_response_body(body)) == list(PreviewResponseSchema().dump(body))
