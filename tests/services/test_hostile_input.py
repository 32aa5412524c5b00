"""Hostile bytes against every route: nothing under /api/ answers 500 or HTML for bad input.

What answered 500: NUL characters and lone surrogates in JSON bodies and query strings,
deeply nested JSON, and `offset` values beyond PostgreSQL's bigint. The targeted tests name
each; the property test sends hostile bodies and query strings to every route of every
service (built from each route's OpenAPI description) and requires a non-5xx JSON answer."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.hostile_input import MAX_JSON_DEPTH

SERVICES = ("scripts", "pilot", "notes")


@pytest.fixture(scope="module")
def apps(migrated: Any) -> Iterator[dict[str, Any]]:
    from services import notes, pilot, scripts

    built = {
        "scripts": scripts.create_app(migrated),
        "pilot": pilot.create_app(migrated),
        "notes": notes.create_app(migrated),
    }
    for app in built.values():
        app.config["TESTING"] = True
    yield built


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


def test_nul_character_in_a_body_is_422_naming_the_field(apps: dict[str, Any], owner: Any) -> None:
    client = apps["pilot"].test_client()
    got = client.post("/api/v1/ai-sessions", json={"title": "a\x00b"}, headers=owner.headers)
    assert got.status_code == 422
    assert "title" in _json(got)["errors"]["json"]


def test_lone_surrogate_in_a_body_is_422_naming_the_field(apps: dict[str, Any], owner: Any) -> None:
    client = apps["pilot"].test_client()
    body = b'{"title": "ok", "problem": "broken \\ud800 text"}'
    got = _raw(client, "POST", "/api/v1/ai-sessions", body, owner.headers)
    assert got.status_code == 422
    assert list(_json(got)["errors"]["json"]) == ["problem"]


def test_deeply_nested_json_is_422_not_a_recursion_error(apps: dict[str, Any], owner: Any) -> None:
    client = apps["scripts"].test_client()
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
    apps: dict[str, Any], owner: Any, service: str, path: str
) -> None:
    client = apps[service].test_client()
    got = client.get(f"{path}?offset=99999999999999999999", headers=owner.headers)
    assert got.status_code == 422
    assert "offset" in _json(got)["errors"]["query"]


def test_control_characters_in_a_query_string_are_422(apps: dict[str, Any], owner: Any) -> None:
    client = apps["scripts"].test_client()
    got = client.get("/api/v1/scripts/templates?search=a%00b", headers=owner.headers)
    assert got.status_code == 422
    assert "search" in _json(got)["errors"]["query"]
    surrogate = client.get("/api/v1/scripts/templates?search=%ED%A0%80", headers=owner.headers)
    assert surrogate.status_code < 500


def test_blank_optional_reference_is_not_a_500(apps: dict[str, Any], owner: Any) -> None:
    # Found by the property test below: a blank ticket_ref became None, then met a length check.
    client = apps["pilot"].test_client()
    created = client.post("/api/v1/ai-sessions", json={"title": "t"}, headers=owner.headers)
    sid = _json(created)["id"]
    got = client.patch(f"/api/v1/ai-sessions/{sid}", json={"ticket_ref": ""}, headers=owner.headers)
    assert got.status_code == 200 and _json(got)["ticket_ref"] is None


def test_nul_in_generation_parameters_keeps_the_parameters_key(
    apps: dict[str, Any], owner: Any
) -> None:
    client = apps["scripts"].test_client()
    got = client.post(
        "/api/v1/scripts/generate",
        json={"template_id": str(uuid.uuid4()), "parameters": {"user": "x\x00"}},
        headers=owner.headers,
    )
    assert got.status_code == 422
    assert _json(got)["errors"]["parameters"] == {
        "user": ["must not contain NUL characters or unpaired surrogates (invalid Unicode text)"]
    }


# -- every route -------------------------------------------------------------------------------

HOSTILE_STRINGS = st.one_of(
    st.sampled_from(["\x00", "a\x00b", "\ud800", "x\udfff", "\x01\x1f\x7f", "\u202e", "' OR 1=1"]),
    st.text(max_size=20),
)
HOSTILE_SCALARS = st.one_of(
    HOSTILE_STRINGS,
    st.sampled_from([10**20, -(10**20), 2**63, -1, 0, 1.5e308, True, None]),
    st.floats(allow_nan=True, allow_infinity=True),
)


def _nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


def _operations(apps: dict[str, Any]) -> list[tuple[str, str, str, list[str], list[str]]]:
    """(service, method, path template, body fields, query fields) of every API operation."""
    operations = []
    for service, app in apps.items():
        spec = app.extensions["rf_api"].spec.to_dict()
        schemas = spec.get("components", {}).get("schemas", {})
        for path, item in spec["paths"].items():
            for method, op in item.items():
                if method not in ("get", "post", "put", "patch", "delete"):
                    continue
                query = [p["name"] for p in op.get("parameters", []) if p.get("in") == "query"]
                body: list[str] = []
                content = op.get("requestBody", {}).get("content", {})
                schema = content.get("application/json", {}).get("schema", {})
                ref = schema.get("$ref", "")
                if ref:
                    schema = schemas.get(ref.rsplit("/", 1)[-1], {})
                body = sorted(schema.get("properties", {}))
                operations.append((service, method.upper(), path, body, query))
    return operations


def _fill(path: str) -> str:
    return re.sub(r"\{[^}]+\}", lambda _: str(uuid.uuid4()), path)


@pytest.mark.slow
def test_every_route_answers_hostile_input_with_a_json_4xx(
    apps: dict[str, Any], owner: Any
) -> None:
    operations = _operations(apps)
    assert len(operations) >= 20  # every service's routes, read from their OpenAPI specs
    clients = {service: app.test_client() for service, app in apps.items()}

    @settings(
        max_examples=max(60, 4 * len(operations)),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        database=None,
    )
    @given(data=st.data())
    def probe(data: st.DataObject) -> None:
        service, method, template, body_fields, query_fields = data.draw(
            st.sampled_from(operations)
        )
        path = _fill(template)
        query = {
            name: data.draw(st.one_of(HOSTILE_STRINGS, st.sampled_from(["99999999999999999999"])))
            for name in data.draw(st.lists(st.sampled_from(query_fields or ["x"]), max_size=3))
        }
        body: Any = None
        if method in ("POST", "PUT", "PATCH"):
            keys = body_fields or ["x"]
            body = {
                key: data.draw(
                    st.one_of(
                        HOSTILE_SCALARS,
                        st.just(_nested(MAX_JSON_DEPTH + 2)),
                        st.dictionaries(HOSTILE_STRINGS, HOSTILE_SCALARS, max_size=3),
                        st.lists(HOSTILE_SCALARS, max_size=3),
                    )
                )
                for key in data.draw(st.lists(st.sampled_from(keys), max_size=len(keys)))
            }
        encoded = None if body is None else json.dumps(body, allow_nan=True).encode()
        # Bytes on the wire: a surrogate arrives as the (invalid UTF-8) bytes that encode it.
        query_string = "&".join(
            f"{quote(key.encode('utf-8', 'surrogatepass'))}="
            f"{quote(value.encode('utf-8', 'surrogatepass'))}"
            for key, value in query.items()
        )
        got = clients[service].open(
            path,
            method=method,
            query_string=query_string,
            data=encoded,
            headers={**owner.headers, "Content-Type": "application/json"},
        )
        assert got.status_code < 500, (method, path, query, body, got.data[:300])
        if got.status_code >= 400:
            assert got.mimetype == "application/json", (method, path, got.data[:200])

    probe()
