"""GET /api/v1/scripts/templates with search + tags over 20,000 templates.

The ranked search (weighted full text + trigram near-matches, ordered by relevance) is measured
through the API and as the domain query alone; beside it, in the same run, the substring query
it replaced (ILIKE over name, description and slug, ordered by name) as the same domain query,
the naive approach (load every visible row, filter tags in Python) and GET /api/v1/auth/me
(authentication and one query: the floor of any endpoint). Compare the ratios, not the absolute
times.
"""

from __future__ import annotations

import random
import uuid
from typing import Any

import pytest
from sqlalchemy import func, insert, or_, select

from bench.accounts import bench_owner
from services.scripts import catalogue
from shared.auth import load_principal
from shared.db import db
from shared.models import ScriptCategory, ScriptTemplate
from shared.permissions import template_visibility

TEMPLATE_COUNT = 20_000
WORDS = [
    "disk",
    "dns",
    "printer",
    "spooler",
    "user",
    "mailbox",
    "bitlocker",
    "update",
    "event",
    "service",
]
TAGS = [
    "ad",
    "network",
    "printing",
    "storage",
    "security",
    "m365",
    "updates",
    "logs",
    "services",
    "users",
]


@pytest.fixture(scope="module")
def populated(migrated: Any) -> dict[str, Any]:
    account, user = bench_owner(migrated, "Bench MSP")
    rng = random.Random(7)
    with db.transaction() as session:
        category = ScriptCategory(slug=f"bench-{uuid.uuid4().hex[:6]}", name="Bench", sort_order=0)
        session.add(category)
        session.flush()
        rows = []
        for i in range(TEMPLATE_COUNT):
            words = rng.sample(WORDS, 3)
            rows.append(
                {
                    "id": uuid.uuid4(),
                    "category_id": category.id,
                    "scope": "personal" if i % 3 else "builtin",
                    "account_id": None if i % 3 == 0 else account,
                    "created_by": uuid.UUID(user["id"]) if i % 3 else None,
                    "name": f"{' '.join(words).title()} {i}",
                    "slug": f"bench-{i}",
                    "description": f"Checks {words[0]} and {words[1]} on a workstation",
                    "use_case": f"The {words[2]} misbehaves after an update",
                    "script_body": "Get-Date",
                    "tags": rng.sample(TAGS, 2),
                }
            )
        session.execute(insert(ScriptTemplate), rows)
    # The steady state autovacuum keeps: the GIN indexes' pending lists merged (a bulk insert
    # leaves them unmerged, and every scan then reads the list) and fresh statistics.
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE script_templates")
    return {
        "headers": {"Authorization": f"Bearer {user['token']}"},
        "user_id": uuid.UUID(user["id"]),
    }


SEARCH = "printer spooler"
TAGS_FILTER = ("printing", "security")
QUERY = f"/api/v1/scripts/templates?search={SEARCH}&tags={','.join(TAGS_FILTER)}&limit=50"


@pytest.mark.benchmark(group="templates-list")
def test_ranked_search_api(benchmark: Any, scripts_app: Any, populated: Any) -> None:
    client = scripts_app.test_client()
    response = benchmark(client.get, QUERY, headers=populated["headers"])
    assert response.status_code == 200 and len(response.json) == 50
    assert int(response.headers["X-Total-Count"]) > 50


@pytest.mark.benchmark(group="templates-query")
def test_ranked_search_query(benchmark: Any, populated: Any) -> None:
    """The domain query the API runs: ranked, filtered by tags, one page plus the exact total."""
    filters = catalogue.TemplateFilters(search=SEARCH, tags=TAGS_FILTER, limit=50)

    def ranked() -> int:
        with db.session() as session:
            principal = load_principal(session, populated["user_id"])
            assert principal is not None
            rows, total = catalogue.list_templates(session, principal, filters)
            return total

    assert benchmark(ranked) > 50


@pytest.mark.benchmark(group="templates-query")
def test_baseline_substring_query(benchmark: Any, populated: Any) -> None:
    """The query ranked search replaced: ILIKE '%spooler%' over name, description and slug
    (one word: the old search matched the whole text as one phrase), tags, ordered by name."""

    def substring() -> int:
        with db.session() as session:
            principal = load_principal(session, populated["user_id"])
            assert principal is not None
            term = "%spooler%"
            rows = session.execute(
                select(ScriptTemplate)
                .where(ScriptTemplate.is_active.is_(True), template_visibility(principal))
                .where(
                    or_(
                        ScriptTemplate.name.ilike(term),
                        ScriptTemplate.description.ilike(term),
                        ScriptTemplate.slug.ilike(term),
                    )
                )
                .where(ScriptTemplate.tags.overlap(list(TAGS_FILTER)))
                .add_columns(func.count().over().label("total"))
                .order_by(ScriptTemplate.name, ScriptTemplate.id)
                .limit(50)
            ).all()
            return int(rows[0].total)

    assert benchmark(substring) > 50


@pytest.mark.benchmark(group="templates-list")
def test_baseline_python_tag_filter(benchmark: Any, populated: Any) -> None:
    """The naive query: every visible row loaded, tags filtered in Python."""

    def python_filter() -> int:
        with db.session() as session:
            term = "%spooler%"
            rows = session.scalars(
                select(ScriptTemplate)
                .where(ScriptTemplate.is_active.is_(True))
                .where(
                    or_(
                        func.lower(ScriptTemplate.name).like(term),
                        func.lower(ScriptTemplate.description).like(term),
                    )
                )
                .order_by(ScriptTemplate.name)
            ).all()
            wanted = {"printing", "security"}
            return len([t for t in rows if wanted & {tag.lower() for tag in t.tags}])

    assert benchmark(python_filter) > 50


@pytest.mark.benchmark(group="templates-list")
def test_baseline_auth_me(benchmark: Any, scripts_app: Any, populated: Any) -> None:
    client = scripts_app.test_client()
    response = benchmark(client.get, "/api/v1/auth/me", headers=populated["headers"])
    assert response.status_code == 200
