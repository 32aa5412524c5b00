"""With an API key the LLM proposes a draft template's parameters (through the stub Messages
API and the real SDK); every proposal is checked, the invalid ones fall back to the syntax-tree
lift, and the draft is a template the engine accepts that renders back to the fix's script."""

from __future__ import annotations

import json
import uuid
from types import SimpleNamespace
from typing import Any

from flask import Flask
from sqlalchemy import select

from services.pilot import draft_params
from services.pilot.fixes import persist_fix
from services.scripts.engine import PARAM_TYPES, ScriptTemplateEngine
from shared import powershell_check
from shared.db import db
from shared.models import LLMUsageRecord, ScriptTemplate
from shared.powershell_literals import lift_literals, normalised_tree, strip_generated_block
from shared.vocabulary import REDACTION_MARKER
from tests.support.stub_anthropic import StubAnthropic, wants_json_schema

ENGINE = ScriptTemplateEngine()
SECRET = "Winter2026!pw"
FIX_SCRIPT = (
    "Invoke-Command -ComputerName PRN-SRV01 -ScriptBlock {\n"
    "    Restart-Service -Name Spooler -Force\n"
    "    Get-Service -Name Spooler | Select-Object Status\n"
    "}\n"
    f"$password = '{SECRET}'\n"
    "Get-ChildItem -Path 'C:\\Spool\\Jobs' | Where-Object { $_.Length -gt 5000 }\n"
)


def _fix(client: Any, actor: Any, helpers: SimpleNamespace) -> tuple[str, str]:
    sid = helpers.create_session(client, actor, title="Print queue stuck", problem="Jobs stuck")[
        "id"
    ]
    with db.transaction() as session:
        fix = persist_fix(
            session,
            account_id=actor.account_id,
            session_id=uuid.UUID(sid),
            values={
                "title": "Restart the print spooler on the print server",
                "summary": "Restarts the spooler where the queue lives.",
                "steps": ["Restart the spooler"],
                "script": FIX_SCRIPT,
            },
        )
        return sid, str(fix.id)


def _draft(client: Any, actor: Any, sid: str, fix_id: str) -> dict[str, Any]:
    decided = client.post(
        f"/api/v1/ai-sessions/{sid}/suggested-fixes/{fix_id}/decision",
        json={"decision": "draft_template"},
        headers=actor.headers,
    )
    assert decided.status_code == 200, decided.get_json()
    draft: dict[str, Any] = decided.get_json()["draft_template"]
    return draft


def _stored(template_id: str) -> ScriptTemplate:
    with db.session() as session:
        template = session.get(ScriptTemplate, uuid.UUID(template_id))
        assert template is not None
        session.expunge(template)
        return template


def _assert_a_template_that_renders_back(template: ScriptTemplate) -> None:
    """The same engine validation and static check as any template, and the defaults render
    the fix's script (up to the generated parameter block)."""
    ENGINE.validate_template(template.script_body, template.parameters_schema)
    rendered = ENGINE.render(template.script_body, template.parameters_schema, {}).script
    body, assignments = strip_generated_block(rendered)
    assert normalised_tree(body, assignments) == normalised_tree(FIX_SCRIPT)
    assert {f.rule for f in powershell_check.check_script(rendered)} == {
        f.rule for f in powershell_check.check_script(FIX_SCRIPT)
    }


def _proposal(*parameters: dict[str, str], keep: tuple[str, ...] = ()) -> str:
    return json.dumps({"parameters": list(parameters), "keep_as_written": list(keep)})


def _param(literal: str, key: str, label: str, ptype: str) -> dict[str, str]:
    return {"literal": literal, "key": key, "label": label, "type": ptype, "help": f"{label}."}


