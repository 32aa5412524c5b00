"""GET /api/v1/scripts/templates with search + tags over 20,000 templates.

Baselines measured in the same run: the seed's approach (load every visible row, filter tags in
Python) and GET /api/v1/auth/me (authentication and one query: the floor of any endpoint).
Compare the ratios, not the absolute times.
"""

from __future__ import annotations

import random
import uuid
from typing import Any

import pytest
from sqlalchemy import func, insert, or_, select

from shared.db import db
from shared.models import ScriptCategory, ScriptTemplate
from tests.conftest import (  # noqa: F401 - fixtures
    make_account,
    make_user,
    migrated,
    scripts_app,
    settings,
    test_servers,
)

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
def populated(migrated: Any) -> dict[str, Any]:  # noqa: F811
    from shared.cli import create_account, create_user

    account = uuid.UUID(create_account("Bench MSP")["id"])
    user = create_user(
        migrated,
        account=str(account),
        email=f"bench-{uuid.uuid4().hex[:6]}@b.test",
        role="owner",
        team="Bench",
        super_admin=False,
        password=None,
    )
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
                    "script_body": "Get-Date",
                    "tags": rng.sample(TAGS, 2),
                }
            )
        session.execute(insert(ScriptTemplate), rows)
    with db.engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE script_templates")
    return {"headers": {"Authorization": f"Bearer {user['token']}"}}


QUERY = "/api/v1/scripts/templates?search=spooler&tags=printing,security&limit=50"


@pytest.mark.benchmark(group="templates-list")
def test_list_templates_search_and_tags(benchmark: Any, scripts_app: Any, populated: Any) -> None:  # noqa: F811
    client = scripts_app.test_client()
    response = benchmark(client.get, QUERY, headers=populated["headers"])
    assert response.status_code == 200 and len(response.json) == 50


@pytest.mark.benchmark(group="templates-list")
def test_baseline_seed_style_python_tag_filter(benchmark: Any, populated: Any) -> None:
    """The seed's query: every visible row loaded, tags filtered in Python."""

    def seed_style() -> int:
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

    assert benchmark(seed_style) > 50


@pytest.mark.benchmark(group="templates-list")
def test_baseline_auth_me(benchmark: Any, scripts_app: Any, populated: Any) -> None:  # noqa: F811
    client = scripts_app.test_client()
    response = benchmark(client.get, "/api/v1/auth/me", headers=populated["headers"])
    assert response.status_code == 200
