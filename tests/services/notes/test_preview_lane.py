"""The ready preview answered in front of Flask (services.notes.preview_lane): every answer
it gives is the one Flask gives for the same request, and everything else reaches Flask.

The notes app runs in-process against the real PostgreSQL and Redis. Each request is sent
twice: to the app (the lane, then Flask if the lane hands it on) and to the Flask app alone
(the callable the lane wraps). A counter on that wrapped callable tells which one answered.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text
from werkzeug.test import Client, TestResponse

from services.notes.cache import NoteCache
from services.notes.preview_lane import PreviewLane, if_none_match_tags
from shared.config import Settings
from shared.db import db
from tests.support.fixtures.logs import json_lines
from tests.support.workers import add_fact, create_session, free_port, store_note

KIND = "resolution_note"


@dataclass
class Lane:
    app: Client
    flask_only: Client
    lane: PreviewLane
    cache: NoteCache
    flask_calls: list[str]


@pytest.fixture
def lane(migrated: Settings) -> Iterator[Lane]:
    from services.notes import create_app
    from services.notes.context import context_for

    app = create_app(migrated)
    app.config["TESTING"] = True
    installed, flask_wsgi, calls = _count_flask_calls(app)
    yield Lane(Client(app), Client(flask_wsgi), installed, context_for(migrated).cache, calls)


def _count_flask_calls(app: Any) -> tuple[PreviewLane, Any, list[str]]:
    """The app's lane, the Flask callable it wraps, and the paths of the requests the lane
    hands on to Flask from now on."""
    installed = app.wsgi_app
    assert isinstance(installed, PreviewLane)
    flask_wsgi = installed.flask_app
    calls: list[str] = []

    def counted(environ: dict[str, Any], start_response: Any) -> Any:
        calls.append(environ.get("PATH_INFO", ""))
        return flask_wsgi(environ, start_response)

    installed.flask_app = counted
    return installed, flask_wsgi, calls


def _session_with_note(lane: Lane, user: Any, ticket_ref: str | None = "INC-42") -> uuid.UUID:
    sid = create_session(user.account_id, problem="lane", ticket_ref=ticket_ref)
    version = add_fact(sid, user.account_id, "Confirmed: the spooler stalls")
    citations = [{"section": "Problem", "text": "The spooler stalls", "cites": []}]
    store_note(
        lane.cache, sid, version, f"## Problem\nThe spooler of {sid} stalls\n", citations=citations
    )
    return sid


def _url(sid: uuid.UUID | str, query: str = "wait=0") -> str:
    return f"/api/v1/ai-sessions/{sid}/resolution-note/preview" + (f"?{query}" if query else "")


def _answer(response: TestResponse) -> tuple[str, dict[str, str], bytes]:
    """Status, headers (the request id's value aside: each answer makes its own) and body."""
    headers = dict(response.headers.items())
    assert headers.pop("X-Request-ID", None)
    return response.status, headers, response.data


def _same_as_flask(lane: Lane, url: str, headers: dict[str, str]) -> TestResponse:
    by_app = lane.app.get(url, headers=headers)
    by_flask = lane.flask_only.get(url, headers=headers)
    assert _answer(by_app) == _answer(by_flask), url
    return by_app


def test_a_ready_preview_and_its_304_are_flasks_answers_without_flask(
    lane: Lane, make_user: Any
) -> None:
    user = make_user("engineer")
    sid = _session_with_note(lane, user)

    for query in ("wait=0", "", "kind=resolution_note", "kind=resolution_note&wait=2.5"):
        hit = _same_as_flask(lane, _url(sid, query), user.headers)
        assert hit.status_code == 200 and hit.json["ticket_ref"] == "INC-42"
    tag = hit.headers["ETag"]
    strong = tag.removeprefix("W/")
    for header in (tag, strong, f'"other", {strong}'):
        not_modified = _same_as_flask(lane, _url(sid), {**user.headers, "If-None-Match": header})
        assert not_modified.status_code == 304 and not_modified.data == b""
    stale = _same_as_flask(lane, _url(sid), {**user.headers, "If-None-Match": '"stale"'})
    assert stale.status_code == 200
    # An upper-case session id is the same session, as Flask's uuid converter reads it.
    assert _same_as_flask(lane, _url(str(sid).upper()), user.headers).status_code == 200
    assert lane.flask_calls == []


def test_the_lane_keeps_the_request_id_the_metric_and_the_access_line(
    lane: Lane, make_user: Any, logging_sandbox: None, capsys: pytest.CaptureFixture[str]
) -> None:
    user = make_user("engineer")
    sid = _session_with_note(lane, user)
    labels = {"service": "notes", "method": "GET", "route": lane.lane.rule, "status": "200"}
    count = "http_request_duration_seconds_count"
    before = REGISTRY.get_sample_value(count, labels) or 0.0
    hits_before = REGISTRY.get_sample_value("notes_preview_cache_total", {"result": "hit"}) or 0
    capsys.readouterr()

    given = lane.app.get(_url(sid), headers={**user.headers, "X-Request-ID": "poll-1.a_B"})
    made = lane.app.get(_url(sid), headers={**user.headers, "X-Request-ID": "not valid!"})

    assert lane.flask_calls == []
    assert given.headers["X-Request-ID"] == "poll-1.a_B"
    assert made.headers["X-Request-ID"] not in ("not valid!", "poll-1.a_B")
    assert REGISTRY.get_sample_value(count, labels) == before + 2
    hits = REGISTRY.get_sample_value("notes_preview_cache_total", {"result": "hit"})
    assert hits == hits_before + 2
    access = [e for e in json_lines(capsys.readouterr().out) if e.get("event") == "request"]
    assert [(e["request_id"], e["route"], e["status"], e["service"]) for e in access] == [
        ("poll-1.a_B", lane.lane.rule, 200, "notes"),
        (made.headers["X-Request-ID"], lane.lane.rule, 200, "notes"),
    ]
    assert str(sid) not in access[0]["route"]


def test_everything_but_a_ready_plain_poll_is_answered_by_flask(lane: Lane, make_user: Any) -> None:
    user = make_user("engineer")
    sid = _session_with_note(lane, user)
    stranger = make_user("engineer")
    pending = create_session(user.account_id, problem="no note yet")
    cases: list[tuple[str, dict[str, str], int]] = [
        (_url(sid), {}, 401),
        (_url(sid), {"Authorization": "Bearer not-a-token"}, 401),
        (_url(sid), {"Authorization": "Basic dXNlcjpwdw=="}, 401),
        (_url(sid), stranger.headers, 404),
        (_url(uuid.uuid4()), user.headers, 404),
        (_url(sid, "kind=bogus"), user.headers, 422),
        (_url(sid, "wait=soon"), user.headers, 422),
        (_url(sid, "wait=-1"), user.headers, 422),
        (_url(sid, "wait=0&wait=1"), user.headers, 200),
        (_url(sid, "wait=0&extra=1"), user.headers, 200),
        (_url(sid, "kind=resolution%5Fnote"), user.headers, 200),
        (_url(sid, "kind=%00"), user.headers, 422),
        # A KB article is written from a resolved session: 409 for an active one.
        (_url(sid, "kind=kb_article&wait=0"), user.headers, 409),
        (_url(pending), user.headers, 202),
        (_url(sid).replace("/preview", "/preview/"), user.headers, 404),
    ]
    for url, headers, status in cases:
        calls = len(lane.flask_calls)
        answer = lane.app.get(url, headers=headers)
        assert answer.status_code == status, (url, headers, answer.json)
        assert len(lane.flask_calls) == calls + 1, (url, headers)
        if status != 202:
            assert _answer(answer) == _answer(lane.flask_only.get(url, headers=headers))
        assert answer.content_type == "application/json" or answer.status_code == 304

    # A body on the poll is Flask's to judge (its hostile-input check reads JSON bodies).
    calls = len(lane.flask_calls)
    lane.app.get(_url(sid), headers=user.headers, json={"x": 1})
    assert len(lane.flask_calls) == calls + 1


def test_a_disabled_user_is_refused_by_the_next_poll_through_the_lane(
    lane: Lane, make_user: Any
) -> None:
    user = make_user("engineer")
    sid = _session_with_note(lane, user)
    assert lane.app.get(_url(sid), headers=user.headers).status_code == 200
    assert lane.flask_calls == []

    with db.transaction() as session:
        session.execute(text("UPDATE users SET is_active = false WHERE id = :id"), {"id": user.id})
    refused = lane.app.get(_url(sid), headers=user.headers)
    assert refused.status_code == 401
    assert refused.json["message"] == "user is inactive or unknown"
    assert len(lane.flask_calls) == 1


def test_if_none_match_tags_read_as_werkzeug_reads_them() -> None:
    assert if_none_match_tags(None) == []
    assert if_none_match_tags("") == []
    assert if_none_match_tags("*") == []
    assert if_none_match_tags('W/"b", "a"') == ["a", "b"]


def test_a_cache_redis_that_does_not_answer_is_flasks_503(
    migrated: Settings, make_user: Any
) -> None:
    from services.notes import create_app
    from shared import runtime

    user = make_user("engineer")
    sid = create_session(user.account_id, problem="redis away")
    add_fact(sid, user.account_id, "Confirmed: the cache is unreachable")
    # A port nothing listens on: every read of the note cache fails to connect.
    unreachable = replace(migrated, CACHE_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    try:
        app = create_app(unreachable)
        _, _, calls = _count_flask_calls(app)
        answer = Client(app).get(_url(sid), headers=user.headers)
    finally:
        runtime.configure(migrated)
    assert calls == [_url(sid).partition("?")[0]]
    assert answer.status_code == 503, answer.data
    assert answer.json["code"] == 503 and answer.headers["Retry-After"]
