"""Facts: record, list, edit, delete; validation, roles, accounts."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from sqlalchemy import func, select

from shared.db import db
from shared.models import SessionFact


def _count_facts() -> int:
    with db.session() as session:
        return int(session.execute(select(func.count()).select_from(SessionFact)).scalar_one())


def test_create_fact_trims_defaults_and_bumps(
    pilot_client: Any, engineer: Any, helpers: SimpleNamespace
) -> None:
    sid = helpers.create_session(pilot_client, engineer)["id"]
    response = pilot_client.post(
        f"{helpers.base}/{sid}/facts",
        json={"text": "\n  Event 1000 from OUTLOOK.EXE  \t"},
        headers=engineer.headers,
    )
    assert response.status_code == 201
    body = response.get_json()
    assert body["text"] == "Event 1000 from OUTLOOK.EXE"
    assert body["kind"] == "observation"
    assert body["source"] == "engineer"
    assert body["created_by"] == str(engineer.id)
    assert body["session_id"] == sid
    assert body["state_version"] == 2
    assert body["id"] and body["created_at"]
    assert helpers.session_version(sid) == 2

    kinds = ["symptom", "observation", "confirmed", "ruled_out", "environment"]
    for offset, kind in enumerate(kinds, start=1):
        made = helpers.add_fact(pilot_client, engineer, sid, f"fact {kind}", kind)
        assert made["kind"] == kind
        assert made["state_version"] == 2 + offset


def test_fact_text_limits_apply_after_trimming(
    pilot_client: Any, engineer: Any, helpers: SimpleNamespace
) -> None:
    sid = helpers.create_session(pilot_client, engineer)["id"]
    url = f"{helpers.base}/{sid}/facts"
    longest = "a" * 4000
    ok = pilot_client.post(url, json={"text": f"   {longest}   "}, headers=engineer.headers)
    assert ok.status_code == 201
    assert ok.get_json()["text"] == longest
    single = pilot_client.post(url, json={"text": " x "}, headers=engineer.headers)
    assert single.status_code == 201 and single.get_json()["text"] == "x"


def test_create_fact_rejects_bad_input_and_writes_nothing(
    pilot_client: Any, engineer: Any, helpers: SimpleNamespace
) -> None:
    sid = helpers.create_session(pilot_client, engineer)["id"]
    url = f"{helpers.base}/{sid}/facts"
    cases: list[tuple[dict[str, Any], str]] = [
        ({}, "text"),
        ({"text": ""}, "text"),
        ({"text": " \n\t "}, "text"),
        ({"text": "b" * 4001}, "text"),
        ({"text": "fine", "kind": "hunch"}, "kind"),
        ({"text": "fine", "source": "assistant"}, "source"),
        ({"text": ["list"]}, "text"),
    ]
    for payload, field in cases:
        response = pilot_client.post(url, json=payload, headers=engineer.headers)
        assert response.status_code == 422, payload
        body = response.get_json()
        assert body["code"] == 422
        assert field in body["errors"]["json"], (payload, body)
    assert _count_facts() == 0
    assert helpers.session_version(sid) == 1


def test_list_facts_oldest_first_and_per_session(
    pilot_client: Any, engineer: Any, helpers: SimpleNamespace
) -> None:
    sid = helpers.create_session(pilot_client, engineer)["id"]
    other = helpers.create_session(pilot_client, engineer, title="other")["id"]
    texts = ["first", "second", "third"]
    for text in texts:
        helpers.add_fact(pilot_client, engineer, sid, text)
    helpers.add_fact(pilot_client, engineer, other, "elsewhere")
    listed = pilot_client.get(f"{helpers.base}/{sid}/facts", headers=engineer.headers)
    assert listed.status_code == 200
    assert [f["text"] for f in listed.get_json()] == texts
    assert "state_version" not in listed.get_json()[0]


def test_patch_fact(pilot_client: Any, engineer: Any, helpers: SimpleNamespace) -> None:
    sid = helpers.create_session(pilot_client, engineer)["id"]
    fact = helpers.add_fact(pilot_client, engineer, sid, "DNS resolves to old IP")
    url = f"{helpers.base}/{sid}/facts/{fact['id']}"

    kind_only = pilot_client.patch(url, json={"kind": "confirmed"}, headers=engineer.headers)
    assert kind_only.status_code == 200
    assert kind_only.get_json()["kind"] == "confirmed"
    assert kind_only.get_json()["text"] == "DNS resolves to old IP"
    assert kind_only.get_json()["state_version"] == 3

    both = pilot_client.patch(
        url, json={"text": "  DNS fixed  ", "kind": "ruled_out"}, headers=engineer.headers
    )
    assert both.status_code == 200
    assert both.get_json()["text"] == "DNS fixed"
    assert both.get_json()["kind"] == "ruled_out"
    assert both.get_json()["state_version"] == 4

    for payload, field in (
        ({}, "_schema"),
        ({"text": "   "}, "text"),
        ({"kind": "guess"}, "kind"),
        ({"text": "c" * 4001}, "text"),
    ):
        bad = pilot_client.patch(url, json=payload, headers=engineer.headers)
        assert bad.status_code == 422, payload
        assert field in bad.get_json()["errors"]["json"]
    assert helpers.session_version(sid) == 4
    listed = pilot_client.get(f"{helpers.base}/{sid}/facts", headers=engineer.headers).get_json()
    assert [(f["text"], f["kind"]) for f in listed] == [("DNS fixed", "ruled_out")]


def test_fact_404s_leave_the_version_alone(
    pilot_client: Any, engineer: Any, outsider: Any, helpers: SimpleNamespace
) -> None:
    sid = helpers.create_session(pilot_client, engineer)["id"]
    other = helpers.create_session(pilot_client, engineer, title="other")["id"]
    fact = helpers.add_fact(pilot_client, engineer, sid, "mine")
    foreign_sid = helpers.create_session(pilot_client, outsider)["id"]
    foreign_fact = helpers.add_fact(pilot_client, outsider, foreign_sid, "theirs")

    attempts = [
        # a fact of another session of the same account
        f"{helpers.base}/{other}/facts/{fact['id']}",
        # an unknown fact
        f"{helpers.base}/{sid}/facts/{uuid.uuid4()}",
        # another account's fact through my session
        f"{helpers.base}/{sid}/facts/{foreign_fact['id']}",
        # another account's fact through its own session
        f"{helpers.base}/{foreign_sid}/facts/{foreign_fact['id']}",
    ]
    for url in attempts:
        patched = pilot_client.patch(url, json={"text": "x"}, headers=engineer.headers)
        assert patched.status_code == 404, url
        deleted = pilot_client.delete(url, headers=engineer.headers)
        assert deleted.status_code == 404, url
    assert helpers.session_version(sid) == 2
    assert helpers.session_version(other) == 1
    assert helpers.session_version(foreign_sid) == 2
    listed = pilot_client.get(f"{helpers.base}/{foreign_sid}/facts", headers=outsider.headers)
    assert [f["text"] for f in listed.get_json()] == ["theirs"]
    cross = pilot_client.get(f"{helpers.base}/{foreign_sid}/facts", headers=engineer.headers)
    assert cross.status_code == 404
    added = pilot_client.post(
        f"{helpers.base}/{foreign_sid}/facts", json={"text": "x"}, headers=engineer.headers
    )
    assert added.status_code == 404
    assert _count_facts() == 2


def test_delete_fact_answers_with_the_new_version(
    pilot_client: Any, engineer: Any, helpers: SimpleNamespace
) -> None:
    sid = helpers.create_session(pilot_client, engineer)["id"]
    keep = helpers.add_fact(pilot_client, engineer, sid, "keep")
    drop = helpers.add_fact(pilot_client, engineer, sid, "drop")
    url = f"{helpers.base}/{sid}/facts/{drop['id']}"

    response = pilot_client.delete(url, headers=engineer.headers)
    assert response.status_code == 200
    assert response.get_json() == {"id": drop["id"], "deleted": True, "state_version": 4}
    listed = pilot_client.get(f"{helpers.base}/{sid}/facts", headers=engineer.headers).get_json()
    assert [f["id"] for f in listed] == [keep["id"]]
    again = pilot_client.delete(url, headers=engineer.headers)
    assert again.status_code == 404
    assert helpers.session_version(sid) == 4


def test_viewer_lists_facts_but_cannot_change_them(
    pilot_client: Any, make_user: Callable[..., Any], helpers: SimpleNamespace
) -> None:
    engineer = make_user("engineer")
    viewer = make_user("viewer", account_id=engineer.account_id)
    sid = helpers.create_session(pilot_client, engineer)["id"]
    fact = helpers.add_fact(pilot_client, engineer, sid, "seen by all")
    base = f"{helpers.base}/{sid}/facts"

    listed = pilot_client.get(base, headers=viewer.headers)
    assert listed.status_code == 200 and len(listed.get_json()) == 1
    responses = [
        pilot_client.post(base, json={"text": "x"}, headers=viewer.headers),
        pilot_client.patch(f"{base}/{fact['id']}", json={"text": "x"}, headers=viewer.headers),
        pilot_client.delete(f"{base}/{fact['id']}", headers=viewer.headers),
    ]
    assert [r.status_code for r in responses] == [403, 403, 403]
    assert responses[0].get_json()["code"] == 403
    assert helpers.session_version(sid) == 2
    # A viewer of another account still sees a 404, not a 403.
    stranger = make_user("viewer")
    assert pilot_client.post(base, json={"text": "x"}, headers=stranger.headers).status_code == 404
