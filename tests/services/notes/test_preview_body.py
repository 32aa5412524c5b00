"""The pre-rendered preview body (services.notes.preview_body) is the same JSON document, in
the same field order, as the response schema's dump that the other paths send."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from flask import Flask, jsonify

from services.notes.preview_body import (
    hit_body,
    pack_entry,
    rendered_parts,
    unpack_entry,
)
from services.notes.schemas import PreviewResponseSchema, preview_response_body
from shared.config import Settings
from tests.support.workers import add_fact, create_session

KIND = "resolution_note"

FACT = uuid.uuid4()
PAYLOADS: list[dict[str, Any]] = [
    {
        "markdown": '## Problem\nthe spooler \u00e9\u4e2d "quoted" \\ \x00 end',
        "citations": [
            {
                "section": "Problem",
                "text": "The spooler stops.",
                "cites": ["F1"],
                "fact_ids": [str(FACT)],
                "internal": "not part of the API",
            },
            {"section": "Resolution", "text": "Restarted.", "cites": []},
        ],
        "generator": "llm",
        "model": "claude",
        "generated_at": "2026-12-01T00:00:00+00:00",
        "fallback_reason": "budget_exceeded",
        "usage": {"input_tokens": 3},
        "fingerprint": "abc",
    },
    {"markdown": None, "generator": "offline", "model": None, "generated_at": None},
    {},
]


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("ticket_ref", [None, "INC-7 \u00fc"])
@pytest.mark.parametrize("from_cache", [True, False])
def test_the_rendered_body_is_the_schemas_dump(
    payload: dict[str, Any], ticket_ref: str | None, from_cache: bool
) -> None:
    sid = uuid.uuid4()
    body = {
        "kind": "resolution_note",
        "session_id": sid,
        "state_version": 12,
        "markdown": payload.get("markdown"),
        "citations": payload.get("citations") or [],
        "from_cache": from_cache,
        "generator": payload.get("generator"),
        "model": payload.get("model"),
        "generated_at": payload.get("generated_at"),
        "ticket_ref": ticket_ref,
        "fallback_reason": payload.get("fallback_reason"),
    }
    entry = unpack_entry(pack_entry("t4g", rendered_parts(payload)).encode())
    assert entry is not None and entry[0] == "t4g"
    raw = hit_body(
        entry[1],
        kind="resolution_note",
        session_id=str(sid),
        state_version=12,
        ticket_ref=ticket_ref,
        from_cache=from_cache,
    )
    expected = PreviewResponseSchema().dump(body)
    assert json.loads(raw) == preview_response_body(body) == expected
    # Byte for byte the answer of the other paths (jsonify: keys sorted, compact).
    with Flask(__name__).app_context():
        assert raw == jsonify(preview_response_body(body)).get_data()


def test_an_entry_of_another_layout_is_not_read_as_one() -> None:
    assert unpack_entry(b'{"markdown": "a note stored as JSON"}') is None
    assert unpack_entry("tag\x00a\x00b") is None


def test_a_note_without_its_rendered_body_is_served_from_its_payload(
    migrated: Settings, make_user: Any
) -> None:
    """A version key stored before the rendered body existed (or whose rendered body was
    evicted alone): the same answer, read from the payload."""
    from services.notes import create_app
    from services.notes.context import context_for

    client = create_app(migrated).test_client()
    cache = context_for(migrated).cache
    user = make_user("engineer")
    sid = create_session(user.account_id, problem="rendered", ticket_ref="INC-9")
    version = add_fact(sid, user.account_id, "Confirmed: the body is rendered once")
    cache.put(KIND, str(sid), version, {**PAYLOADS[0], "state_version": version})
    url = f"/api/v1/ai-sessions/{sid}/resolution-note/preview?wait=0"
    rendered = client.get(url, headers=user.headers)
    assert rendered.status_code == 200
    assert rendered.content_type == "application/json"

    cache.redis.delete(cache.hit_key(KIND, str(sid), version))
    from_payload = client.get(url, headers=user.headers)
    assert from_payload.status_code == 200
    assert from_payload.get_data() == rendered.get_data()
    assert from_payload.headers["ETag"] == rendered.headers["ETag"]
    stale = client.get(url, headers={**user.headers, "If-None-Match": '"stale"'})
    assert stale.status_code == 200 and stale.get_json() == rendered.get_json()
    current = client.get(url, headers={**user.headers, "If-None-Match": rendered.headers["ETag"]})
    assert current.status_code == 304

    # Deleting the session's old versions takes their rendered bodies with them.
    newer = add_fact(sid, user.account_id, "Confirmed: a newer version")
    cache.put(KIND, str(sid), newer, {**PAYLOADS[0], "state_version": newer})
    cache.delete_older(str(sid), newer)
    assert not cache.redis.exists(cache.hit_key(KIND, str(sid), version))
    assert cache.redis.exists(cache.hit_key(KIND, str(sid), newer))
    cache.forget_session(str(sid))
    assert not cache.redis.exists(cache.hit_key(KIND, str(sid), newer))


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"wait": "0"},
        {"wait": " 2.5 "},
        {"kind": "kb_article", "wait": "120"},
        {"kind": "escalation", "other": "ignored"},
        {"kind": "nope"},
        {"kind": ""},
        {"wait": "-1"},
        {"wait": "121"},
        {"wait": "nan"},
        {"wait": "inf"},
        {"wait": "soon"},
        {"wait": ""},
    ],
)
def test_the_preview_query_loads_as_the_schema_loads_it(query: dict[str, str]) -> None:
    """The plain query's short path gives what marshmallow gives, and leaves every query the
    schema refuses to the schema (and its errors)."""
    from marshmallow import EXCLUDE, ValidationError
    from werkzeug.datastructures import MultiDict

    from services.notes.schemas import PreviewQueryArgsSchema, plain_preview_args

    schema = PreviewQueryArgsSchema()
    try:
        loaded: Any = schema.load(MultiDict(query), unknown=EXCLUDE)
    except ValidationError:
        loaded = None
    assert plain_preview_args(MultiDict(query)) == loaded


def test_the_preview_query_answers_as_before(migrated: Settings, make_user: Any) -> None:
    """Plain queries take the parser's short path, everything else webargs' own, with its
    422 naming the field."""
    from services.notes import create_app
    from services.notes.context import context_for

    client = create_app(migrated).test_client()
    user = make_user("engineer")
    sid = create_session(user.account_id, problem="query")
    version = add_fact(sid, user.account_id, "Confirmed: the query is parsed once")
    context_for(migrated).cache.put(
        KIND, str(sid), version, {**PAYLOADS[0], "state_version": version}
    )
    base = f"/api/v1/ai-sessions/{sid}/resolution-note/preview"
    for query in ("?wait=0", "?wait=0&kind=resolution_note", "?wait=0.0&other=x", "?wait=0&wait=5"):
        answer = client.get(base + query, headers=user.headers)
        assert answer.status_code == 200, query
        assert answer.get_json()["state_version"] == version
    for query, field in (
        ("?wait=-1", "wait"),
        ("?wait=nan", "wait"),
        ("?wait=soon", "wait"),
        ("?wait=121", "wait"),
        ("?wait=0&kind=haiku", "kind"),
        ("?wait=0&kind=", "kind"),
    ):
        refused = client.get(base + query, headers=user.headers)
        assert refused.status_code == 422, query
        body = refused.get_json()
        assert list(body["errors"]["query"]) == [field], query
        assert body["message"] == f"Invalid input: query.{field}"
