"""services.notes.generator: fingerprint, validation, offline note, prompt and generate()."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from typing import Any

import pytest

from services.notes import generator as gen
from services.notes.generator import (
    NO_CONFIRMED_FACTS,
    NO_RESOLUTION,
    PROMPT_VERSION,
    SECTIONS,
    BundleFact,
    BundleFix,
    BundleScriptRun,
    NoteBundle,
    NoteValidationError,
    ResolutionNoteGenerator,
    build_prompt,
    bundle_fingerprint,
    offline_note,
    scrub_text,
    validate_note,
)
from shared.llm import LLMClient, LLMResult, LLMUnavailable, LLMUsage
from shared.llm_models import spec_for

MODEL = os.environ.get("ANTHROPIC_MODEL") or "claude-sonnet-5-5"
CANARY = "Canary-Secret-7f3a9"
PASSWORD = "hunter2-Sup3r"


def make_bundle(**overrides: Any) -> NoteBundle:
    base: dict[str, Any] = {
        "kind": "resolution_note",
        "session_id": "11111111-1111-1111-1111-111111111111",
        "account_id": "22222222-2222-2222-2222-222222222222",
        "state_version": 7,
        "problem": "Outlook cannot connect to Exchange for one user.",
        "facts": (
            BundleFact(
                "symptom",
                "Outlook shows 'Disconnected' in the status bar.",
                "2026-01-01T10:00:00+00:00",
            ),
            BundleFact(
                "observation",
                "Other users in the office are not affected.",
                "2026-01-01T10:01:00+00:00",
            ),
            BundleFact(
                "confirmed",
                "The user's AD password expired yesterday.",
                "2026-01-01T10:02:00+00:00",
            ),
            BundleFact(
                "ruled_out",
                "Network connectivity: ping to the server works.",
                "2026-01-01T10:03:00+00:00",
            ),
            BundleFact("environment", "Windows 11 23H2, Outlook 365.", "2026-01-01T10:04:00+00:00"),
        ),
        "active_fix": BundleFix(
            title="Reset the user's AD password",
            summary="The cached credentials were rejected because the AD password had expired.",
            steps=("Reset the password in AD", "Have the user sign in to Outlook again"),
            script="Set-ADAccountPassword -Identity jdoe -Reset",
            confidence=85,
            decision="one_off",
        ),
        "script_runs": (
            BundleScriptRun(
                "Reset AD password",
                {"Identity": "jdoe", "NewPassword": "[REDACTED]"},
                "2026-01-01T10:05:00+00:00",
            ),
        ),
        "forbidden_values": frozenset({PASSWORD, CANARY}),
    }
    base.update(overrides)
    return NoteBundle(**base)


def note(**bodies: str) -> str:
    parts = {
        "Problem": "Outlook could not connect.",
        "What we confirmed": "- The AD password had expired.",
        "Root cause": "The expired password was rejected.",
        "Resolution": "The password was reset with the Reset AD password script.",
    }
    parts.update({k.replace("_", " "): v for k, v in bodies.items()})
    return "\n\n".join(f"## {name}\n{parts[name]}" for name in SECTIONS) + "\n"


GOOD = note()


def problems_of(markdown: str, bundle: NoteBundle | None = None, **kwargs: Any) -> list[str]:
    with pytest.raises(NoteValidationError) as info:
        validate_note(markdown, bundle or make_bundle(), **kwargs)
    assert info.value.problems, "a validation error must list its problems"
    return info.value.problems


# -- bundle and fingerprint ----------------------------------------------------------------------


def test_facts_by_kind_groups_in_order_with_every_kind_present() -> None:
    bundle = make_bundle(
        facts=(
            BundleFact("confirmed", "a", "t1"),
            BundleFact("symptom", "b", "t2"),
            BundleFact("confirmed", "c", "t3"),
        )
    )
    grouped = bundle.facts_by_kind()
    assert list(grouped)[:5] == list(gen.FACT_KINDS)
    assert [f.text for f in grouped["confirmed"]] == ["a", "c"]
    assert [f.text for f in grouped["symptom"]] == ["b"]
    assert grouped["environment"] == []


def test_fingerprint_ignores_version_ids_and_timestamps() -> None:
    bundle = make_bundle()
    same = dataclasses.replace(
        bundle,
        state_version=99,
        facts=tuple(
            dataclasses.replace(f, created_at="2030-05-05T00:00:00Z") for f in bundle.facts
        ),
        script_runs=tuple(
            dataclasses.replace(r, created_at="2030-05-05T00:00:00Z") for r in bundle.script_runs
        ),
        forbidden_values=frozenset({"another-value"}),
    )
    fp = bundle_fingerprint(bundle, model=MODEL)
    assert len(fp) == 64 and int(fp, 16) >= 0
    assert bundle_fingerprint(same, model=MODEL) == fp
    # Parameter order inside a run does not matter either (canonical JSON).
    reordered = dataclasses.replace(
        bundle,
        script_runs=(
            BundleScriptRun(
                "Reset AD password", {"NewPassword": "[REDACTED]", "Identity": "jdoe"}, "x"
            ),
        ),
    )
    assert bundle_fingerprint(reordered, model=MODEL) == fp


@pytest.mark.parametrize(
    "change",
    [
        "fact_text",
        "fact_kind",
        "fact_added",
        "fact_order",
        "problem",
        "fix_summary",
        "fix_decision",
        "fix_removed",
        "run_added",
        "run_parameter",
        "kind",
    ],
)
def test_fingerprint_changes_with_note_inputs(change: str) -> None:
    bundle = make_bundle()
    facts = list(bundle.facts)
    fix = bundle.active_fix
    assert fix is not None
    changed: NoteBundle
    if change == "fact_text":
        facts[2] = dataclasses.replace(facts[2], text="The password expired last week.")
        changed = dataclasses.replace(bundle, facts=tuple(facts))
    elif change == "fact_kind":
        facts[1] = dataclasses.replace(facts[1], kind="confirmed")
        changed = dataclasses.replace(bundle, facts=tuple(facts))
    elif change == "fact_added":
        changed = dataclasses.replace(bundle, facts=(*facts, BundleFact("confirmed", "New.", "t")))
    elif change == "fact_order":
        changed = dataclasses.replace(bundle, facts=tuple(reversed(facts)))
    elif change == "problem":
        changed = dataclasses.replace(bundle, problem="Something else")
    elif change == "fix_summary":
        changed = dataclasses.replace(bundle, active_fix=dataclasses.replace(fix, summary="Other"))
    elif change == "fix_decision":
        changed = dataclasses.replace(
            bundle, active_fix=dataclasses.replace(fix, decision="dismissed")
        )
    elif change == "fix_removed":
        changed = dataclasses.replace(bundle, active_fix=None)
    elif change == "run_added":
        changed = dataclasses.replace(
            bundle, script_runs=(*bundle.script_runs, BundleScriptRun("Flush DNS", {}, "t"))
        )
    elif change == "run_parameter":
        changed = dataclasses.replace(
            bundle,
            script_runs=(
                BundleScriptRun(
                    "Reset AD password", {"Identity": "asmith", "NewPassword": "[REDACTED]"}, "t"
                ),
            ),
        )
    else:
        changed = dataclasses.replace(bundle, kind="other_note")
    assert bundle_fingerprint(changed, model=MODEL) != bundle_fingerprint(bundle, model=MODEL)


def test_fingerprint_changes_with_model_and_prompt_version(monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = make_bundle()
    fp = bundle_fingerprint(bundle, model=MODEL)
    assert bundle_fingerprint(bundle, model="claude-opus-4-1") != fp
    monkeypatch.setattr(gen, "PROMPT_VERSION", PROMPT_VERSION + "-next")
    assert bundle_fingerprint(bundle, model=MODEL) != fp


# -- validate_note ------------------------------------------------------------------------------


def test_validate_accepts_and_normalises_a_good_note() -> None:
    assert validate_note(GOOD, make_bundle()) == GOOD
    messy = (
        "\r\n" + GOOD.replace("\n", "\r\n").replace("## Root cause", "##   root CAUSE:") + "\n\n\n"
    )
    assert validate_note(messy, make_bundle()) == GOOD


def test_validate_strips_a_leading_title_and_an_outer_code_fence() -> None:
    assert validate_note("# Resolution note for INC-1\n\n" + GOOD, make_bundle()) == GOOD
    assert validate_note("```markdown\n" + GOOD + "```", make_bundle()) == GOOD


def test_validate_allows_redacted_literal_and_subheadings_and_code() -> None:
    body = (
        "Ran the script with NewPassword: [REDACTED] and **NewPassword** = `[REDACTED]`.\n\n"
        "### Steps\n1. Reset\n\n```powershell\n## not a heading inside code\n"
        "Set-ADAccountPassword -Identity jdoe -NewPassword $secure\n```"
    )
    result = validate_note(note(Resolution=body), make_bundle())
    assert "## not a heading inside code" in result
    assert "[REDACTED]" in result


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        (
            GOOD.replace("## Root cause\nThe expired password was rejected.\n\n", ""),
            "missing section '## Root cause'",
        ),
        (
            note()
            .replace("## Problem", "## TMP")
            .replace("## Resolution", "## Problem")
            .replace("## TMP", "## Resolution"),
            "out of order",
        ),
        (note(Root_cause="   \n"), "section '## Root cause' is empty"),
        (GOOD + "\n## Next steps\nCall us.\n", "unexpected heading '## Next steps'"),
        ("Here is your note:\n\n" + GOOD, "text before the first heading"),
        (GOOD + "\n## Problem\nAgain.\n", "appears 2 times"),
        (note(Resolution="Done.\n\n# Appendix\nMore."), "unexpected '# Appendix' heading"),
    ],
    ids=["missing", "order", "empty", "extra-h2", "preamble", "duplicate", "h1-inside"],
)
def test_validate_rejects_format_problems(markdown: str, expected: str) -> None:
    problems = problems_of(markdown)
    assert any(expected in p for p in problems), problems


def test_validate_rejects_a_note_that_is_too_long() -> None:
    long_note = note(Resolution="x" * 9000)
    problems = problems_of(long_note)
    assert any("the limit is 8000" in p for p in problems), problems
    assert validate_note(note(Resolution="x" * 100), make_bundle(), max_chars=400)
    assert any("the limit is 200" in p for p in problems_of(GOOD, max_chars=200))


@pytest.mark.parametrize("leak", [CANARY, CANARY.upper(), PASSWORD])
def test_validate_rejects_forbidden_values_without_quoting_them(leak: str) -> None:
    problems = problems_of(note(Root_cause=f"The password was {leak} all along."))
    assert any("sensitive value" in p for p in problems), problems
    assert all(leak.lower() not in p.lower() for p in problems)


def test_validate_ignores_forbidden_values_too_short_to_search() -> None:
    bundle = make_bundle(forbidden_values=frozenset({"the", ""}))
    assert validate_note(GOOD, bundle) == GOOD


@pytest.mark.parametrize(
    "text",
    [
        "NewPassword: hunter2",
        "**NewPassword**: hunter2",
        "`NewPassword` = 'hunter2'",
        "newpassword=hunter2",
        "Set-ADAccountPassword -NewPassword 'hunter2'",
        '$NewPassword = "hunter2"',
    ],
)
def test_validate_rejects_a_value_after_a_redacted_parameter(text: str) -> None:
    problems = problems_of(note(Resolution=f"We ran it. {text}"))
    assert any("sensitive parameter 'NewPassword'" in p for p in problems), problems


def test_sensitive_check_only_applies_to_redacted_parameters() -> None:
    # Identity was not redacted: its value may be mentioned; prose about the parameter is fine.
    text = "Identity: jdoe. The NewPassword parameter was set to a temporary value."
    assert validate_note(note(Resolution=text), make_bundle())


def test_validation_error_collects_every_problem() -> None:
    bad = f"Intro\n\n## Problem\n\n## Resolution\nNewPassword: x {CANARY}\n"
    problems = problems_of(bad)
    joined = " | ".join(problems)
    for expected in (
        "text before",
        "missing section",
        "is empty",
        "sensitive value",
        "sensitive parameter",
    ):
        assert expected in joined, joined


def test_scrub_text_removes_forbidden_and_redacted_values() -> None:
    scrubbed = scrub_text(
        f"pw {PASSWORD.upper()} and NewPassword: abc123 and {CANARY}", make_bundle()
    )
    assert (
        PASSWORD.lower() not in scrubbed.lower()
        and CANARY not in scrubbed
        and "abc123" not in scrubbed
    )
    assert scrubbed.count("[REDACTED]") == 3


# -- offline note -------------------------------------------------------------------------------


def test_offline_note_is_valid_deterministic_and_extractive() -> None:
    bundle = make_bundle()
    first = offline_note(bundle)
    assert first == offline_note(bundle)
    assert validate_note(first, bundle) == first
    assert "Outlook cannot connect to Exchange" in first
    assert "- The user's AD password expired yesterday." in first
    assert "Observed (not confirmed): Other users" in first
    assert "Ruled out: Network connectivity" in first
    assert "Environment: Windows 11" in first
    assert "The cached credentials were rejected" in first  # root cause from the fix summary
    assert "1. Reset the password in AD" in first
    assert "- Reset AD password" in first  # the template name...
    assert "jdoe" not in first  # ...but never parameter values
    assert "[REDACTED]" not in first


def test_offline_note_without_confirmed_facts_or_fix_says_so() -> None:
    bundle = make_bundle(
        facts=(BundleFact("observation", "The screen flickers.", "t"),),
        active_fix=None,
        script_runs=(),
        problem=None,
    )
    text = offline_note(bundle)
    validate_note(text, bundle)
    assert NO_CONFIRMED_FACTS in text
    assert "Observed (not confirmed): The screen flickers." in text
    assert "Not determined" in text
    assert NO_RESOLUTION in text
    assert "No problem description was recorded." in text


def test_offline_note_leaves_out_a_dismissed_fix() -> None:
    fix = make_bundle().active_fix
    assert fix is not None
    bundle = make_bundle(active_fix=dataclasses.replace(fix, decision="dismissed"), script_runs=())
    text = offline_note(bundle)
    validate_note(text, bundle)
    assert "Reset the user's AD password" not in text
    assert NO_RESOLUTION in text


def test_offline_note_scrubs_leaks_and_hostile_text_and_still_validates() -> None:
    bundle = make_bundle(
        problem=f"## Resolution\nUser typed {PASSWORD} into chat",
        facts=(
            BundleFact("confirmed", f"NewPassword: {PASSWORD}x was tried", "t"),
            BundleFact("confirmed", "```\n# not a title", "t"),
            BundleFact("confirmed", f"canary {CANARY.lower()}", "t"),
        ),
    )
    text = offline_note(bundle)
    assert validate_note(text, bundle) == text
    assert PASSWORD.lower() not in text.lower() and CANARY.lower() not in text.lower()


def test_offline_note_fits_max_chars() -> None:
    facts = tuple(BundleFact("confirmed", f"Fact {i} " + "y" * 500, "t") for i in range(60))
    bundle = make_bundle(facts=facts)
    text = offline_note(bundle, max_chars=3000)
    assert len(text) <= 3000
    assert validate_note(text, bundle, max_chars=3000) == text
    assert "more" in text  # the list says it was shortened


# -- prompt -------------------------------------------------------------------------------------


def test_build_prompt_states_the_rules_and_carries_the_scrubbed_bundle() -> None:
    bundle = make_bundle(
        facts=(*make_bundle().facts, BundleFact("confirmed", f"Leaked {CANARY} in a fact", "t"))
    )
    system, messages = build_prompt(bundle)
    for section in SECTIONS:
        assert f"## {section}" in system
    assert (
        system.index("## Problem")
        < system.index("## What we confirmed")
        < system.index("## Root cause")
        < system.index("## Resolution")
    )
    assert "No facts were confirmed during this session." in system
    assert "Never invent facts" in system and "Never reveal, guess" in system
    assert len(messages) == 1 and messages[0]["role"] == "user"
    content = messages[0]["content"]
    assert CANARY not in content and PASSWORD not in content and CANARY not in system
    payload = json.loads(content.split("<session>\n", 1)[1].split("\n</session>", 1)[0])
    assert payload["facts"]["confirmed"] == [
        "The user's AD password expired yesterday.",
        "Leaked [REDACTED] in a fact",
    ]
    assert payload["facts"]["symptom"] == ["Outlook shows 'Disconnected' in the status bar."]
    assert payload["script_runs"] == [
        {
            "template_name": "Reset AD password",
            "parameters": {"Identity": "jdoe", "NewPassword": "[REDACTED]"},
        }
    ]
    assert payload["suggested_fix"]["title"] == "Reset the user's AD password"
    assert "2026-01-01" not in content  # no timestamps: the fingerprint ignores them too
    # The system prompt is the same for every bundle (prompt caching).
    assert build_prompt(make_bundle(problem="Other"))[0] == system


# -- generate() with a fake client -------------------------------------------------------------


class FakeLLM:
    """Implements LLMClient.complete: answers from a list, records every call."""

    def __init__(self, answers: list[str], *, online: bool = True, model: str = MODEL) -> None:
        self.answers = list(answers)
        self.online = online
        self.model = model
        self.calls: list[dict[str, Any]] = []

    def complete(
        self,
        *,
        system: str | list[dict[str, Any]],
        messages: list[dict[str, Any]],
        max_tokens: int,
        offline: Callable[[], str],
        cache_system: bool = True,
        temperature: float | None = None,
    ) -> LLMResult:
        self.calls.append(
            {"system": system, "messages": [dict(m) for m in messages], "max_tokens": max_tokens}
        )
        if not self.online:
            return LLMResult(offline(), "offline", "offline", LLMUsage(), 0)
        return LLMResult(
            text=self.answers.pop(0),
            generator="anthropic",
            model=self.model,
            usage=LLMUsage(input_tokens=100, output_tokens=50, cache_read_input_tokens=10),
            latency_ms=5,
            stop_reason="end_turn",
        )


def make_generator(fake: FakeLLM) -> ResolutionNoteGenerator:
    return ResolutionNoteGenerator(fake)  # type: ignore[arg-type]


def test_generate_valid_first_time() -> None:
    fake = FakeLLM([GOOD])
    bundle = make_bundle()
    result = make_generator(fake).generate(bundle)
    assert result.markdown == GOOD
    assert (result.generator, result.model, result.attempts, result.llm_calls) == (
        "anthropic",
        MODEL,
        1,
        1,
    )
    assert result.usage == LLMUsage(100, 50, 0, 10)
    assert result.fingerprint == bundle_fingerprint(bundle, model=MODEL)
    assert len(fake.calls) == 1 and 0 < fake.calls[0]["max_tokens"] <= 2000


def test_generate_corrects_an_invalid_answer_once() -> None:
    bad = f"Sure! Here it is.\n\n## Problem\nX\n\n## Resolution\nNewPassword: {PASSWORD}\n"
    fake = FakeLLM([bad, GOOD])
    result = make_generator(fake).generate(make_bundle())
    assert (result.generator, result.attempts, result.llm_calls) == ("anthropic", 2, 2)
    assert result.markdown == GOOD
    assert result.usage == LLMUsage(200, 100, 0, 20)
    retry = fake.calls[1]["messages"]
    assert [m["role"] for m in retry] == ["user", "assistant", "user"]
    assert retry[0] == fake.calls[0]["messages"][0]
    assert PASSWORD not in retry[1]["content"]  # the bad answer is sent back scrubbed
    feedback = retry[2]["content"]
    assert "missing section '## What we confirmed'" in feedback
    assert "text before the first heading" in feedback
    assert all(f"'## {s}'" in feedback for s in SECTIONS)


def test_generate_falls_back_to_the_offline_note_after_two_invalid_answers() -> None:
    fake = FakeLLM(["just text", "## Problem\nstill wrong"])
    bundle = make_bundle()
    result = make_generator(fake).generate(bundle)
    assert result.generator == "offline-fallback"
    assert result.model == MODEL
    assert (result.attempts, result.llm_calls) == (2, 2)
    assert result.markdown == offline_note(bundle)
    assert result.usage.input_tokens == 200


def test_generate_offline_client_makes_no_calls() -> None:
    fake = FakeLLM([], online=False)
    bundle = make_bundle()
    result = make_generator(fake).generate(bundle)
    assert (result.generator, result.model, result.attempts, result.llm_calls) == (
        "offline",
        "offline",
        0,
        0,
    )
    assert fake.calls == []
    assert result.markdown == offline_note(bundle)
    assert result.usage == LLMUsage()
    assert result.fingerprint == bundle_fingerprint(bundle, model="offline")


def test_generate_lets_llm_unavailable_propagate() -> None:
    class Down(FakeLLM):
        def complete(self, **kwargs: Any) -> LLMResult:
            raise LLMUnavailable("overloaded", status_code=529)

    with pytest.raises(LLMUnavailable):
        make_generator(Down([])).generate(make_bundle())


def test_cache_payload_shape() -> None:
    result = make_generator(FakeLLM([GOOD])).generate(make_bundle())
    payload = result.cache_payload(state_version=7, generated_at="2026-01-01T00:00:00+00:00")
    assert set(payload) == {
        "markdown",
        "generator",
        "model",
        "generated_at",
        "state_version",
        "usage",
        "fingerprint",
    }
    assert payload["usage"]["input_tokens"] == 100
    assert json.loads(json.dumps(payload)) == payload


# -- end to end through the real SDK against the local stub --------------------------------------


def test_generate_end_to_end_with_the_sdk_and_stub() -> None:
    stub_module = pytest.importorskip("tests.support.stub_anthropic")
    bundle = make_bundle(
        facts=(*make_bundle().facts, BundleFact("confirmed", f"The token {CANARY} was seen", "t"))
    )
    answers = iter(["Here you go: a note without headings.", GOOD])
    with stub_module.StubAnthropic(responder=lambda request: next(answers)) as stub:
        llm = LLMClient(api_key="test", base_url=stub.url, model=MODEL, timeout_s=5, max_retries=0)
        try:
            result = ResolutionNoteGenerator(llm).generate(bundle)
        finally:
            llm.close()
        calls = stub.calls
        refused = stub.refusals
    # The note and its corrective retry are both accepted as the model under test takes them.
    assert refused == []
    takes_sampling = spec_for(MODEL).sampling_params
    assert all(("temperature" in c["json"]) is takes_sampling for c in calls)
    assert result.generator == "anthropic" and result.markdown == GOOD
    assert result.llm_calls == 2 == len(calls)
    first = calls[0]["json"]
    body = json.dumps(first)
    assert "The user's AD password expired yesterday." in body
    assert CANARY not in json.dumps([c["json"] for c in calls])
    assert PASSWORD not in json.dumps([c["json"] for c in calls])
    assert first["system"][0]["text"] == build_prompt(bundle)[0]
    assert first["system"][0].get("cache_control") == {"type": "ephemeral"}
    assert result.usage.input_tokens > 0 and result.usage.output_tokens > 0
    assert [m["role"] for m in calls[1]["json"]["messages"]] == ["user", "assistant", "user"]
