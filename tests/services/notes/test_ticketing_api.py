"""GET kinds, PUT {kind, base_url, credentials, options}, POST test and DELETE of
/api/v1/integrations/ticketing."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from shared.db import db
from tests.support.fake_saas import ZendeskFake
from tests.support.servers import settings_with

URL = "/api/v1/integrations/ticketing"


@pytest.fixture(scope="module")
def notes_app(migrated: Any) -> Any:
    from services.notes import create_app

    app = create_app(migrated)
    app.config["TESTING"] = True
    return app


@pytest.fixture
def client(notes_app: Any) -> Any:
    return notes_app.test_client()


@pytest.fixture
def zendesk() -> Any:
    with ZendeskFake() as fake:
        yield fake


def _zendesk_body(fake: Any, **credentials: Any) -> dict[str, Any]:
    return {
        "kind": "zendesk",
        "base_url": fake.base_url,
        "credentials": {**fake.credentials, **credentials},
    }


def test_kinds_describe_every_field_for_a_form(client: Any, make_user: Any) -> None:
    user = make_user("engineer")
    response = client.get(f"{URL}/kinds", headers=user.headers)
    assert response.status_code == 200
    kinds = {k["kind"]: k for k in response.get_json()["kinds"]}
    assert set(kinds) == {
        "webhook", "connectwise", "autotask", "halopsa", "zendesk", "freshservice", "jira_sm",
        "servicenow", "zammad", "request_tracker", "redmine",
    }  # fmt: skip
    zendesk = {f["name"]: f for f in kinds["zendesk"]["credentials"]}
    assert zendesk["api_token"]["secret"] is True and zendesk["api_token"]["required"] is True
    assert zendesk["email"]["secret"] is False
    assert kinds["jira_sm"]["format"] == "adf"
    assert kinds["autotask"]["base_url"]["required"] is False
    assert {o["name"] for o in kinds["servicenow"]["options"]} == {"resolve", "close_code"}


def test_owner_configures_zendesk_credentials_never_come_back_nor_sit_in_clear(
    client: Any, make_user: Any, zendesk: Any
) -> None:
    owner = make_user("owner")
    put = client.put(URL, json=_zendesk_body(zendesk), headers=owner.headers)
    assert put.status_code == 200, put.get_json()
    assert put.get_json()["kind"] == "zendesk"
    assert put.get_json()["credentials_set"] == ["api_token", "email"]
    got = client.get(URL, headers=owner.headers)
    assert got.get_json()["kind"] == "zendesk" and got.get_json()["label"] == "Zendesk"
    for response in (put, got):
        assert zendesk.token not in response.get_data(as_text=True)
    with db.session() as session:
        raw = session.execute(
            text("SELECT url, secret, credentials, options::text FROM ticketing_integrations")
        ).all()
    dumped = repr(raw)
    assert zendesk.token not in dumped and zendesk.email not in dumped
    assert all(str(row[2]).startswith("gAAAAA") for row in raw)


def test_a_secret_left_out_is_kept_and_test_uses_it(
    client: Any, make_user: Any, zendesk: Any
) -> None:
    owner = make_user("owner")
    assert client.put(URL, json=_zendesk_body(zendesk), headers=owner.headers).status_code == 200
    body = _zendesk_body(zendesk)
    del body["credentials"]["api_token"]
    assert client.put(URL, json=body, headers=owner.headers).status_code == 200

    tested = client.post(f"{URL}/test", json={"ticket_ref": "4711"}, headers=owner.headers)
    assert tested.status_code == 200
    assert tested.get_json() == {"ok": True, "detail": "ticket 4711 found: Printer offline"}
    whoami = client.post(f"{URL}/test", json={}, headers=owner.headers)
    assert whoami.get_json()["ok"] is True and zendesk.email in whoami.get_json()["detail"]


def test_test_reports_the_systems_refusal(client: Any, make_user: Any, zendesk: Any) -> None:
    owner = make_user("owner")
    body = _zendesk_body(zendesk, api_token="wrong-token")
    assert client.put(URL, json=body, headers=owner.headers).status_code == 200
    tested = client.post(f"{URL}/test", json={"ticket_ref": "4711"}, headers=owner.headers)
    assert tested.status_code == 200
    result = tested.get_json()
    assert result["ok"] is False
    assert result["detail"] == "Zendesk refused the credentials (HTTP 401)"
    assert result["answer"] == "Couldn't authenticate you"
    missing = client.post(f"{URL}/test", json={"ticket_ref": "999"}, headers=owner.headers)
    assert missing.get_json()["ok"] is False


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "zendesk", "base_url": "http://127.0.0.1:9", "credentials": {"email": "a"}},
         "credentials.api_token"),
        ({"kind": "zendesk", "credentials": {"email": "a", "api_token": "b"}}, "base_url"),
        ({"kind": "redmine", "base_url": "http://127.0.0.1:9",
          "credentials": {"api_key": "k", "password": "x"}}, "credentials.password"),
        ({"kind": "redmine", "base_url": "http://127.0.0.1:9", "credentials": {"api_key": "k"},
          "options": {"private_notes": "yes"}}, "options.private_notes"),
        ({"kind": "nope", "base_url": "http://127.0.0.1:9"}, "kind"),
        ({"kind": "zendesk", "base_url": "gopher://x", "credentials": {"email": "a",
          "api_token": "b"}}, "base_url"),
        ({"kind": "redmine", "base_url": "http://127.0.0.1:9", "credentials": {"api_key": 5}},
         "credentials.api_key"),
        ({"kind": "zendesk", "base_url": "http://127.0.0.1:9", "surprise": 1}, "surprise"),
    ],
)  # fmt: skip
def test_bad_configurations_are_422_naming_the_field_and_store_nothing(
    client: Any, make_user: Any, body: dict[str, Any], field: str
) -> None:
    owner = make_user("owner")
    response = client.put(URL, json=body, headers=owner.headers)
    assert response.status_code == 422, response.get_json()
    errors = response.get_json()["errors"]
    # Schema errors come under "json" (flask-smorest), the domain's flat.
    flat = set(errors) | set(errors.get("json", {}))
    assert field in flat, errors
    assert client.get(URL, headers=owner.headers).status_code == 404


def test_private_base_urls_are_refused_naming_the_setting(migrated: Any, make_user: Any) -> None:
    from services.notes import create_app

    strict = create_app(settings_with(migrated, ALLOW_PRIVATE_WEBHOOKS=False))
    owner = make_user("owner")
    try:
        body = {"kind": "redmine", "base_url": "http://10.1.2.3", "credentials": {"api_key": "k"}}
        response = strict.test_client().put(URL, json=body, headers=owner.headers)
        assert response.status_code == 422
        assert "ALLOW_PRIVATE_WEBHOOKS" in response.get_json()["errors"]["base_url"][0]
        halo = {
            "kind": "halopsa",
            "base_url": "https://example.com",
            "credentials": {"client_id": "c", "client_secret": "s",
                            "auth_url": "http://169.254.169.254/auth"},
        }  # fmt: skip
        refused = strict.test_client().put(URL, json=halo, headers=owner.headers)
        assert refused.status_code == 422
    finally:
        from shared import runtime

        runtime.configure(migrated)


def test_webhook_secret_is_kept_when_the_url_changes(client: Any, make_user: Any) -> None:
    owner = make_user("owner")
    first = client.put(URL, json={"url": "http://127.0.0.1:9/a"}, headers=owner.headers)
    secret = first.get_json()["secret"]
    assert first.get_json()["secret_generated"] is True
    moved = client.put(
        URL, json={"kind": "webhook", "base_url": "http://127.0.0.1:9/b"}, headers=owner.headers
    )
    assert moved.status_code == 200
    assert moved.get_json()["secret_kept"] is True and moved.get_json()["secret"] is None
    from services.notes.integrations import _row

    with db.session() as session:
        row = _row(session, owner.account_id)
        assert row is not None and row.secret == secret and row.url == "http://127.0.0.1:9/b"


def test_delete_removes_it_owners_only_and_other_accounts_see_nothing(
    client: Any, make_user: Any, zendesk: Any
) -> None:
    owner = make_user("owner")
    other = make_user("owner")
    engineer = make_user("engineer", account_id=owner.account_id)
    assert client.put(URL, json=_zendesk_body(zendesk), headers=owner.headers).status_code == 200
    assert client.delete(URL, headers=engineer.headers).status_code == 403
    assert client.post(f"{URL}/test", json={}, headers=engineer.headers).status_code == 403
    assert client.delete(URL, headers=other.headers).status_code == 404
    assert client.post(f"{URL}/test", json={}, headers=other.headers).status_code == 404
    assert client.delete(URL, headers=owner.headers).status_code == 204
    assert client.get(URL, headers=owner.headers).status_code == 404
    assert client.delete(URL, headers=owner.headers).status_code == 404


def test_key_rotation_re_encrypts_native_credentials(
    client: Any, make_user: Any, zendesk: Any
) -> None:
    from cryptography.fernet import Fernet

    from app.cli import rotate_integration_key
    from services.notes.integrations import _row, stored_credentials
    from shared import secrets_at_rest

    owner = make_user("owner")
    assert client.put(URL, json=_zendesk_body(zendesk), headers=owner.headers).status_code == 200
    old = secrets_at_rest.box()
    new_key = Fernet.generate_key().decode()
    try:
        secrets_at_rest.configure([new_key, *old.keys])
        assert rotate_integration_key()["rotated"] >= 1
        secrets_at_rest.configure([new_key])  # the old key is gone
        with db.session() as session:
            row = _row(session, owner.account_id)
            assert row is not None
            assert stored_credentials(row)["api_token"] == zendesk.token
    finally:
        secrets_at_rest.configure(list(old.keys))
        with db.transaction() as session:
            session.execute(text("DELETE FROM ticketing_integrations"))
