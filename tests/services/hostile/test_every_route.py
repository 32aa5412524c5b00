"""Hostile bytes against every route: a property test sends hostile bodies and query strings to
every route of every service (built from each route's OpenAPI description) and requires a
non-5xx answer, JSON whenever it is an error. It is in the slow tier (by its folder, in
tests/conftest.py): it drives every route of three apps; the targeted tests for each input that
once answered 500 are in tests/services/test_hostile_input.py, in the fast tier."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.hostile_input import MAX_JSON_DEPTH


@pytest.fixture
def owner(make_user: Any) -> Any:
    return make_user("owner")


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


def _operations(service_apps: dict[str, Any]) -> list[tuple[str, str, str, list[str], list[str]]]:
    """(service, method, path template, body fields, query fields) of every API operation."""
    operations = []
    for service, app in service_apps.items():
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


def test_every_route_answers_hostile_input_with_a_json_4xx(
    service_apps: dict[str, Any], owner: Any
) -> None:
    operations = _operations(service_apps)
    assert len(operations) >= 20  # every service's routes, read from their OpenAPI specs
    clients = {service: app.test_client() for service, app in service_apps.items()}

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
