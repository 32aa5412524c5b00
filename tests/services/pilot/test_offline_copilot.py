"""The assistant without an LLM key knows the library: a session whose facts describe a stuck
print queue gets the built-in spooler template proposed as a fix (through the same fix card
and decisions), the offline answer answers the question asked, and with a key the matching
templates lead the LLM's context."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

from sqlalchemy import select

from services.pilot.chat.offline import question_intent, steps_from_description
from services.pilot.library_match import TemplateMatch, match_score
from shared.db import db
from shared.models import ScriptTemplate
from tests.support.stub_anthropic import StubAnthropic

STUCK_QUEUE = [
    ("symptom", "Print jobs are stuck in the queue on PRN-SRV01 and cannot be cancelled"),
    ("observation", "The print spooler service is running but the queue never drains"),
    ("ruled_out", "The printer itself is online and has paper"),
]


def _template_id(slug: str) -> str:
    with db.session() as session:
        return str(
            session.scalars(
                select(ScriptTemplate.id).where(
                    ScriptTemplate.slug == slug, ScriptTemplate.account_id.is_(None)
                )
            ).one()
        )


def _stuck_queue_session(client: Any, actor: Any, helpers: SimpleNamespace) -> str:
    sid = helpers.create_session(
        client, actor, title="Printing stopped on the 2nd floor", problem="Nothing prints"
    )["id"]
    for kind, text in STUCK_QUEUE:
        helpers.add_fact(client, actor, sid, text, kind)
    return str(sid)


def _say(client: Any, actor: Any, sid: str, content: str) -> Any:
    response = client.post(
        f"/api/v1/ai-sessions/{sid}/messages", json={"content": content}, headers=actor.headers
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def test_offline_a_stuck_print_queue_gets_the_spooler_template_as_a_fix(
    pilot_client: Any, engineer: Any, helpers: SimpleNamespace, library: Any
) -> None:
    spooler = _template_id("print-clear-spooler")
    sid = _stuck_queue_session(pilot_client, engineer, helpers)

    turn = _say(pilot_client, engineer, sid, "How do I fix this?")
    assert turn["generator"] == "offline"
    content = turn["assistant_message"]["content"]
    assert content.startswith("The AI assistant is offline")
    assert "Clear the print spooler" in content
    assert "[SUGGEST_FIX]" not in content
    fix = turn["suggested_fix"]
    assert fix is not None
    assert fix["template_id"] == spooler
    assert fix["title"] == "Clear the print spooler"
    assert "Stops the spooler" in fix["steps"]
    assert "Deletes stuck spool files" in fix["steps"]
    assert 50 <= fix["confidence"] <= 90

    # The same fix card and decisions as an online proposal.
    decided = pilot_client.post(
        f"/api/v1/ai-sessions/{sid}/suggested-fixes/{fix['id']}/decision",
        json={"decision": "one_off"},
        headers=engineer.headers,
    )
    assert decided.status_code == 200
    assert decided.get_json()["decision"] == "one_off"
    # Asked again, it does not supersede the fix it already proposed.
    again = _say(pilot_client, engineer, sid, "Which templates fit?")
    assert again["suggested_fix"] is None
    assert "Clear the print spooler (match " in again["assistant_message"]["content"]
    active = pilot_client.get(
        f"/api/v1/ai-sessions/{sid}/suggested-fixes/active", headers=engineer.headers
    )
    assert active.get_json()["id"] == fix["id"]


def test_offline_answers_the_question_asked(
    pilot_client: Any, engineer: Any, helpers: SimpleNamespace, library: Any
) -> None:
    sid = _stuck_queue_session(pilot_client, engineer, helpers)
    ruled_out = _say(pilot_client, engineer, sid, "What have we ruled out so far?")
    text = ruled_out["assistant_message"]["content"]
    assert "offline" in text
    assert "Ruled out so far:\n- The printer itself is online and has paper" in text
    assert "Symptoms:" not in text

    cause = _say(pilot_client, engineer, sid, "What is the root cause?")
    cause_text = cause["assistant_message"]["content"]
    assert "Root cause: nothing is recorded yet." in cause_text
    assert cause_text != text

    helpers.add_fact(
        pilot_client, engineer, sid, "A corrupt spool file blocked the queue", "root_cause"
    )
    known = _say(pilot_client, engineer, sid, "why is it happening?")
    assert (
        "Root cause so far:\n- A corrupt spool file blocked the queue"
        in (known["assistant_message"]["content"])
    )


def test_offline_proposes_nothing_when_no_template_fits(
    pilot_client: Any, engineer: Any, helpers: SimpleNamespace, library: Any
) -> None:
    sid = helpers.create_session(pilot_client, engineer, title="Strange noise")["id"]
    helpers.add_fact(pilot_client, engineer, sid, "The monitor hums when brightness is low")
    turn = _say(pilot_client, engineer, sid, "How do I fix this?")
    assert turn["suggested_fix"] is None
    assert "No library template matches" in turn["assistant_message"]["content"]


def test_with_a_key_the_matching_templates_lead_the_context(
    make_llm_app: Any, stub: StubAnthropic, engineer: Any, helpers: SimpleNamespace, library: Any
) -> None:
    client = make_llm_app().test_client()
    spooler = _template_id("print-clear-spooler")
    sid = _stuck_queue_session(client, engineer, helpers)
    stub.queue_responses(
        "Clear the spooler.\n"
        + helpers.fix_block("Clear the print spooler", template_id=spooler, confidence=80)
    )
    turn = _say(client, engineer, sid, "What now?")
    assert turn["generator"] == "anthropic"
    assert turn["suggested_fix"]["template_id"] == spooler
    context = stub.calls[-1]["json"]["system"][1]["text"]
    templates = context.split("## Fix templates", 1)[1]
    first = templates.split("\n- ", 1)[1]
    assert first.startswith(f"{spooler}: Clear the print spooler")
    assert "(matches this session's facts:" in first.split("\n", 1)[0]
    assert "Clear the print spooler" not in context.split("## Fix templates", 1)[0]


def test_steps_and_scores_are_plain_functions() -> None:
    match = TemplateMatch(
        template_id=uuid.uuid4(),
        name="Clear the print spooler",
        description="Stops the spooler, deletes stuck spool files and starts it again.",
        use_case=None,
        rank=0.5,
        matched=5,
        score=0.75,
    )
    assert steps_from_description(match) == [
        "Generate the 'Clear the print spooler' template from the library for the affected machine",
        "Stops the spooler",
        "Deletes stuck spool files",
        "Starts it again",
        "Verify with the user and record the result as a confirmed fact",
    ]
    assert match.confidence == 75 and match.proposable
    assert question_intent("What did we rule out?") == "ruled_out"
    assert question_intent("And now?") is None
    full, matched = match_score(
        {"print", "spooler", "queue", "stuck", "job"},
        {"clear", "print", "spooler"},
        {"print", "spooler"},
        {"print", "spooler", "queue", "stuck", "job", "clear"},
    )
    weak, _ = match_score({"monitor"}, {"clear", "print", "spooler"}, {"print"}, {"print"})
    assert matched == 5 and full > 0.7 and weak == 0.0
