"""Hostile bytes against every route: nothing under /api/ answers 500 or HTML for bad input.

What answered 500: NUL characters and lone surrogates in JSON bodies and query strings,
deeply nested JSON, and `offset` values beyond PostgreSQL's bigint. The targeted tests name
each here; the property test over every route of every service is in
tests/services/hostile/test_every_route.py (the slow tier)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.hostile_input import MAX_JSON_DEPTH

SERVICES = ("scripts", "pilot", "notes")


@pytest.fixture
def owner(make_user: Any) -> Any:
    return make_user("owner")


def _json(response: Any) -> dict[str, Any]:
    assert response.mimetype == "application/json", (response.status_code, response.data[:200])
    return dict(response.get_json())


def _raw(client: Any, method: str, path: str, body: bytes, headers: dict[str, str]) -> Any:
    return client.open(
        path,
        method=method,
        data=body,
        headers={**headers, "Content-Type": "application/json"},
    )


def test_nul_character_in_a_body_is_422_naming_the_field(
    service_apps: dict[str, Any], owner: Any
) -> None:
    client = service_apps["pilot"].test_client()
    got = client.post("/api/v1/ai-sessions", json={"title": "a\x00b"}, headers=owner.headers)
    assert got.status_code == 422
    assert "title" in _json(got)["errors"]["json"]


def test_lone_surrogate_in_a_body_is_422_naming_the_field(
    service_apps: dict[str, Any], owner: Any
) -> None:
    client = service_apps["pilot"].test_client()
    body = b'{"title": "ok", "problem": "broken \\ud800 text"}'
    got = _raw(client, "POST", "/api/v1/ai-sessions", body, owner.headers)
    assert got.status_code == 422
    assert list(_json(got)["errors"]["json"]) == ["problem"]


def test_deeply_nested_json_is_422_not_a_recursion_error(
    service_apps: dict[str, Any], owner: Any
) -> None:
    client = service_apps["scripts"].test_client()
    for depth in (MAX_JSON_DEPTH + 5, 100_000):
        body = ('{"parameters_schema": ' + "[" * depth + "]" * depth + "}").encode()
        got = _raw(client, "POST", "/api/v1/scripts/templates", body, owner.headers)
        assert got.status_code == 422, depth
        assert "nested" in _json(got)["errors"]["json"]["_schema"][0]


@pytest.mark.parametrize(
    ("service", "path"),
    [
        ("scripts", "/api/v1/scripts/templates"),
        ("scripts", "/api/v1/scripts/generations"),
        ("pilot", "/api/v1/ai-sessions"),
    ],
)
def test_huge_offset_is_422_naming_the_query_field(
    service_apps: dict[str, Any], owner: Any, service: str, path: str
) -> None:
    client = service_apps[service].test_client()
    got = client.get(f"{path}?offset=99999999999999999999", headers=owner.headers)
    assert got.status_code == 422
    assert "offset" in _json(got)["errors"]["query"]


def test_control_characters_in_a_query_string_are_422(
    service_apps: dict[str, Any], owner: Any
) -> None:
    client = service_apps["scripts"].test_client()
    got = client.get("/api/v1/scripts/templates?search=a%00b", headers=owner.headers)
    assert got.status_code == 422
    assert "search" in _json(got)["errors"]["query"]
    surrogate = client.get("/api/v1/scripts/templates?search=%ED%A0%80", headers=owner.headers)
    assert surrogate.status_code < 500


def test_blank_optional_reference_is_not_a_500(service_apps: dict[str, Any], owner: Any) -> None:
    # Found by the property test over every route (tests/services/hostile/): a blank ticket_ref
    # became None, then met a length check.
    client = service_apps["pilot"].test_client()
    created = client.post("/api/v1/ai-sessions", json={"title": "t"}, headers=owner.headers)
    sid = _json(created)["id"]
    got = client.patch(f"/api/v1/ai-sessions/{sid}", json={"ticket_ref": ""}, headers=owner.headers)
    assert got.status_code == 200 and _json(got)["ticket_ref"] is None


def test_nul_in_generation_parameters_keeps_the_parameters_key(
    service_apps: dict[str, Any], owner: Any
) -> None:
    client = service_apps["scripts"].test_client()
    got = client.post(
        "/api/v1/scripts/generate",
        json={"template_id": str(uuid.uuid4()), "parameters": {"user": "x\x00"}},
        headers=owner.headers,
    )
    assert got.status_code == 422
    assert _json(got)["errors"]["parameters"] == {
        "user": ["must not contain NUL characters or unpaired surrogates (invalid Unicode text)"]
    }


# WSGI's QUERY_STRING is the raw query as latin-1; the ASCII ones are those the hook may skip.
@given(st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=40))
def test_a_query_the_hook_does_not_parse_holds_nothing_unstorable(raw: str) -> None:
    """The hook skips parsing only queries that cannot decode to a NUL or a lone surrogate:
    whatever werkzeug decodes from such a query, query_problems finds nothing in it."""
    from werkzeug.datastructures import MultiDict
    from werkzeug.wrappers import Request

    from shared.hostile_input import query_may_be_unstorable, query_problems

    request = Request({"QUERY_STRING": raw, "REQUEST_METHOD": "GET"})
    args: MultiDict[str, str] = request.args
    if not query_may_be_unstorable(raw):
        assert query_problems(args.lists()) == {}
    # What could hide one always goes to the parser: an escape, a raw NUL, a non-ASCII byte.
    assert query_may_be_unstorable(raw + "%00")
    assert query_may_be_unstorable(raw + "\x00")
    assert query_may_be_unstorable(raw + "\xed")
