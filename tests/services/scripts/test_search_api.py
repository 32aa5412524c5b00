"""Ranked template search, the tag list and look-up by slug, through the gateway."""

from __future__ import annotations

from typing import Any

import pytest
from werkzeug.test import Client

BASE = "/api/v1/scripts"


@pytest.fixture(scope="module")
def gateway_client(migrated: Any) -> Client:
    from app.gateway import create_app

    return Client(create_app(migrated))


@pytest.mark.parametrize(
    ("phrase", "expected"),
    [
        ("printer spooler", "print-clear-spooler"),
        ("locked out", "ad-unlock-account"),
        ("bitlocker key", "bitlocker-backup-recovery-key"),
        ("spooller", "print-clear-spooler"),
        ("reset password for kiosk", "local-admin-reset-password"),
        ("unlock", "ad-unlock-account"),
        ('"recovery key"', "bitlocker-backup-recovery-key"),
    ],
)
def test_phrases_find_the_right_builtin_first(
    gateway_client: Client, make_user: Any, library: Any, phrase: str, expected: str
) -> None:
    engineer = make_user("engineer")
    response = gateway_client.get(
        f"{BASE}/templates", query_string={"search": phrase}, headers=engineer.headers
    )
    assert response.status_code == 200
    slugs = [t["slug"] for t in response.json]
    assert slugs and slugs[0] == expected, slugs[:5]
    assert int(response.headers["X-Total-Count"]) == len(slugs)


def test_search_combines_with_filters_and_counts_exactly(
    client: Any, make_user: Any, library: Any, create_template: Any
) -> None:
    owner = make_user("owner")
    mine = create_template(owner, name="Spooler health probe", tags=["printing", "probe"])
    create_template(owner, name="Unrelated inventory", tags=["inventory"])

    both = client.get(f"{BASE}/templates?search=spooler&tags=probe", headers=owner.headers)
    assert [t["id"] for t in both.json] == [mine["id"]]
    assert both.headers["X-Total-Count"] == "1"

    printing = client.get(
        f"{BASE}/templates?search=print&category_slug=printing&limit=1", headers=owner.headers
    )
    total = int(printing.headers["X-Total-Count"])
    everything = client.get(
        f"{BASE}/templates?search=print&category_slug=printing&limit=100",
        headers=owner.headers,
    ).json
    assert total == len(everything) >= 3 and len(printing.json) == 1
    assert all(t["slug"].startswith("print-") for t in everything)
    assert mine["id"] not in {t["id"] for t in everything}, "not in the printing category"

    only_mine = client.get(f"{BASE}/templates?search=spooler&mine=true", headers=owner.headers)
    assert [t["id"] for t in only_mine.json] == [mine["id"]]
    managed = client.get(f"{BASE}/templates?search=spooler&managed=true", headers=owner.headers)
    assert [t["id"] for t in managed.json] == [mine["id"]]

    stranger = make_user("owner")
    theirs = client.get(f"{BASE}/templates?search=spooler+probe", headers=stranger.headers)
    assert mine["id"] not in {t["id"] for t in theirs.json}, "another account's template"


def test_search_text_is_data_not_syntax(client: Any, make_user: Any, library: Any) -> None:
    engineer = make_user("engineer")
    for hostile in ["'", "\\", "%", "_", "a & b | !c", "):*", "-", '"', "or", "x' OR 1=1 --"]:
        response = client.get(
            f"{BASE}/templates", query_string={"search": hostile}, headers=engineer.headers
        )
        assert response.status_code == 200, hostile
        assert int(response.headers["X-Total-Count"]) == len(response.json)
    excluded = client.get(
        f"{BASE}/templates", query_string={"search": "print -spooler"}, headers=engineer.headers
    ).json
    slugs = {t["slug"] for t in excluded}
    assert "print-queue-report" in slugs and "print-clear-spooler" not in slugs


def test_without_search_the_order_is_by_name(client: Any, make_user: Any, library: Any) -> None:
    engineer = make_user("engineer")
    names = [t["name"] for t in client.get(f"{BASE}/templates", headers=engineer.headers).json]
    assert names == sorted(names)


def test_tags_lists_visible_tags_with_counts(
    gateway_client: Client, make_user: Any, library: Any, create_template: Any
) -> None:
    owner = make_user("owner")
    create_template(owner, name="Probe A", tags=["zz-private-tag", "printing"], shared=False)
    tags = gateway_client.get(f"{BASE}/tags", headers=owner.headers)
    assert tags.status_code == 200
    counts = {t["tag"]: t["template_count"] for t in tags.json}
    assert counts["zz-private-tag"] == 1
    assert counts["networking"] >= 5 and "network" not in counts
    stranger = make_user("owner")
    theirs = {
        t["tag"]: t["template_count"]
        for t in gateway_client.get(f"{BASE}/tags", headers=stranger.headers).json
    }
    assert "zz-private-tag" not in theirs
    assert counts["printing"] == theirs["printing"] + 1
    assert list(counts) == sorted(counts), "sorted by tag"


def test_template_by_slug(
    gateway_client: Client, make_user: Any, library: Any, create_template: Any
) -> None:
    owner = make_user("owner")
    builtin = gateway_client.get(
        f"{BASE}/templates/by-slug/ad-unlock-account", headers=owner.headers
    )
    assert builtin.status_code == 200
    assert builtin.json["slug"] == "ad-unlock-account" and "script_body" in builtin.json
    own = create_template(owner, name="Print spooler probe", shared=False)
    found = gateway_client.get(f"{BASE}/templates/by-slug/{own['slug']}", headers=owner.headers)
    assert found.json["id"] == own["id"]
    stranger = make_user("owner")
    hidden = gateway_client.get(f"{BASE}/templates/by-slug/{own['slug']}", headers=stranger.headers)
    assert hidden.status_code == 404 and hidden.json["message"]
    missing = gateway_client.get(f"{BASE}/templates/by-slug/no-such-thing", headers=owner.headers)
    assert missing.status_code == 404