def test_with_a_key_the_llms_names_and_labels_are_used(
    llm_app: Flask,
    stub: StubAnthropic,
    engineer: Any,
    helpers: SimpleNamespace,
    library: Any,
) -> None:
    client = llm_app.test_client()
    sid, fix_id = _fix(client, engineer, helpers)
    stub.queue_responses(
        _proposal(
            _param("PRN-SRV01", "print_server", "Print server", "hostname"),
            _param("C:\\Spool\\Jobs", "spool_folder", "Spool folder", "path"),
            _param("5000", "min_job_bytes", "Smallest job (bytes)", "integer"),
            keep=("Spooler",),
        )
    )
    draft = _draft(client, engineer, sid, fix_id)

    assert draft["generator"] == "anthropic"
    by_key = {p["key"]: p for p in draft["parameters"]}
    assert set(by_key) == {"print_server", "spool_folder", "min_job_bytes"}
    assert by_key["print_server"] == {
        "key": "print_server",
        "label": "Print server",
        "type": "hostname",
        "required": True,
        "default": "PRN-SRV01",
        "help": "Print server.",
    }
    assert by_key["min_job_bytes"]["default"] == 5000
    assert draft["parameter_sources"] == {
        "print_server": "llm",
        "spool_folder": "llm",
        "min_job_bytes": "llm",
    }
    assert draft["rejected_proposals"] == []
    template = _stored(draft["template_id"])
    # "Spooler" was kept as written, as the LLM said; the secret was never lifted.
    assert template.script_body.count("Spooler") == 2
    assert "{{print_server}}" in template.script_body and "PRN-SRV01" not in template.script_body
    _assert_a_template_that_renders_back(template)

    # One structured request, with the secret withheld from it, and one ledger row.
    (call,) = [c for c in stub.calls if wants_json_schema(c["json"])]
    sent = json.dumps(call["json"])
    assert SECRET not in sent and REDACTION_MARKER in sent
    assert call["json"]["output_config"]["format"]["schema"] == draft_params.ANSWER_SCHEMA
    with db.session() as session:
        purposes = session.scalars(
            select(LLMUsageRecord.purpose).where(LLMUsageRecord.ai_session_id == uuid.UUID(sid))
        ).all()
    assert purposes == ["template_draft"]


def test_invented_literals_bad_types_and_bad_keys_fall_back_to_the_lift(
    llm_app: Flask,
    stub: StubAnthropic,
    engineer: Any,
    helpers: SimpleNamespace,
    library: Any,
) -> None:
    client = llm_app.test_client()
    sid, fix_id = _fix(client, engineer, helpers)
    stub.queue_responses(
        _proposal(
            _param("PRN-SRV99", "print_server", "Print server", "hostname"),  # not in the script
            _param("C:\\Spool\\Jobs", "spool_folder", "Spool folder", "ip"),  # not an ip
            _param(SECRET, "admin_password", "Password", "string"),  # a secret
            _param("Spooler", "rfp_service", "Service", "string"),  # reserved prefix
            _param("5000", "min_job_bytes", "Smallest job", "string"),  # a number as text
        )
    )
    draft = _draft(client, engineer, sid, fix_id)

    deterministic = lift_literals(FIX_SCRIPT)
    assert draft["generator"] == "anthropic"
    assert {r["literal"]: r["reason"] for r in draft["rejected_proposals"]} == {
        "PRN-SRV99": "not a literal of the script",
        "C:\\Spool\\Jobs": "the literal is not a valid ip",
        SECRET: "the literal holds a secret",
        "Spooler": "the key is not a valid parameter name",
        "5000": "the literal is not a valid string",
    }
    assert draft["parameters"] == [p.as_schema() for p in deterministic.parameters]
    assert set(draft["parameter_sources"].values()) == {"lifter"}
    template = _stored(draft["template_id"])
    assert template.script_body == deterministic.body
    _assert_a_template_that_renders_back(template)


def test_the_stubs_own_answer_and_a_failed_call(
    llm_app: Flask,
    stub: StubAnthropic,
    engineer: Any,
    helpers: SimpleNamespace,
    library: Any,
) -> None:
    client = llm_app.test_client()
    # The stub answers this request shape as the API would: the suggested literals, its labels.
    sid, fix_id = _fix(client, engineer, helpers)
    draft = _draft(client, engineer, sid, fix_id)
    assert draft["generator"] == "anthropic"
    assert draft["rejected_proposals"] == []
    computer = next(p for p in draft["parameters"] if p["key"] == "computer")
    assert computer["help"] == "The computer this script acts on."
    _assert_a_template_that_renders_back(_stored(draft["template_id"]))

    # The API refuses: the draft is the deterministic lift, and says so.
    sid, fix_id = _fix(client, engineer, helpers)
    stub.fail_next(status=400, times=1)
    draft = _draft(client, engineer, sid, fix_id)
    assert draft["generator"] == "offline-fallback"
    assert draft["parameters"] == [p.as_schema() for p in lift_literals(FIX_SCRIPT).parameters]


def test_offline_the_draft_is_the_deterministic_lift(
    pilot_client: Any, engineer: Any, helpers: SimpleNamespace, library: Any
) -> None:
    sid, fix_id = _fix(pilot_client, engineer, helpers)
    draft = _draft(pilot_client, engineer, sid, fix_id)
    deterministic = lift_literals(FIX_SCRIPT)
    assert draft["generator"] == "offline"
    assert draft["parameters"] == [p.as_schema() for p in deterministic.parameters]
    assert draft["rejected_proposals"] == []
    assert _stored(draft["template_id"]).script_body == deterministic.body


def test_the_proposable_types_are_engine_types() -> None:
    assert set(draft_params.PROPOSABLE_TYPES) <= PARAM_TYPES
    assert draft_params.PROMPT_VERSION.startswith("flowpilot-template-parameters/")
