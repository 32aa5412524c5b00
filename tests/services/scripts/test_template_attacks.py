"""Hostile template authors: a validation pattern built to backtrack for ever (ReDoS), and a
`using` line that leaves a block comment or here-string open over the generated assignments."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import insert

from services.scripts.engine import (
    ScriptRenderError,
    ScriptTemplateEngine,
    TemplateDefinitionError,
)
from services.scripts.engine.scanner import insertion_point_problems
from services.scripts.engine.values import MAX_PATTERN_SUBJECT_LENGTH
from shared.db import db
from shared.models import ScriptTemplate

ENGINE = ScriptTemplateEngine()
BASE = "/api/v1/scripts"
# Catastrophic for a backtracking engine: 2^n ways to split n a's before failing on the '!'.
EVIL_PATTERN = "(a+)+b"
EVIL_VALUE = "a" * 40 + "!"


def _schema(pattern: str) -> dict[str, Any]:
    return {"parameters": [{"key": "name", "type": "string", "validation": {"pattern": pattern}}]}


@pytest.mark.timeout(30)  # Python's `re` takes hours on this input; RE2 microseconds.
def test_redos_pattern_cannot_freeze_a_render() -> None:
    with pytest.raises(ScriptRenderError) as info:
        ENGINE.render("Write-Output {{name}}\n", _schema(EVIL_PATTERN), {"name": EVIL_VALUE})
    assert info.value.errors == {"name": [f"must match the pattern {EVIL_PATTERN}"]}
    ok = ENGINE.render("Write-Output {{name}}\n", _schema(EVIL_PATTERN), {"name": "aaab"})
    assert "$rfp_name = 'aaab'" in ok.script


@pytest.mark.timeout(30)
def test_redos_pattern_through_the_api_answers_422(
    client: Any, make_user: Any, create_template: Any
) -> None:
    engineer = make_user("engineer")
    template = create_template(
        engineer, script_body="Write-Output {{name}}\n", parameters_schema=_schema(EVIL_PATTERN)
    )
    response = client.post(
        f"{BASE}/generate",
        json={"template_id": template["id"], "parameters": {"name": EVIL_VALUE}},
        headers=engineer.headers,
    )
    assert response.status_code == 422
    assert response.json["errors"]["parameters"] == {
        "name": [f"must match the pattern {EVIL_PATTERN}"]
    }


@pytest.mark.parametrize(
    "pattern", [r"(a)\1", r"(?=admin)\w+", r"(?<!x)y", r"((a{100}){100}){100}", r"\w+\Z"]
)
def test_patterns_the_linear_engine_cannot_run_are_refused(
    client: Any, make_user: Any, category_id: Any, pattern: str
) -> None:
    engineer = make_user("engineer")
    response = client.post(
        f"{BASE}/templates",
        json={
            "category_id": str(category_id),
            "name": f"T {uuid.uuid4().hex[:6]}",
            "script_body": "Write-Output {{name}}\n",
            "parameters_schema": _schema(pattern),
        },
        headers=engineer.headers,
    )
    assert response.status_code == 422, response.json
    [message] = response.json["errors"]["parameters_schema.parameters[0].validation.pattern"]
    assert "linear-time" in message or "invalid regular expression" in message


def test_overlong_value_is_refused_before_matching() -> None:
    schema = {"parameters": [{"key": "name", "type": "text", "validation": {"pattern": "[a-z]*"}}]}
    with pytest.raises(ScriptRenderError) as info:
        ENGINE.render(
            "Write-Output {{name}}\n", schema, {"name": "a" * (MAX_PATTERN_SUBJECT_LENGTH + 1)}
        )
    assert "to be checked against the required pattern" in info.value.errors["name"][0]


ATTACK_BODY = "using namespace System.IO <#\nWrite-Output {{name}}\n#>\n"


def test_powershell_injection_through_a_using_line_opening_a_block_comment(
    client: Any, make_user: Any, category_id: Any
) -> None:
    engineer = make_user("engineer")
    for body in (ATTACK_BODY, 'using namespace System.IO @"\nWrite-Output {{name}}\n"@\n'):
        response = client.post(
            f"{BASE}/templates",
            json={
                "category_id": str(category_id),
                "name": f"T {uuid.uuid4().hex[:6]}",
                "script_body": body,
                "parameters_schema": {"parameters": [{"key": "name", "type": "string"}]},
            },
            headers=engineer.headers,
        )
        assert response.status_code == 422, response.json
        assert "script_body" in response.json["errors"]


def test_a_template_saved_before_the_grammar_renders_nothing(
    client: Any, make_user: Any, category_id: Any
) -> None:
    owner = make_user("owner")
    template_id = uuid.uuid4()
    with db.transaction() as session:
        session.execute(
            insert(ScriptTemplate).values(
                id=template_id,
                category_id=category_id,
                account_id=owner.account_id,
                team_id=owner.team_id,
                created_by=owner.id,
                scope="team",
                name="Legacy",
                slug=f"legacy-{template_id.hex[:8]}",
                script_body=ATTACK_BODY,
                parameters_schema={"parameters": [{"key": "name", "type": "string"}]},
            )
        )
    response = client.post(
        f"{BASE}/generate",
        json={"template_id": str(template_id), "parameters": {"name": "#> Stop-Computer <#"}},
        headers=owner.headers,
    )
    assert response.status_code == 422, response.json
    assert "template_id" in response.json["errors"]


@pytest.mark.parametrize(
    ("head", "open_"),
    [
        ("using namespace System.IO\n", False),
        ("using namespace System.IO <# c #>\n", False),
        ("#Requires -Version 5.1\n", False),
        ("using namespace System.IO <#\n", True),
        ('x @"\n', True),
        ('Write-Output "$(\n', True),
        ("'open\n", True),
    ],
)
def test_scanner_asserts_the_insertion_point_is_plain_code(head: str, open_: bool) -> None:
    assert bool(insertion_point_problems(head + "Write-Output 1\n", len(head))) is open_


def test_the_validator_rejects_what_the_scanner_flags() -> None:
    with pytest.raises(TemplateDefinitionError) as info:
        ENGINE.validate_template(ATTACK_BODY, {"parameters": [{"key": "name"}]}, None, None)
    assert "script_body" in info.value.errors
