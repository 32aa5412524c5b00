"""services.notes.generator: section sources, fingerprint, validation (format, prose, citations,
grounding), citations, the offline note, the prompt and generate() with its corrective retry."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from typing import Any

import pytest

from services.notes import generator as gen
from services.notes.generator import (
    NO_RESOLUTION,
    NO_ROOT_CAUSE,
    SECTIONS,
    BundleFact,
    BundleFix,
    BundleScriptRun,
    NoteBundle,
    NoteValidationError,
    ResolutionNoteGenerator,
    build_prompt,
    bundle_fingerprint,
    bundle_from_dict,
    bundle_to_dict,
    offline_draft,
    offline_note,
    render_markdown,
    scrub_text,
    specific_tokens,
    validate_note,
)
from shared.llm import LLMClient, LLMResult, LLMUnavailable, LLMUsage

MODEL = os.environ.get("ANTHROPIC_MODEL") or "claude-sonnet-5-5"
CANARY = "Canary-Secret-7f3a9"
PASSWORD = "hunter2-Sup3r"


def make_bundle(**overrides: Any) -> NoteBundle:
    base: dict[str, Any] = {
        "kind": "resolution_note",
        "session_id": "11111111-1111-1111-1111-111111111111",
        "account_id": "22222222-2222-2222-2222-222222222222",
        "state_version": 7,
        "title": "Outlook disconnected",
        "problem": "Outlook cannot connect to Exchange for one user.",
        "facts": (
            BundleFact("symptom", "Outlook shows Disconnected in the status bar.", "t1", "f-1"),
            BundleFact("observation", "Other users in the office seem fine.", "t2", "f-2"),
            BundleFact("confirmed", "The AD password of jdoe expired yesterday.", "t3", "f-3"),
            BundleFact(
                "ruled_out", "Ping to mail.contoso.com answers from 10.0.0.25.", "t4", "f-4"
            ),
            BundleFact("environment", "Windows 11 23H2 with Outlook version 2410.", "t5", "f-5"),
            BundleFact("root_cause", "Cached credentials were rejected after expiry.", "t6", "f-6"),
            BundleFact(
                "resolution", "Reset the password and signed in to Outlook again.", "t7", "f-7"
            ),
        ),
        "active_fix": BundleFix(
            title="Reset the user's AD password",
            summary="The cached credentials were rejected because the password had expired.",
            steps=("Reset the password in AD", "Have the user sign in to Outlook again"),
            script="Set-ADAccountPassword -Identity jdoe -Reset",
            confidence=85,
            decision="one_off",
        ),
        "script_runs": (
            BundleScriptRun(
                "Reset AD password", {"Identity": "jdoe", "NewPassword": "[REDACTED]"}, "t8"
            ),
        ),
        "forbidden_values": frozenset({PASSWORD, CANARY}),
    }
    base.update(overrides)
    return NoteBundle(**base)


def item(text: str, cites: list[str] | None = None, fmt: str = "sentence") -> dict[str, Any]:
    return {"text": text, "format": fmt, "cites": cites or []}


def answer(**sections: list[dict[str, Any]]) -> dict[str, Any]:
    parts: dict[str, list[dict[str, Any]]] = {
        "Problem": [item("Outlook could not connect to Exchange for one user.", [])],
        "What we confirmed": [item("The AD password had expired.", ["F3"], "bullet")],
        "Root cause": [item("Cached credentials were rejected after the expiry.", ["F6"])],
        "Resolution": [item("The password was reset and Outlook signed in again.", ["F7", "S1"])],
    }
    parts.update({k.replace("_", " "): v for k, v in sections.items()})
    return {"sections": [{"title": name, "items": parts[name]} for name in parts]}


GOOD = json.dumps(answer())


def problems_of(doc: Any, bundle: NoteBundle | None = None, **kwargs: Any) -> list[gen.Problem]:
    text = doc if isinstance(doc, str) else json.dumps(doc)
    with pytest.raises(NoteValidationError) as info:
        validate_note(text, bundle or make_bundle(), **kwargs)
    assert info.value.problems, "a validation error must list its problems"
    return info.value.problems


def reasons_of(doc: Any, **kwargs: Any) -> set[str]:
    return {p.reason for p in problems_of(doc, **kwargs)}


# -- bundle, sources and fingerprint -------------------------------------------------------------


def test_the_prompt_carries_each_section_s_sources_with_short_ids() -> None:
    system, messages = build_prompt(make_bundle())
    assert system == gen.note_prompt().text and "cites" in system
    body = messages[0]["content"]
    doc = json.loads(body[body.index("<session>\n") + 10 : body.rindex("\n</session>")])
    assert doc["problem"]["statement"] == "Outlook cannot connect to Exchange for one user."
    assert [f["id"] for f in doc["problem"]["facts"]] == ["F1"]
    assert [f["id"] for f in doc["what_we_confirmed"]["facts"]] == ["F3", "F4", "F5"]
    assert doc["what_we_confirmed"]["script_runs"][0]["id"] == "S1"
    assert doc["root_cause"]["facts"][0]["id"] == "F6"
    assert doc["resolution"]["facts"][0]["id"] == "F7"
    assert doc["resolution"]["decided_fix"]["id"] == "X1"
    assert doc["resolution"]["resolution_recorded"] is True
    # Observations are in no section; database ids and timestamps are not sent.
    assert "seem fine" not in body and "f-3" not in body and "t3" not in body


def test_problem_falls_back_to_the_title() -> None:
    system, messages = build_prompt(make_bundle(problem=None))
    assert '"statement": "Outlook disconnected"' in messages[0]["content"]


def test_the_prompt_is_a_data_file_whose_version_feeds_the_fingerprint() -> None:
    prompt = gen.note_prompt()
    assert gen.PROMPT_FILE.name == "note_prompt.txt" and prompt.version.startswith("note-v2+")
    assert "prompt-version" not in prompt.text
    assert gen.note_prompt() is prompt  # loaded once


def test_fingerprint_ignores_versions_ids_timestamps_and_observations() -> None:
    bundle = make_bundle()
    other = make_bundle(
        state_version=99,
        facts=tuple(
            dataclasses.replace(f, created_at="later", id="other")
            if f.kind != "observation"
            else dataclasses.replace(f, text="something else entirely")
            for f in bundle.facts
        ),
    )
    assert bundle_fingerprint(bundle, model=MODEL) == bundle_fingerprint(other, model=MODEL)
    changed = make_bundle(facts=(*bundle.facts, BundleFact("confirmed", "New", "t9")))
    assert bundle_fingerprint(changed, model=MODEL) != bundle_fingerprint(bundle, model=MODEL)
    assert bundle_fingerprint(bundle, model="other") != bundle_fingerprint(bundle, model=MODEL)


def test_the_snapshot_round_trips() -> None:
    bundle = make_bundle(forbidden_values=frozenset())
    assert bundle_from_dict(json.loads(json.dumps(bundle_to_dict(bundle)))) == bundle


@pytest.mark.parametrize(
    ("fix", "facts_kinds", "expected"),
    [
        (None, ("resolution",), True),
        (None, ("confirmed",), False),
        ("one_off", (), True),
        ("dismissed", (), False),
        (None, (), False),
    ],
)
def test_has_resolution(fix: str | None, facts_kinds: tuple[str, ...], expected: bool) -> None:
    bundle = make_bundle(
        facts=tuple(BundleFact(k, "text", "t") for k in facts_kinds),
        active_fix=None
        if fix is None
        else dataclasses.replace(make_bundle().active_fix, decision=fix),  # type: ignore[arg-type]
    )
    assert bundle.has_resolution() is expected


# -- validation ----------------------------------------------------------------------------------


def test_a_good_answer_validates_and_renders_without_citation_markers() -> None:
    draft = validate_note(GOOD, make_bundle())
    markdown = render_markdown(draft)
    assert markdown.startswith("## Problem\nOutlook could not connect")
    assert "- The AD password had expired." in markdown
    assert "[F" not in markdown and "F3" not in markdown
    assert [s for s, _ in draft.sections] == list(SECTIONS)
    cites = gen.citations(draft, make_bundle())
    assert cites[3] == {
        "section": "Resolution",
        "text": "The password was reset and Outlook signed in again.",
        "cites": ["F7", "S1"],
        "fact_ids": ["f-7"],
    }


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ("not json at all", "not_json"),
        ({"note": "x"}, "not_json"),
        ({"sections": answer()["sections"][:3]}, "missing_section"),
        ({"sections": [answer()["sections"][i] for i in (0, 2, 1, 3)]}, "out_of_order"),
        (answer(Root_cause=[]), "empty_section"),
        (answer(Root_cause=[item("   ")]), "empty_section"),
        (
            {"sections": [*answer()["sections"], {"title": "Next steps", "items": []}]},
            "unknown_section",
        ),
        (answer(Problem=[item('{"status": "failed", "code": 5}')]), "not_prose"),
        (answer(Problem=[item('["spooler", "restart"]')]), "not_prose"),
        (answer(Problem=[item("status=failed retries=3 user=jdoe")]), "not_prose"),
        (answer(Problem=[item("host: a; port: b; mode: c; user: d")]), "not_prose"),
        (answer(Problem=[item("```json {} ```")]), "not_prose"),
        (answer(Problem=[item("| key | value |")]), "not_prose"),
        (answer(Problem=[item("The password expired [F3].")]), "citation_marker"),
        (answer(Root_cause=[item("Expired password.", ["F42"])]), "unknown_citation"),
        (answer(Root_cause=[item("Expired password.", ["S9"])]), "unknown_citation"),
    ],
)
def test_validation_rejects_format_and_prose_problems(doc: Any, reason: str) -> None:
    assert reason in reasons_of(doc)


@pytest.mark.parametrize(
    "invented",
    [
        "the server at 192.168.77.12",
        "the host fs02.contoso.local",
        "the host PRN-FL9-22",
        "mail from helpdesk@fabrikam.com",
        "the page https://support.example.org/kb/123",
        "update KB5034441",
        "vulnerability CVE-2024-21413",
        "error 0x80070005",
        r"the key HKLM\Software\Policies\Microsoft\Office",
        r"the folder C:\ProgramData\Vendor\Cache",
        r"the share \\FS09\public",
        "version 16.0.17928",
        "a 50 GB mailbox",
        "after 15 minutes",
        "95% disk usage",
    ],
)
def test_validation_rejects_specific_tokens_not_in_the_bundle(invented: str) -> None:
    doc = answer(Root_cause=[item(f"It was caused by {invented}.", ["F6"])])
    problems = problems_of(doc)
    assert {p.reason for p in problems} == {"ungrounded_token"}
    assert "does not occur in the session data" in problems[0].message


def test_specific_tokens_from_the_bundle_are_allowed() -> None:
    doc = answer(
        What_we_confirmed=[
            item("Ping to mail.contoso.com answered from 10.0.0.25.", ["F4"], "bullet"),
            item("The machine runs Windows 11 23H2 with Outlook version 2410.", ["F5"], "bullet"),
        ]
    )
    validate_note(json.dumps(doc), make_bundle())


def test_the_token_finder_sees_each_category() -> None:
    found = {c for c, _ in specific_tokens(r"10.1.2.3 a.example.com x@y.org KB123456 0xDEADBEEF")}
    assert {"ip_address", "host_name", "email", "kb_number", "error_code"} <= found
    assert specific_tokens("Outlook was restarted, e.g. twice, by the user.") == []


@pytest.mark.parametrize("leak", [PASSWORD, CANARY, PASSWORD.upper()])
def test_validation_rejects_forbidden_values_without_quoting_them(leak: str) -> None:
    problems = problems_of(answer(Resolution=[item(f"Set the password to {leak}.", ["F7"])]))
    assert any(p.reason == "forbidden_value" for p in problems)
    assert all(leak.casefold() not in p.message.casefold() for p in problems)


def test_validation_rejects_a_value_after_a_redacted_parameter() -> None:
    problems = problems_of(answer(Resolution=[item("Ran the script with NewPassword: abc123.")]))
    assert any("NewPassword" in p.message for p in problems)


def test_validation_collects_every_problem() -> None:
    doc = {"sections": [{"title": "Problem", "items": [item('{"a": 1}', ["F99"])]}]}
    reasons = reasons_of(doc)
    assert {"not_prose", "unknown_citation", "missing_section"} <= reasons


def test_validation_rejects_a_note_that_is_too_long() -> None:
    doc = answer(Problem=[item("Outlook could not connect. " * 400)])
    assert "too_long" in reasons_of(doc)


# -- offline note ----------------------------------------------------------------------------------


def test_offline_note_builds_each_section_from_its_sources() -> None:
    bundle = make_bundle()
    markdown = offline_note(bundle)
    validate_note(offline_draft(bundle).to_json(), bundle)
    sections = dict(
        (block.split("\n", 1)[0], block.split("\n", 1)[1]) for block in markdown.split("## ")[1:]
    )
    assert "Outlook cannot connect to Exchange" in sections["Problem"]
    assert "Outlook shows Disconnected" in sections["Problem"]
    assert "The AD password of jdoe expired" in sections["What we confirmed"]
    assert "Ruled out: Ping to mail.contoso.com" in sections["What we confirmed"]
    assert "Environment: Windows 11 23H2" in sections["What we confirmed"]
    assert "Reset AD password" in sections["What we confirmed"]
    assert "NewPassword [REDACTED]" in sections["What we confirmed"]
    assert sections["Root cause"].strip() == "Cached credentials were rejected after expiry."
    assert "Reset the password and signed in to Outlook again." in sections["Resolution"]
    assert "Reset the user's AD password" in sections["Resolution"]
    assert "seem fine" not in markdown  # observations are in no section
    assert "Not determined" not in markdown and NO_RESOLUTION not in markdown


def test_offline_root_cause_falls_back_to_the_fix_then_says_none_was_confirmed() -> None:
    without = tuple(f for f in make_bundle().facts if f.kind != "root_cause")
    assert (
        "password had expired" in offline_note(make_bundle(facts=without)).split("## Root cause")[1]
    )
    none = offline_note(make_bundle(facts=without, active_fix=None))
    assert NO_ROOT_CAUSE in none


def test_offline_note_says_plainly_that_no_resolution_was_recorded() -> None:
    facts = tuple(f for f in make_bundle().facts if f.kind != "resolution")
    fix = dataclasses.replace(make_bundle().active_fix, decision="dismissed")  # type: ignore[arg-type]
    markdown = offline_note(make_bundle(facts=facts, active_fix=fix))
    assert markdown.rstrip().endswith(NO_RESOLUTION)
    assert "Reset the user's AD password" not in markdown  # a dismissed fix explains nothing


def test_offline_citations_point_at_what_each_line_copies() -> None:
    bundle = make_bundle()
    cites = gen.citations(offline_draft(bundle), bundle)
    by_text = {c["text"]: c for c in cites}
    assert by_text["Cached credentials were rejected after expiry."]["fact_ids"] == ["f-6"]
    assert by_text["The AD password of jdoe expired yesterday."]["cites"] == ["F3"]


def test_offline_note_scrubs_leaks_and_still_validates() -> None:
    facts = (
        BundleFact("confirmed", f"The temporary password was {PASSWORD} and {CANARY}", "t"),
        BundleFact("resolution", "## Heading injection\n```\nNewPassword: abc\n```", "t"),
    )
    bundle = make_bundle(facts=facts)
    markdown = offline_note(bundle)
    assert PASSWORD not in markdown and CANARY not in markdown and "abc" not in markdown
    validate_note(offline_draft(bundle).to_json(), bundle)


def test_offline_note_fits_max_chars() -> None:
    facts = tuple(BundleFact("confirmed", f"Fact number {n} " + "x" * 500, "t") for n in range(60))
    bundle = make_bundle(facts=facts)
    assert len(offline_note(bundle, max_chars=3000)) <= 3000


def test_scrub_text_removes_forbidden_and_redacted_values() -> None:
    text = f"password {PASSWORD}; NewPassword: abc; -NewPassword 'xyz'"
    scrubbed = scrub_text(text, make_bundle())
    assert PASSWORD not in scrubbed and "abc" not in scrubbed and "xyz" not in scrubbed


# -- generate() ----------------------------------------------------------------------------------


class FakeLLM:
    def __init__(self, answers: list[str], *, online: bool = True, model: str = MODEL) -> None:
        self.answers = list(answers)
        self.online = online
        self.model = model
        self.calls: list[dict[str, Any]] = []

    def complete_json(
        self,
        *,
        system: str | list[dict[str, Any]],
        messages: list[dict[str, Any]],
        max_tokens: int,
        schema: dict[str, Any],
        offline: Callable[[], str],
        cache_system: bool = True,
    ) -> LLMResult:
        self.calls.append(
            {"system": system, "messages": [dict(m) for m in messages], "schema": schema}
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
    assert result.markdown == render_markdown(validate_note(GOOD, bundle))
    assert (result.generator, result.model, result.attempts, result.llm_calls) == (
        "anthropic",
        MODEL,
        1,
        1,
    )
    assert result.rejections == [] and len(result.citations) == 4
    assert result.fingerprint == bundle_fingerprint(bundle, model=MODEL)
    assert fake.calls[0]["schema"] == gen.NOTE_SCHEMA


def test_generate_corrects_an_invalid_answer_once_naming_each_problem() -> None:
    bad = json.dumps(
        answer(
            Root_cause=[item("Error 0x80070005 on fs02.contoso.local.", ["F6"])],
            Resolution=[item(f"NewPassword: {PASSWORD}", ["F77"])],
        )
    )
    fake = FakeLLM([bad, GOOD])
    result = make_generator(fake).generate(make_bundle())
    assert (result.generator, result.attempts, result.llm_calls) == ("anthropic", 2, 2)
    assert result.rejections == [["forbidden_value", "ungrounded_token", "unknown_citation"]]
    assert result.usage == LLMUsage(200, 100, 0, 20)
    retry = fake.calls[1]["messages"]
    assert [m["role"] for m in retry] == ["user", "assistant", "user"]
    assert PASSWORD not in retry[1]["content"]  # the bad answer is sent back scrubbed
    feedback = retry[2]["content"]
    assert "'0x80070005'" in feedback and "'fs02.contoso.local'" in feedback
    assert "'F77'" in feedback and "NewPassword" in feedback


def test_generate_falls_back_to_the_offline_note_after_two_invalid_answers() -> None:
    fake = FakeLLM(["just text", json.dumps(answer(Problem=[item('{"a": 1}')]))])
    bundle = make_bundle()
    result = make_generator(fake).generate(bundle)
    assert result.generator == "offline-fallback"
    assert (result.attempts, result.llm_calls) == (2, 2)
    assert result.markdown == offline_note(bundle)
    assert result.rejections == [["not_json"], ["not_prose"]]


def test_generate_offline_client_makes_no_calls() -> None:
    fake = FakeLLM([], online=False)
    bundle = make_bundle()
    result = make_generator(fake).generate(bundle)
    assert (result.generator, result.model, result.llm_calls) == ("offline", "offline", 0)
    assert fake.calls == [] and result.markdown == offline_note(bundle)
    assert result.fingerprint == bundle_fingerprint(bundle, model="offline")


def test_generate_lets_llm_unavailable_propagate() -> None:
    class Down(FakeLLM):
        def complete_json(self, **kwargs: Any) -> LLMResult:
            raise LLMUnavailable("overloaded", status_code=529)

    with pytest.raises(LLMUnavailable):
        make_generator(Down([])).generate(make_bundle())


def test_cache_payload_shape() -> None:
    result = make_generator(FakeLLM([GOOD])).generate(make_bundle())
    payload = result.cache_payload(state_version=7, generated_at="2026-01-01T00:00:00+00:00")
    assert {"markdown", "citations", "generator", "fingerprint", "rejections"} <= set(payload)
    assert json.loads(json.dumps(payload)) == payload


# -- end to end through the real SDK against the strict local stub -------------------------------


def _through_stub(bundle: NoteBundle, answers: list[str]) -> tuple[Any, list[dict[str, Any]]]:
    from tests.support.stub_anthropic import StubAnthropic

    queue = iter(answers)
    with StubAnthropic(responder=lambda request: next(queue)) as stub:
        llm = LLMClient(api_key="test", base_url=stub.url, model=MODEL, timeout_s=5, max_retries=0)
        try:
            result = ResolutionNoteGenerator(llm).generate(bundle)
        finally:
            llm.close()
        # Every request is one the model under test accepts.
        assert stub.refusals == []
        return result, stub.calls


@pytest.mark.parametrize(
    ("bad_item", "token"),
    [
        (item("The update KB5034441 broke the profile.", ["F6"]), "KB5034441"),
        (item("The host fs02.contoso.local rejected it.", ["F6"]), "fs02.contoso.local"),
        (item("Exchange answered 0x80070005.", ["F6"]), "0x80070005"),
        (item('{"cause": "password", "severity": 3}', ["F6"]), '"severity"'),
        (item("Cached credentials were rejected.", ["F12"]), "F12"),
    ],
)
def test_a_hallucination_a_json_dump_or_an_unknown_citation_is_never_served(
    bad_item: dict[str, Any], token: str
) -> None:
    bundle = make_bundle()
    bad = json.dumps(answer(Root_cause=[bad_item]))
    # Rejected, corrected once: the correction is served.
    result, calls = _through_stub(bundle, [bad, GOOD])
    assert result.generator == "anthropic" and len(calls) == 2
    assert token not in result.markdown and token not in json.dumps(result.citations)
    first = calls[0]["json"]
    assert first["output_config"]["format"]["type"] == "json_schema"
    for refused in ("temperature", "top_p", "top_k", "tool_choice", "thinking"):
        assert refused not in first
    assert first["messages"][-1]["role"] == "user"  # no assistant prefill
    # Rejected twice: the offline note is served, flagged as such.
    result, calls = _through_stub(bundle, [bad, bad])
    assert result.generator == "offline-fallback" and len(calls) == 2
    assert token not in result.markdown
    assert result.markdown == offline_note(bundle)


def test_secrets_never_reach_the_api() -> None:
    bundle = make_bundle(
        facts=(*make_bundle().facts, BundleFact("confirmed", f"The token {CANARY} was seen", "t"))
    )
    result, calls = _through_stub(bundle, [GOOD])
    sent = json.dumps([c["json"] for c in calls])
    assert CANARY not in sent and PASSWORD not in sent
    assert calls[0]["json"]["system"][0]["text"] == gen.note_prompt().text
    assert result.usage.input_tokens > 0


def test_key_value_looking_text_copied_from_the_session_is_prose() -> None:
    dn = "OU=Finance,OU=Staff,DC=contoso,DC=local"
    bundle = make_bundle(
        facts=(*make_bundle().facts, BundleFact("confirmed", f"Users moved to {dn}.", "t9", "x"))
    )
    validate_note(
        json.dumps(answer(What_we_confirmed=[item(f"The users were moved to {dn}.", ["F8"])])),
        bundle,
    )
    invented = answer(What_we_confirmed=[item("Moved to OU=Sales,DC=fabrikam,DC=com.", ["F8"])])
    with pytest.raises(NoteValidationError):
        validate_note(json.dumps(invented), bundle)
