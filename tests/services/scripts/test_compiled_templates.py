"""The compiled-template cache: a render from the cache is the engine's render, and an entry is
never served for inputs it was not compiled from (a template's defaults and validation rules
change without a new version)."""

from __future__ import annotations

import copy
import uuid
from typing import Any

import pytest

from services.scripts.engine import (
    CompiledTemplateCache,
    ScriptRenderError,
    ScriptTemplateEngine,
    TemplateDefinitionError,
)
from services.scripts.generations import compiled_templates
from services.scripts.library import read_library
from tests.support.templates import SIMPLE_BODY, SIMPLE_SCHEMA

BASE = "/api/v1/scripts"
TEMPLATES = read_library().templates
ENGINE = ScriptTemplateEngine()


def _sample_values(schema: dict[str, Any]) -> dict[str, Any]:
    samples = {
        "string": "O'Brien",
        "text": "line one\nline two",
        "email": "a.b@example.com",
        "hostname": "srv01.corp.example",
        "ip": "10.0.0.1",
        "path": "C:\\Temp\\x",
        "password": "S3cret'value-long",
        "integer": 3,
        "number": 2.5,
        "boolean": True,
    }
    values: dict[str, Any] = {}
    for param in schema.get("parameters", []):
        if param["type"] in ("choice", "multichoice"):
            first = param["options"][0]
            option = first["value"] if isinstance(first, dict) else first
            values[param["key"]] = option if param["type"] == "choice" else [option]
        elif param["type"] in samples:
            values[param["key"]] = samples[param["type"]]
    return values


@pytest.mark.parametrize("template", TEMPLATES, ids=[t["slug"] for t in TEMPLATES])
def test_compiled_render_equals_the_engine_render(template: dict[str, Any]) -> None:
    args = (
        template["script_body"],
        template["parameters_schema"],
        template.get("default_values"),
        template.get("validation_rules"),
    )
    compiled = ENGINE.compile(*args)
    for values in ({}, _sample_values(template["parameters_schema"])):
        try:
            expected = ENGINE.render(args[0], args[1], values, args[2], args[3])
        except ScriptRenderError as exc:
            with pytest.raises(ScriptRenderError) as raised:
                compiled.render(values)
            assert raised.value.errors == exc.errors
            continue
        assert compiled.render(values) == expected


def test_an_entry_is_reused_only_for_the_inputs_it_was_compiled_from() -> None:
    cache = CompiledTemplateCache(ENGINE)
    key = (uuid.uuid4(), 1)
    schema = copy.deepcopy(SIMPLE_SCHEMA)
    first = cache.get(key, SIMPLE_BODY, schema)
    assert cache.get(key, SIMPLE_BODY, copy.deepcopy(SIMPLE_SCHEMA)) is first

    # Default values change in place (no new version): the new ones are used at once.
    with_default = cache.get(key, SIMPLE_BODY, schema, {"service": "Spooler"})
    assert with_default is not first
    assert "'Spooler'" in with_default.render({"target": "srv01"}).script
    # Mutating the caller's dict after the fact cannot make the entry match other inputs.
    schema["parameters"][0]["validation"] = {"min_length": 20}
    strict = cache.get(key, SIMPLE_BODY, schema, {"service": "Spooler"})
    with pytest.raises(ScriptRenderError) as raised:
        strict.render({"target": "srv01"})
    assert "target" in raised.value.errors


def test_the_cache_is_bounded_and_caches_no_invalid_template() -> None:
    cache = CompiledTemplateCache(ENGINE, maxsize=2)
    keys = [(uuid.uuid4(), 1) for _ in range(3)]
    compiled = [cache.get(key, SIMPLE_BODY, SIMPLE_SCHEMA) for key in keys]
    assert cache.get(keys[2], SIMPLE_BODY, SIMPLE_SCHEMA) is compiled[2]
    assert cache.get(keys[0], SIMPLE_BODY, SIMPLE_SCHEMA) is not compiled[0]  # evicted
    bad = (uuid.uuid4(), 1)
    for _ in range(2):
        with pytest.raises(TemplateDefinitionError):
            cache.get(bad, "Write-Output {{missing}}\n", SIMPLE_SCHEMA)


def test_generate_uses_the_edited_defaults_of_the_same_version(
    client: Any, make_user: Any, create_template: Any
) -> None:
    engineer = make_user("engineer")
    template = create_template(
        engineer,
        parameters_schema={
            "parameters": [
                {"key": "target", "type": "hostname", "required": True},
                {"key": "service", "type": "string", "required": True},
            ]
        },
        default_values={"service": "Spooler"},
    )

    def generate() -> dict[str, Any]:
        response = client.post(
            f"{BASE}/generate",
            json={"template_id": template["id"], "parameters": {"target": "srv01"}},
            headers=engineer.headers,
        )
        assert response.status_code == 200, response.json
        return response.json  # type: ignore[no-any-return]

    first = generate()
    assert "'Spooler'" in first["script"]
    key = (uuid.UUID(template["id"]), first["metadata"]["template_version"])
    cached = compiled_templates._entries[key][1]
    assert generate()["script"] == first["script"]
    assert compiled_templates._entries[key][1] is cached  # served from the cache

    updated = client.put(
        f"{BASE}/templates/{template['id']}",
        json={"default_values": {"service": "W32Time"}},
        headers=engineer.headers,
    )
    assert updated.status_code == 200, updated.json
    assert updated.json["version"] == first["metadata"]["template_version"]
    second = generate()
    assert "'W32Time'" in second["script"] and "'Spooler'" not in second["script"]
