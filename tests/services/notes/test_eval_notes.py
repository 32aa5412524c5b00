"""The note evaluation set (bench/eval/notes/) and the figures the offline generator holds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.eval import notes_eval
from services.notes.generator import FACT_KINDS, ResolutionNoteGenerator
from shared.llm import LLMClient

ROOT = Path(__file__).resolve().parents[3]
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


def test_make_eval_notes_prints_per_session_and_total() -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "bench.eval.notes_eval"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = done.stdout.splitlines()
    assert lines[0].split()[:5] == ["session", "generator", "complete", "grounded", "coverage"]
    assert any(line.startswith("outlook-password-prompts") for line in lines)
    total = next(line for line in lines if line.startswith("TOTAL"))
    assert "100.0%" in total


def test_every_offline_note_and_every_verbatim_copy_of_the_session_validates() -> None:
    """Copying the session's own words (a distinguished name, a registry value, a path) is
    never taken for a key/value dump or an invented token."""
    from services.notes.generator import build_prompt, offline_draft, validate_note
    from tests.support.stub_anthropic import default_structured_note

    for _name, bundle in notes_eval.load_sessions():
        validate_note(offline_draft(bundle).to_json(), bundle)
        copied = default_structured_note({"messages": build_prompt(bundle)[1]})
        validate_note(copied, bundle)
