"""The note evaluation set (bench/eval/notes/) and the figures the offline generator holds."""

from __future__ import annotations

import json

import pytest

from bench.eval import notes_eval
from services.notes.generator import FACT_KINDS, ResolutionNoteGenerator
from shared.llm import LLMClient

TOPICS = (
    "outlook",
    "spooler",
    "vpn",
    "disk",
    "lockout",
    "bitlocker",
    "teams",
    "dns",
    "certificate",
    "licensing",
    "mapped-drives",
    "slow-logons",
)


def _offline() -> ResolutionNoteGenerator:
    return ResolutionNoteGenerator(
        LLMClient(api_key=None, base_url=None, model="unused", timeout_s=1, max_retries=0)
    )


def test_the_set_holds_at_least_30_realistic_sessions() -> None:
    files = sorted(notes_eval.DATA_DIR.glob("*.json"))
    assert len(files) >= 30
    names = " ".join(f.stem for f in files)
    assert all(topic in names for topic in TOPICS)
    for path in files:
        data = json.loads(path.read_text(encoding="utf-8"))
        assert data["id"] == path.stem
        assert {f["kind"] for f in data["facts"]} <= set(FACT_KINDS)
        assert any(f["kind"] == "symptom" for f in data["facts"]), path.name
    with_canary = [f for f in files if json.loads(f.read_text())["canaries"]]
    assert len(with_canary) >= 2


def test_the_offline_generator_scores_complete_grounded_covering_and_leak_free() -> None:
    scores = notes_eval.evaluate(_offline())
    totals = notes_eval.totals(scores)
    assert totals.sessions >= 30
    assert totals.completeness == 1.0
    assert totals.groundedness == 1.0
    assert totals.coverage >= 0.9
    assert totals.leaks == 0
    assert all(s.generator == "offline" for s in scores)
    assert sum(s.tokens for s in scores) > 50  # the set does exercise the grounding check


def test_the_scorer_catches_an_invented_token_a_missed_fact_and_a_leak() -> None:
    name, bundle = next((n, b) for n, b in notes_eval.load_sessions() if b.forbidden_values)
    good = _offline().generate(bundle)
    canary = sorted(bundle.forbidden_values)[0]
    bad = type(good)(
        **{
            **good.__dict__,
            "markdown": "## Problem\nIt broke on 10.99.99.99.\n\n## Root cause\n"
            f"The password {canary} leaked.\n",
        }
    )
    score = notes_eval.score(name, bundle, bad)
    assert score.completeness == 0.5
    assert score.groundedness < 1.0 and "10.99.99.99" in score.ungrounded
    assert score.coverage < 0.5
    assert score.leaks == 1


def test_every_offline_note_and_every_verbatim_copy_of_the_session_validates() -> None:
    """Copying the session's own words (a distinguished name, a registry value, a path) is
    never taken for a key/value dump or an invented token."""
    from services.notes.generator import build_prompt, offline_draft, validate_note
    from tests.support.stub_anthropic import default_structured_note

    for _name, bundle in notes_eval.load_sessions():
        validate_note(offline_draft(bundle).to_json(), bundle)
        copied = default_structured_note({"messages": build_prompt(bundle)[1]})
        validate_note(copied, bundle)


@pytest.mark.parametrize("kind", ["kb_article", "escalation"])
def test_each_kind_has_its_own_cases_and_the_offline_generator_holds_its_figures(
    kind: str,
) -> None:
    cases = notes_eval.load_cases(kind)
    assert len(cases) >= 8
    assert all(case.bundle.kind == kind for case in cases)
    scores = notes_eval.evaluate(_offline(), kind)
    totals = notes_eval.totals(scores)
    assert totals.sessions == len(cases)
    assert totals.completeness == 1.0
    assert totals.groundedness == 1.0
    assert totals.coverage >= 0.9
    assert totals.leaks == 0
    assert totals.identifying == 0
    assert sum(s.tokens for s in scores) > 5  # versions, KB numbers, quantities


def test_kb_cases_name_resolved_sessions_and_the_details_they_hide() -> None:
    cases = notes_eval.load_cases("kb_article")
    for case in cases:
        assert case.identifiers, case.name
        assert set(case.identifiers) <= case.bundle.withheld, case.name
        assert case.bundle.has_resolution(), case.name
    escalations = notes_eval.load_cases("escalation")
    assert all(not any(f.kind == "resolution" for f in c.bundle.facts) for c in escalations)
    assert any(c.bundle.forbidden_values for c in escalations)


def test_the_scorer_catches_a_customer_detail_in_a_kb_article() -> None:
    case = next(c for c in notes_eval.load_cases("kb_article") if c.name == "print-spooler-stuck")
    good = _offline().generate(case.bundle)
    assert (
        notes_eval.score(case.name, case.bundle, good, identifiers=case.identifiers).identifying
        == 0
    )
    bad = type(good)(**{**good.__dict__, "markdown": good.markdown + "\nSee PRINT-SRV01.\n"})
    score = notes_eval.score(case.name, case.bundle, bad, identifiers=case.identifiers)
    assert score.identifying == 1 and score.identified == ("PRINT-SRV01",)


def test_eval_notes_prints_one_kind_on_request(capsys: pytest.CaptureFixture[str]) -> None:
    assert notes_eval.main(["--kind", "escalation"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "kind: escalation"
    assert lines[1].split()[:5] == ["session", "generator", "complete", "grounded", "coverage"]
    assert any(line.startswith("esc-sso-loop") for line in lines)
    assert "100.0%" in next(line for line in lines if line.startswith("TOTAL"))
