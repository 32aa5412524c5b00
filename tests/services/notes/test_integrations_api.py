"""PUT/GET /api/v1/integrations/ticketing and the `set-ticketing` CLI command."""

from __future__ import annotations

from typing import Any

import pytest

from services.notes import delivery
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


def test_owner_sets_the_endpoint_and_the_secret_is_shown_once(client: Any, make_user: Any) -> None:
    owner = make_user("owner")
    assert client.get(URL, headers=owner.headers).status_code == 404

    put = client.put(URL, json={"url": "http://127.0.0.1:9/hooks"}, headers=owner.headers)
    assert put.status_code == 200, put.get_json()
    body = put.get_json()
    assert body["url"] == "http://127.0.0.1:9/hooks"
    assert body["status"] == "active"
    assert body["secret_generated"] is True
    assert body["secret"].startswith("whsec_")
    # The generated secret signs what a Standard Webhooks receiver verifies.
    headers = delivery.sign_headers(
        body["secret"], "msg_1", b"{}", __import__("datetime").datetime.now()
    )
    from standardwebhooks import Webhook

    Webhook(body["secret"]).verify("{}", headers)

    got = client.get(URL, headers=owner.headers)
    assert got.status_code == 200
    assert got.get_json()["url"] == "http://127.0.0.1:9/hooks"
    assert got.get_json()["status"] == "active"
    assert "secret" not in got.get_json()
    assert body["secret"] not in got.get_data(as_text=True)


def test_a_given_secret_is_kept_and_a_bad_one_refused(client: Any, make_user: Any) -> None:
    owner = make_user("owner")
    secret = delivery.generate_secret()
    put = client.put(
        URL, json={"url": "http://127.0.0.1:9/h", "secret": secret}, headers=owner.headers
    )
    assert put.status_code == 200
    assert put.get_json()["secret"] == secret
    assert put.get_json()["secret_generated"] is False

    bad = client.put(
        URL,
        json={"url": "http://127.0.0.1:9/h", "secret": "not-a-secret-at-all"},
        headers=owner.headers,
    )
    assert bad.status_code == 422
    assert "secret" in bad.get_json()["errors"]


@pytest.mark.parametrize(
    "url", ["ftp://example.com/hook", "http://user:pw@127.0.0.1/h", "not a url", "http:///nohost"]
)
def test_invalid_urls_are_422_naming_url(client: Any, make_user: Any, url: str) -> None:
    owner = make_user("owner")
    response = client.put(URL, json={"url": url}, headers=owner.headers)
    assert response.status_code == 422
    assert list(response.get_json()["errors"]) == ["url"]


def test_private_targets_are_refused_unless_allowed(migrated: Any, make_user: Any) -> None:
    from services.notes import create_app

    strict = create_app(settings_with(migrated, ALLOW_PRIVATE_WEBHOOKS=False))
    owner = make_user("owner")
    try:
        for url in ("http://127.0.0.1:8080/h", "http://10.1.2.3/h", "http://169.254.169.254/"):
            response = strict.test_client().put(URL, json={"url": url}, headers=owner.headers)
            assert response.status_code == 422, url
            assert "url" in response.get_json()["errors"]
    finally:
        from shared import runtime

        runtime.configure(migrated)


def test_only_owners_configure(client: Any, make_user: Any) -> None:
    owner = make_user("owner")
    engineer = make_user("engineer", account_id=owner.account_id)
    response = client.put(URL, json={"url": "http://127.0.0.1:9/h"}, headers=engineer.headers)
    assert response.status_code == 403
    assert client.get(URL, headers=engineer.headers).status_code == 404
    assert client.put(URL, json={"url": "http://127.0.0.1:9/h"}).status_code == 401


def test_accounts_do_not_see_each_others_endpoint(client: Any, make_user: Any) -> None:
    first = make_user("owner")
    second = make_user("owner")
    client.put(URL, json={"url": "http://127.0.0.1:9/first"}, headers=first.headers)
    assert client.get(URL, headers=second.headers).status_code == 404


def test_viewers_and_engineers_see_neither_the_secret_bearing_url_nor_the_secret(
    client: Any, make_user: Any
) -> None:
    owner = make_user("owner")
    url = "http://127.0.0.1:9/hooks/T0K3N?sig=abc"
    put = client.put(URL, json={"url": url}, headers=owner.headers)
    assert put.status_code == 200
    assert client.get(URL, headers=owner.headers).get_json()["url"] == url
    for role in ("engineer", "viewer"):
        member = make_user(role, account_id=owner.account_id)
        got = client.get(URL, headers=member.headers)
        assert got.status_code == 200
        assert got.get_json()["url"] == "http://127.0.0.1:9/…"
        text = got.get_data(as_text=True)
        assert "T0K3N" not in text and "sig=abc" not in text
        assert put.get_json()["secret"] not in text
        assert client.put(URL, json={"url": url}, headers=member.headers).status_code == 403
