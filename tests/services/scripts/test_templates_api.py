"""The script library API: routes, filters, ordering, versions."""

from __future__ import annotations

import uuid
from typing import Any

from tests.support.templates import SIMPLE_BODY, SIMPLE_SCHEMA

BASE = "/api/v1/scripts"


def test_requests_without_a_valid_token_are_401(client: Any, migrated: Any) -> None:
    assert client.get(f"{BASE}/categories").status_code == 401
    bad = {"Authorization": "Bearer not-a-token"}
    response = client.get(f"{BASE}/categories", headers=bad)
    assert response.status_code == 401
    assert "token" in response.json["message"]


def test_categories_are_sorted_and_count_visible_templates(
    client: Any, make_user: Any, library: dict[str, Any], create_template: Any
) -> None:
    owner = make_user("owner")
    before = client.get(f"{BASE}/categories", headers=owner.headers).json
    assert [c["sort_order"] for c in before] == sorted(c["sort_order"] for c in before)
    assert sum(c["template_count"] for c in before) == library["templates"]

    created = create_template(owner)
    stranger = make_user("owner")
    mine = {
        c["id"]: c["template_count"]
        for c in client.get(f"{BASE}/categories", headers=owner.headers).json
    }
    theirs = {
        c["id"]: c["template_count"]
        for c in client.get(f"{BASE}/categories", headers=stranger.headers).json
    }
    assert mine[created["category_id"]] == theirs[created["category_id"]] + 1


def test_create_get_update_delete_round_trip(
    client: Any, make_user: Any, create_template: Any
) -> None:
    engineer = make_user("engineer")
    created = create_template(engineer, name="Clear Print Spooler", tags=["Printing", "spooler"])
    assert created["slug"] == "clear-print-spooler"
    assert created["version"] == 1 and created["usage_count"] == 0
    assert created["tags"] == ["printing", "spooler"]
    assert created["scope"] == "team"
    template_id = created["id"]

    fetched = client.get(f"{BASE}/templates/{template_id}", headers=engineer.headers).json
    assert fetched["script_body"] == SIMPLE_BODY
    assert fetched["parameters_schema"] == SIMPLE_SCHEMA

    renamed = client.put(
        f"{BASE}/templates/{template_id}", json={"name": "Spooler reset"}, headers=engineer.headers
    ).json
    assert renamed["name"] == "Spooler reset"
    assert renamed["slug"] == "clear-print-spooler", "slugs are stable across renames"
    assert renamed["version"] == 1, "a rename is not a new version"

    new_body = SIMPLE_BODY + "Write-Output 'done'\n"
    bumped = client.put(
        f"{BASE}/templates/{template_id}", json={"script_body": new_body}, headers=engineer.headers
    ).json
    assert bumped["version"] == 2
    same = client.put(
        f"{BASE}/templates/{template_id}", json={"script_body": new_body}, headers=engineer.headers
    ).json
    assert same["version"] == 2, "an unchanged body is not a new version"
    regen = client.put(
        f"{BASE}/templates/{template_id}", json={"regenerate_slug": True}, headers=engineer.headers
    ).json
    assert regen["slug"] == "spooler-reset"

    versions = client.get(f"{BASE}/templates/{template_id}/versions", headers=engineer.headers).json
    assert [v["version"] for v in versions] == [2, 1]
    assert versions[1]["script_body"] == SIMPLE_BODY

    assert (
        client.delete(f"{BASE}/templates/{template_id}", headers=engineer.headers).status_code
        == 204
    )
    assert (
        client.get(f"{BASE}/templates/{template_id}", headers=engineer.headers).status_code == 404
    )
    listed = client.get(f"{BASE}/templates?mine=true", headers=engineer.headers).json
    assert template_id not in {t["id"] for t in listed}


def test_list_filters(client: Any, make_user: Any, library: Any, create_template: Any) -> None:
    owner = make_user("owner")
    engineer = make_user("engineer", account_id=owner.account_id)
    a = create_template(engineer, name="Alpha reset", tags=["AD", "Password"], description="resets")
    b = create_template(owner, name="Beta check", tags=["dns"], shared=False)
    ids = lambda r: {t["id"] for t in r.json}  # noqa: E731

    everything = client.get(f"{BASE}/templates?limit=1000", headers=owner.headers)
    names = [t["name"] for t in everything.json]
    assert names == sorted(names), "ordered by name"
    assert int(everything.headers["X-Total-Count"]) == library["templates"] + 2

    assert ids(client.get(f"{BASE}/templates?search=ALPHA", headers=owner.headers)) == {a["id"]}
    assert ids(client.get(f"{BASE}/templates?tags=password,nothing", headers=owner.headers)) >= {
        a["id"]
    }
    assert a["id"] not in ids(client.get(f"{BASE}/templates?tags=dns", headers=owner.headers))
    assert ids(client.get(f"{BASE}/templates?mine=true", headers=engineer.headers)) == {a["id"]}
    assert ids(client.get(f"{BASE}/templates?shared=true", headers=engineer.headers)) == {a["id"]}
    assert ids(client.get(f"{BASE}/templates?managed=true", headers=engineer.headers)) == {a["id"]}
    assert ids(client.get(f"{BASE}/templates?managed=true", headers=owner.headers)) == {
        a["id"],
        b["id"],
    }

    category = client.get(f"{BASE}/templates/{a['id']}", headers=owner.headers).json["category_id"]
    slug = next(
        c["slug"]
        for c in client.get(f"{BASE}/categories", headers=owner.headers).json
        if c["id"] == category
    )
    in_category = client.get(
        f"{BASE}/templates?category_slug={slug}&limit=1000", headers=owner.headers
    ).json
    assert a["id"] in {t["id"] for t in in_category}
    assert all(t["category_id"] == category for t in in_category)

    page = client.get(f"{BASE}/templates?limit=2&offset=1", headers=owner.headers).json
    assert [t["name"] for t in page] == names[1:3]


