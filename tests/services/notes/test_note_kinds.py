"""The KB article and escalation kinds (services/notes/kinds.py, generator/kind_sources.py and the
generator): pure functions over bundles, no servers."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from bench.eval import notes_eval
from services.notes.generator import (
    NoteValidationError,
    answer_schema,
    build_prompt,
    bundle_fingerprint,
    offline_draft,
    preview_kinds,
    render_markdown,
    section_titles,
    validate_note,
)
from services.notes.kinds import generalised_bundle, kind_spec, kind_specs
from tests.support.stub_anthropic import default_structured_note


def _case(kind: str, name: str) -> notes_eval.Case:
    return next(c for c in notes_eval.load_cases(kind) if c.name == name)


def _answer(items: dict[str, list[dict[str, object]]], kind: str) -> str:
    return json.dumps(
        {
            "sections": [
                {"title": t, "items": items.get(t) or [{"text": "Nothing.", "cites": []}]}
                for t in section_titles(kind)
            ]
        }
    )


def test_kinds_are_data_with_their_sections_and_prompts() -> None:
    assert preview_kinds() == ("resolution_note", "kb_article", "escalation")
    kb = kind_spec("kb_article")
    escalation = kind_spec("escalation")
    assert kb is not None and escalation is not None
    assert kb.titles == ("Symptoms", "Cause", "Resolution", "Applies to")
    assert escalation.titles == (
        "What was reported",
        "What was checked",
        "Ruled out",
        "Current state",
        "Suggested next steps",
        "Scripts run",
    )
    assert (kb.session_status, kb.generalised, kb.keepable, kb.batch_on_resolve) == (
        "resolved",
        True,
        True,
        True,
    )
    assert escalation.session_status == "active" and not escalation.generalised
    assert kb.prompt.version.startswith("kb-article-v1+")
    assert "knowledge-base" in kb.prompt.text and "[computer]" in kb.prompt.text
    assert escalation.prompt.version.startswith("escalation-v1+")
    schema = answer_schema("escalation")
    enum = schema["properties"]["sections"]["items"]["properties"]["title"]["enum"]
    assert enum == list(escalation.titles)
    assert set(kind_specs()) == {"kb_article", "escalation"}


@pytest.mark.parametrize("kind", ["kb_article", "escalation"])
def test_every_offline_note_and_every_copy_of_the_session_validates(kind: str) -> None:
    cases = notes_eval.load_cases(kind)
    assert len(cases) >= 8
    for case in cases:
        draft = offline_draft(case.bundle)
        assert [name for name, _items in draft.sections] == list(section_titles(kind))
        validate_note(draft.to_json(), case.bundle)
        copied = default_structured_note({"messages": build_prompt(case.bundle)[1]})
        validate_note(copied, case.bundle)


def test_the_kb_article_is_made_from_the_generalised_session_only() -> None:
    case = _case("kb_article", "outlook-password-prompts")
    system, messages = build_prompt(case.bundle)
    sent = system + messages[0]["content"]
    for detail in ("Jane", "jane.doe@contoso.com", "LAPTOP-ACC-07", "INC0048213", "contoso.com"):
        assert detail not in sent
    assert "[computer]" in sent and "[email]" in sent and "[ticket]" in sent
    # The secret canary stays redacted, as in every note.
    assert "Autumn-Leaves-2026!" not in sent and "[REDACTED]" in sent
    assert {"Jane", "jane.doe@contoso.com", "LAPTOP-ACC-07"} <= case.bundle.withheld
    assert "Write the knowledge-base article" in messages[0]["content"]


def test_a_kb_article_naming_a_customer_detail_is_rejected() -> None:
    case = _case("kb_article", "print-spooler-stuck")
    refs = {f.text: ref for ref, f in case.bundle.fact_refs().items()}
    cause_ref = next(r for t, r in refs.items() if "corrupted spool file" in t)
    good = {"Cause": [{"text": "A corrupted spool file blocked the queue.", "cites": [cause_ref]}]}
    validate_note(_answer(good, "kb_article"), case.bundle)

    for leaked in ("The spooler on PRINT-SRV01 stopped.", "The spooler on print-srv01 stopped."):
        bad = {"Cause": [{"text": leaked, "cites": [cause_ref]}]}
        with pytest.raises(NoteValidationError) as caught:
            validate_note(_answer(bad, "kb_article"), case.bundle)
        assert "identifying_detail" in caught.value.reasons


def test_a_one_word_name_is_a_detail_only_in_its_own_case() -> None:
    case = _case("kb_article", "mfa-new-phone")
    assert "Ali" in case.bundle.withheld
    fine = {"Symptoms": [{"text": "The user could not approve sign-ins; all else worked."}]}
    validate_note(_answer(fine, "kb_article"), case.bundle)
    named = {"Symptoms": [{"text": "Ali could not approve sign-ins."}]}
    with pytest.raises(NoteValidationError):
        validate_note(_answer(named, "kb_article"), case.bundle)


def test_kb_articles_keep_the_sections_shape_and_refuse_the_resolution_notes() -> None:
    case = _case("kb_article", "vpn-drops")
    note_shaped = json.dumps(
        {
            "sections": [
                {"title": t, "items": [{"text": "Checked.", "cites": []}]}
                for t in section_titles("resolution_note")
            ]
        }
    )
    with pytest.raises(NoteValidationError) as caught:
        validate_note(note_shaped, case.bundle)
    assert {"unknown_section", "missing_section"} <= set(caught.value.reasons)


def test_escalation_sections_draw_on_the_open_session() -> None:
    case = _case("escalation", "esc-outlook-crash-addin")
    markdown = render_markdown(offline_draft(case.bundle))
    ruled_out = markdown.split("## Ruled out")[1].split("## ")[0]
    assert "A new Outlook profile crashes the same way." in ruled_out
    state = markdown.split("## Current state")[1].split("## ")[0]
    assert "Unconfirmed observation" in state and "not decided yet" in state
    steps = markdown.split("## Suggested next steps")[1].split("## ")[0]
    assert "1. Open Outlook in safe mode." in steps
    assert "Collect application crash events" in markdown.split("## Scripts run")[1]

    dismissed = _case("escalation", "esc-dismissed-fix")
    markdown = render_markdown(offline_draft(dismissed.bundle))
    assert "No next step has been proposed yet." in markdown
    assert "“Reinstall the graphics driver”: dismissed." in markdown
    # A dismissed fix is no source: citing it is refused.
    assert "X1" not in dismissed.bundle.known_refs()


def test_fingerprints_are_per_kind_and_stable() -> None:
    base = notes_eval.load_cases("resolution_note")[0].bundle
    prints = {
        kind: bundle_fingerprint(replace(base, kind=kind), model="m")
        for kind in ("resolution_note", "kb_article", "escalation")
    }
    assert len(set(prints.values())) == 3
    again = bundle_fingerprint(replace(base, kind="escalation", state_version=9), model="m")
    assert again == prints["escalation"]


def test_generalising_a_bundle_twice_changes_nothing_more() -> None:
    case = _case("kb_article", "account-lockout-loop")
    again = generalised_bundle(case.bundle)
    assert again.facts == case.bundle.facts
    assert again.problem == case.bundle.problem
