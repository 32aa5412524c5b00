"""The scripts endpoints' invariants: tenancy of templates, writes to a linked session, exact
usage counts, sensitive values, literal search and SQL tag filters, slugs."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import select, text

from shared.db import db
from shared.events import write_transaction
from shared.models import AISession, OutboxEvent, ScriptGeneration, ScriptTemplate
from tests.support.templates import SECRET_BODY, SECRET_SCHEMA

BASE = "/api/v1/scripts"


def _ai_session(account_id: uuid.UUID, status: str = "active") -> uuid.UUID:
    with write_transaction() as session:
        row = AISession(account_id=account_id, title="Printer offline", status=status)
        session.add(row)
        session.flush()
        return row.id


# Tenancy: a template of a user with no team is personal, never global.


def test_personal_templates_are_not_global(
    client: Any, make_user: Any, create_template: Any
) -> None:
    loner = make_user("engineer", team=None)  # team_id NULL: personal, not global
    template = create_template(loner)
    assert template["scope"] == "personal"
    outsider = make_user("engineer")
    assert (
        client.get(f"{BASE}/templates/{template['id']}", headers=outsider.headers).status_code
        == 404
    )
    listed = client.get(f"{BASE}/templates?limit=1000", headers=outsider.headers).json
    assert template["id"] not in {t["id"] for t in listed}


def test_unsharing_does_not_publish_to_every_account(
    client: Any, make_user: Any, create_template: Any
) -> None:
    owner = make_user("owner")
    template = create_template(owner)
    unshared = client.patch(
        f"{BASE}/templates/{template['id']}/share?shared=false", headers=owner.headers
    )
    assert unshared.status_code == 200 and unshared.json["scope"] == "personal"
    outsider = make_user("owner")
    assert (
        client.get(f"{BASE}/templates/{template['id']}", headers=outsider.headers).status_code
        == 404
    )
    generate = client.post(
        f"{BASE}/generate",
        json={"template_id": template["id"], "parameters": {"target": "a", "service": "b"}},
        headers=outsider.headers,
    )
    assert generate.status_code == 404


def test_another_accounts_owner_cannot_share_or_edit(
    client: Any, make_user: Any, create_template: Any
) -> None:
    victim = make_user("owner")
    template = create_template(victim)
    attacker = make_user("owner")
    assert (
        client.patch(
            f"{BASE}/templates/{template['id']}/share?shared=true", headers=attacker.headers
        ).status_code
        == 404
    )
    assert (
        client.put(
            f"{BASE}/templates/{template['id']}", json={"name": "x"}, headers=attacker.headers
        ).status_code
        == 404
    )
    assert (
        client.delete(f"{BASE}/templates/{template['id']}", headers=attacker.headers).status_code
        == 404
    )


# POST /generate bumps only a linked session of the caller's own account.


def test_another_accounts_ai_session_is_404_and_nothing_is_written(
    client: Any, make_user: Any, create_template: Any
) -> None:
    engineer = make_user("engineer")
    template = create_template(engineer)
    foreign = _ai_session(make_user("owner").account_id)
    response = client.post(
        f"{BASE}/generate",
        json={
            "template_id": template["id"],
            "parameters": {"target": "a", "service": "b"},
            "ai_session_id": str(foreign),
        },
        headers=engineer.headers,
    )
    assert response.status_code == 404
    assert "ai_session_id" in response.json["errors"]
    with db.session() as session:
        assert session.get(AISession, foreign).state_version == 0  # type: ignore[union-attr]
        assert session.scalars(select(ScriptGeneration)).all() == []
        assert session.scalars(select(OutboxEvent)).all() == []
        usage = session.get(ScriptTemplate, uuid.UUID(template["id"]))
        assert usage is not None and usage.usage_count == 0


def test_own_session_is_bumped_once_with_an_outbox_event(
    client: Any, make_user: Any, create_template: Any
) -> None:
    engineer = make_user("engineer")
    template = create_template(engineer)
    own = _ai_session(engineer.account_id)
    response = client.post(
        f"{BASE}/generate",
        json={
            "template_id": template["id"],
            "parameters": {"target": "a", "service": "b"},
            "ai_session_id": str(own),
        },
        headers=engineer.headers,
    )
    assert response.status_code == 200
    assert response.json["state_version"] == 1
    with db.session() as session:
        assert session.get(AISession, own).state_version == 1  # type: ignore[union-attr]
        events = session.scalars(select(OutboxEvent)).all()
        assert [(e.topic, e.payload["state_version"], e.payload["cause"]) for e in events] == [
            ("session.state_changed", 1, "script_generated")
        ]
        generation = session.scalars(select(ScriptGeneration)).one()
        assert generation.ai_session_id == own


def test_resolved_session_is_read_only(client: Any, make_user: Any, create_template: Any) -> None:
    engineer = make_user("engineer")
    template = create_template(engineer)
    resolved = _ai_session(engineer.account_id, status="resolved")
    response = client.post(
        f"{BASE}/generate",
        json={
            "template_id": template["id"],
            "parameters": {"target": "a", "service": "b"},
            "ai_session_id": str(resolved),
        },
        headers=engineer.headers,
    )
    assert response.status_code == 409
    with db.session() as session:
        assert session.scalars(select(ScriptGeneration)).all() == []


# usage_count is incremented in SQL: concurrent generates lose no count.


def test_concurrent_generates_count_exactly(
    scripts_app: Any, make_user: Any, create_template: Any
) -> None:
    engineer = make_user("engineer")
    template = create_template(engineer)
    local = threading.local()

    def generate(i: int) -> int:
        if not hasattr(local, "client"):
            local.client = scripts_app.test_client()
        response = local.client.post(
            f"{BASE}/generate",
            json={
                "template_id": template["id"],
                "parameters": {"target": f"pc{i}", "service": "s"},
            },
            headers=engineer.headers,
        )
        return int(response.status_code)

    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(generate, range(200)))
    assert statuses == [200] * 200
    with db.session() as session:
        row = session.get(ScriptTemplate, uuid.UUID(template["id"]))
        assert row is not None and row.usage_count == 200
        count = session.execute(text("SELECT count(*) FROM script_generations")).scalar_one()
        assert count == 200


# A stored generated_script never holds a sensitive value in clear.


def test_sensitive_values_exist_only_in_the_response(
    client: Any, make_user: Any, create_template: Any
) -> None:
    engineer = make_user("engineer")
    template = create_template(engineer, script_body=SECRET_BODY, parameters_schema=SECRET_SCHEMA)
    canary = "Canary-Pw-" + uuid.uuid4().hex
    response = client.post(
        f"{BASE}/generate",
        json={
            "template_id": template["id"],
            "parameters": {"user": "jdoe", "new_password": canary},
        },
        headers=engineer.headers,
    )
    assert response.status_code == 200
    assert canary in response.json["script"]
    with db.engine.connect() as conn:
        stored = conn.execute(
            text("SELECT generated_script, parameters_used::text FROM script_generations")
        ).one()
        assert canary not in stored[0] and "[REDACTED]" in stored[0]
        assert canary not in stored[1] and "[REDACTED]" in stored[1]
        assert "jdoe" in stored[0], "non-sensitive values are kept"
        dump = conn.execute(
            text("SELECT string_agg(t::text, '') FROM (SELECT * FROM script_generations) t")
        ).scalar_one()
        assert canary not in dump
    history = client.get(f"{BASE}/generations", headers=engineer.headers)
    assert canary not in history.get_data(as_text=True)


# Search treats % and _ literally; tags are filtered in SQL.


def test_search_treats_wildcards_literally(
    client: Any, make_user: Any, create_template: Any
) -> None:
    owner = make_user("owner")
    percent = create_template(owner, name="Disk 100% report")
    plain = create_template(owner, name="Disk 1000 report")
    under = create_template(owner, name="net_stat helper")
    other = create_template(owner, name="netAstat helper")

    def ids(query: str) -> set[str]:
        url = f"{BASE}/templates?mine=true&search={query}"
        return {t["id"] for t in client.get(url, headers=owner.headers).json}

    assert ids("100%25") == {percent["id"]}
    assert plain["id"] not in ids("100%25")
    assert ids("net_stat") == {under["id"]}
    assert other["id"] not in ids("net_stat")
    assert ids("%25") == {percent["id"]}


def test_tags_filter_in_sql_case_insensitive_any_of(
    client: Any, make_user: Any, create_template: Any
) -> None:
    owner = make_user("owner")
    ad = create_template(owner, tags=["Active-Directory", "Users"])
    dns = create_template(owner, tags=["DNS"])
    create_template(owner, tags=["printing"])
    found = client.get(f"{BASE}/templates?mine=true&tags=dns, USERS", headers=owner.headers).json
    assert {t["id"] for t in found} == {ad["id"], dns["id"]}
    with db.engine.connect() as conn:
        plan = "\n".join(
            row[0]
            for row in conn.execute(
                text(
                    "EXPLAIN SELECT id FROM script_templates WHERE tags && ARRAY['dns']::varchar[]"
                )
            )
        )
    assert "tags &&" in plan, "the tag filter is a SQL array overlap"


# Slugs: unique per scope, never empty.


def test_slugs_are_unique_per_scope_and_never_empty(
    client: Any, make_user: Any, create_template: Any
) -> None:
    owner = make_user("owner")
    first = create_template(owner, name="Restart service")
    second = create_template(owner, name="Restart Service!")
    assert (first["slug"], second["slug"]) == ("restart-service", "restart-service-2")
    punct = create_template(owner, name="!!!")
    assert punct["slug"] == "template"
    elsewhere = create_template(make_user("owner"), name="Restart service")
    assert elsewhere["slug"] == "restart-service", "another account has its own slug space"


def test_concurrent_creates_with_one_name_get_distinct_slugs(
    scripts_app: Any, make_user: Any, category_id: Any
) -> None:
    owner = make_user("owner")

    def create(_: int) -> str:
        response = scripts_app.test_client().post(
            f"{BASE}/templates",
            json={"category_id": str(category_id), "name": "Same name", "script_body": "Get-Date"},
            headers=owner.headers,
        )
        assert response.status_code == 201, response.json
        return str(response.json["slug"])

    with ThreadPoolExecutor(max_workers=8) as pool:
        slugs = list(pool.map(create, range(8)))
    assert len(set(slugs)) == 8
    assert "same-name" in slugs


def test_explicit_slug_change(client: Any, make_user: Any, create_template: Any) -> None:
    owner = make_user("owner")
    a = create_template(owner, name="Alpha")
    b = create_template(owner, name="Beta")
    moved = client.put(f"{BASE}/templates/{b['id']}", json={"slug": "gamma"}, headers=owner.headers)
    assert moved.json["slug"] == "gamma"
    clash = client.put(
        f"{BASE}/templates/{b['id']}", json={"slug": a["slug"]}, headers=owner.headers
    )
    assert clash.status_code == 200 and clash.json["slug"] == "alpha-2"