def test_shared_filter_is_empty_for_a_user_without_team(
    client: Any, make_user: Any, create_template: Any
) -> None:
    loner = make_user("engineer", team=None)
    create_template(loner)
    assert client.get(f"{BASE}/templates?shared=true", headers=loner.headers).json == []


def test_generate_returns_script_warnings_and_metadata_and_history_lists_it(
    client: Any, make_user: Any, create_template: Any
) -> None:
    engineer = make_user("engineer")
    template = create_template(engineer, requires_elevation=True, estimated_runtime="< 1 min")
    response = client.post(
        f"{BASE}/generate",
        json={
            "template_id": template["id"],
            "parameters": {"target": "srv01", "service": "Spooler"},
        },
        headers=engineer.headers,
    )
    assert response.status_code == 200, response.json
    body = response.json
    assert set(body) >= {"id", "script", "warnings", "metadata"}
    assert "Spooler" in body["script"] and "srv01" in body["script"]
    assert body["warnings"] == ["This script requires 'Run as Administrator'"]
    assert set(body["metadata"]) == {
        "template_name",
        "template_version",
        "requires_elevation",
        "requires_modules",
        "generated_at",
        "estimated_runtime",
    }
    assert body["metadata"]["estimated_runtime"] == "< 1 min"

    history = client.get(f"{BASE}/generations", headers=engineer.headers).json
    assert [h["id"] for h in history] == [body["id"]]
    assert history[0]["template_name"] == template["name"]
    assert history[0]["parameters_used"] == {"target": "srv01", "service": "Spooler"}
    assert (
        client.get(f"{BASE}/templates/{template['id']}", headers=engineer.headers).json[
            "usage_count"
        ]
        == 1
    )


def test_generations_are_the_callers_own_newest_first_and_paged(
    client: Any, make_user: Any, create_template: Any
) -> None:
    engineer = make_user("engineer")
    colleague = make_user("engineer", account_id=engineer.account_id)
    template = create_template(engineer)
    made = []
    for i in range(5):
        r = client.post(
            f"{BASE}/generate",
            json={"template_id": template["id"], "parameters": {"target": f"h{i}", "service": "x"}},
            headers=engineer.headers,
        )
        made.append(r.json["id"])
    client.post(
        f"{BASE}/generate",
        json={"template_id": template["id"], "parameters": {"target": "other", "service": "x"}},
        headers=colleague.headers,
    )
    page = client.get(f"{BASE}/generations?limit=3&offset=1", headers=engineer.headers)
    assert [h["id"] for h in page.json] == list(reversed(made))[1:4]
    assert page.headers["X-Total-Count"] == "5"  # the unpaged total of the caller's own
    empty = client.get(f"{BASE}/generations?offset=50", headers=engineer.headers)
    assert empty.json == [] and empty.headers["X-Total-Count"] == "5"
    for bad in ("limit=0", "limit=101", "offset=-1"):
        r = client.get(f"{BASE}/generations?{bad}", headers=engineer.headers)
        assert r.status_code == 422, bad
        assert bad.split("=")[0] in r.json["errors"]["query"]


def test_openapi_spec_documents_every_route(client: Any, migrated: Any) -> None:
    spec = client.get("/api/v1/openapi/scripts.json").json
    assert spec["openapi"].startswith("3.")
    for path in (
        "/api/v1/auth/token",
        "/api/v1/scripts/categories",
        "/api/v1/scripts/templates",
        "/api/v1/scripts/templates/{template_id}",
        "/api/v1/scripts/templates/{template_id}/share",
        "/api/v1/scripts/generate",
        "/api/v1/scripts/generations",
    ):
        assert path in spec["paths"], path


def test_unknown_template_is_404_json(client: Any, make_user: Any) -> None:
    user = make_user("owner")
    response = client.get(f"{BASE}/templates/{uuid.uuid4()}", headers=user.headers)
    assert response.status_code == 404
    assert response.json["message"] == "Template not found"


def test_generate_refuses_the_undocumented_session_id(
    client: Any, make_user: Any, create_template: Any
) -> None:
    """`session_id` used to be accepted and stored, so an AI session's id sent there was
    silently not linked: it is now a 422 naming the field, and nothing is written."""
    engineer = make_user("engineer")
    template = create_template(engineer)
    response = client.post(
        f"{BASE}/generate",
        json={
            "template_id": template["id"],
            "parameters": {"target": "srv01", "service": "Spooler"},
            "session_id": str(uuid.uuid4()),
        },
        headers=engineer.headers,
    )
    assert response.status_code == 422
    assert "session_id" in response.json["errors"]["json"]
    assert "json.session_id" in response.json["message"]
    history = client.get(f"{BASE}/generations", headers=engineer.headers)
    assert history.json == [] and history.headers["X-Total-Count"] == "0"
    spec = client.get("/api/v1/openapi/scripts.json").json
    schema_name = spec["paths"]["/api/v1/scripts/generate"]["post"]["requestBody"]["content"][
        "application/json"
    ]["schema"]["$ref"].rsplit("/", 1)[-1]
    properties = set(spec["components"]["schemas"][schema_name]["properties"])
    assert {"template_id", "parameters", "ai_session_id"} <= properties
    assert "session_id" not in properties
