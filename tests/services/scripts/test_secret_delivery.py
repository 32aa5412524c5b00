"""Secrets outside the script text: env and prompt delivery, the download, the defaults."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import tree_sitter_powershell as tsp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from tree_sitter import Language, Node, Parser

from services.scripts.engine import ScriptTemplateEngine, quote_ps_string
from shared.db import db
from shared.models import ScriptGeneration
from tests.support.examples import examples
from tests.support.templates import SECRET_BODY, SECRET_SCHEMA

BASE = "/api/v1/scripts"
PARSER = Parser(Language(tsp.language()))
SECRET = "Pa$$w0rd-\u00e9t\u00e9-'2025'"


def walk(node: Node) -> Iterator[Node]:
    yield node
    for child in node.children:
        yield from walk(child)


def assert_parses(script: str) -> None:
    root = PARSER.parse(script.encode("utf-8")).root_node
    bad = [n for n in walk(root) if n.type == "ERROR" or n.is_missing]
    assert not root.has_error and not bad, bad


@pytest.fixture
def secret_template(create_template: Any, make_user: Any) -> tuple[Any, dict[str, Any]]:
    engineer = make_user("engineer")
    return engineer, create_template(
        engineer, script_body=SECRET_BODY, parameters_schema=SECRET_SCHEMA
    )


def generate(client: Any, actor: Any, template: dict[str, Any], **body: Any) -> Any:
    return client.post(
        f"{BASE}/generate", json={"template_id": template["id"], **body}, headers=actor.headers
    )


def test_env_delivery_keeps_the_secret_out_of_every_copy(client: Any, secret_template: Any) -> None:
    engineer, template = secret_template
    response = generate(
        client,
        engineer,
        template,
        parameters={"user": "jdoe", "new_password": SECRET},
        secret_delivery="env",
    )
    assert response.status_code == 200, response.json
    body = response.json
    assert body["secret_delivery"] == "env"
    assert body["secret_inputs"] == [
        {
            "parameter": "new_password",
            "label": "New password",
            "delivery": "env",
            "environment_variable": "RF_NEW_PASSWORD",
        }
    ]
    script = body["script"]
    assert SECRET not in script and "$env:RF_NEW_PASSWORD" in script
    assert_parses(script)
    assert any("RF_NEW_PASSWORD" in w for w in body["warnings"])
    assert any("were not used" in w for w in body["warnings"])

    download = client.get(body["download_url"], headers=engineer.headers)
    assert download.status_code == 200
    assert download.data.startswith(b"\xef\xbb\xbf"), "UTF-8 byte-order mark"
    assert 'filename="' in download.headers["Content-Disposition"]
    text = download.data[3:].decode("utf-8")
    assert SECRET not in text and text == script
    assert_parses(text)

    with db.session() as session:
        stored = session.scalars(
            select(ScriptGeneration).where(ScriptGeneration.id == body["id"])
        ).one()
        assert stored.secret_delivery == "env"
        assert SECRET not in stored.generated_script
        assert stored.parameters_used["new_password"] == "[REDACTED]"
    history = client.get(f"{BASE}/generations", headers=engineer.headers).json
    assert history[0]["secret_delivery"] == "env" and SECRET not in str(history)


def test_env_and_prompt_need_no_value(client: Any, secret_template: Any) -> None:
    engineer, template = secret_template
    inline = generate(client, engineer, template, parameters={"user": "jdoe"})
    assert inline.status_code == 422 and "new_password" in inline.json["errors"]["parameters"]
    prompt = generate(
        client, engineer, template, parameters={"user": "jdoe"}, secret_delivery="prompt"
    )
    assert prompt.status_code == 200
    assert "Read-Host -AsSecureString -Prompt 'New password'" in prompt.json["script"]
    assert_parses(prompt.json["script"])
    assert prompt.json["secret_inputs"][0]["environment_variable"] is None


def test_download_is_only_for_your_own_env_or_prompt_generation(
    client: Any, secret_template: Any, make_user: Any
) -> None:
    engineer, template = secret_template
    inline = generate(
        client, engineer, template, parameters={"user": "jdoe", "new_password": SECRET}
    ).json
    assert inline["download_url"] is None
    refused = client.get(f"{BASE}/generations/{inline['id']}/download", headers=engineer.headers)
    assert refused.status_code == 409 and "secret_delivery" in refused.json["errors"]
    env = generate(
        client, engineer, template, parameters={"user": "jdoe"}, secret_delivery="env"
    ).json
    colleague = make_user("engineer", account_id=engineer.account_id)
    assert client.get(env["download_url"], headers=colleague.headers).status_code == 404
    stranger = make_user("owner")
    assert client.get(env["download_url"], headers=stranger.headers).status_code == 404


def test_unknown_delivery_is_422(client: Any, secret_template: Any) -> None:
    engineer, template = secret_template
    bad = generate(client, engineer, template, parameters={}, secret_delivery="email")
    assert bad.status_code == 422 and "secret_delivery" in bad.json["errors"]["json"]


def test_template_and_account_defaults(client: Any, make_user: Any, create_template: Any) -> None:
    owner = make_user("owner")
    template = create_template(owner, script_body=SECRET_BODY, parameters_schema=SECRET_SCHEMA)
    params = {"user": "jdoe", "new_password": SECRET}
    assert generate(client, owner, template, parameters=params).json["secret_delivery"] == "inline"

    engineer = make_user("engineer", account_id=owner.account_id)
    assert (
        client.put(
            f"{BASE}/settings", json={"default_secret_delivery": "env"}, headers=engineer.headers
        ).status_code
        == 403
    )
    settings_ = client.put(
        f"{BASE}/settings", json={"default_secret_delivery": "env"}, headers=owner.headers
    )
    assert settings_.json == {"default_secret_delivery": "env"}
    assert generate(client, owner, template, parameters=params).json["secret_delivery"] == "env"

    client.put(
        f"{BASE}/templates/{template['id']}",
        json={"secret_delivery": "prompt"},
        headers=owner.headers,
    )
    assert generate(client, owner, template, parameters=params).json["secret_delivery"] == "prompt"
    explicit = generate(client, owner, template, parameters=params, secret_delivery="inline").json
    assert explicit["secret_delivery"] == "inline"
    assert quote_ps_string(SECRET) in explicit["script"]
    other = make_user("owner")
    assert client.get(f"{BASE}/settings", headers=other.headers).json == {
        "default_secret_delivery": "inline"
    }


def test_non_ascii_values_warn_about_the_byte_order_mark(
    client: Any, make_user: Any, create_template: Any
) -> None:
    engineer = make_user("engineer")
    template = create_template(engineer)
    ascii_only = generate(
        client, engineer, template, parameters={"target": "pc1", "service": "Spooler"}
    ).json
    assert not any("byte-order mark" in w for w in ascii_only["warnings"])
    accented = generate(
        client, engineer, template, parameters={"target": "pc1", "service": "Dienst-M\u00fcnchen"}
    ).json
    assert any("byte-order mark" in w for w in accented["warnings"])


ENGINE = ScriptTemplateEngine()


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(secret=st.text(st.characters(codec="utf-8"), min_size=1, max_size=40))
def test_env_script_never_holds_the_secret(secret: str) -> None:
    """Whatever the value, the env-mode script is the same text: it cannot carry it."""

    def env_script(value: str) -> str:
        rendered = ENGINE.render(
            SECRET_BODY,
            SECRET_SCHEMA,
            {"user": "jdoe", "new_password": value},
            secret_delivery="env",
        )
        assert rendered.script == rendered.stored_script
        return rendered.script

    script = env_script("rf-sentinel-" + secret)
    assert script == env_script("x" * 12)
    assert "rf-sentinel-" not in script
    assert_parses(script)
