"""What a note is made from, section by section (see the package docstring for the section
sources): the document the prompt carries and the fingerprint hashes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from services.notes.bundle import (
    BundleScriptRun,
    NoteBundle,
)
from services.notes.generator import kind_sources
from services.notes.kinds import kind_spec
from services.notes.vocabulary import (
    CONFIRMED_KINDS,
    FIX_REF,
)


def _run_dict(run: BundleScriptRun) -> dict[str, Any]:
    return {"template_name": run.template_name, "parameters": dict(run.parameters)}


def source_document(bundle: NoteBundle) -> dict[str, Any]:
    """Exactly what a note is made from, section by section, each item with its id. The prompt
    carries it (scrubbed), and the fingerprint hashes it. A data-defined kind's document lists
    its own sections (:mod:`.kind_sources`)."""
    spec = kind_spec(bundle.kind)
    if spec is not None:
        return kind_sources.source_document(spec, bundle)
    facts = bundle.facts_by_kind()
    refs = {id(fact): ref for ref, fact in bundle.fact_refs().items()}

    def listed(kinds: Iterable[str]) -> list[dict[str, str]]:
        return [
            {"id": refs[id(f)], "kind": f.kind, "text": f.text} for k in kinds for f in facts[k]
        ]

    run_ids = {id(run): ref for ref, run in bundle.run_refs().items()}
    cause_fix = bundle.fix_for_cause()
    decided = bundle.decided_fix()
    return {
        "note_kind": bundle.kind,
        "problem": {"statement": bundle.problem_statement() or None, "facts": listed(["symptom"])},
        "what_we_confirmed": {
            "facts": listed(CONFIRMED_KINDS),
            "script_runs": [{"id": run_ids[id(r)], **_run_dict(r)} for r in bundle.script_runs],
        },
        "root_cause": {
            "facts": listed(["root_cause"]),
            "suggested_fix_cause": None
            if cause_fix is None or not (cause_fix.summary or "").strip()
            else {"id": FIX_REF, "text": cause_fix.summary},
        },
        "resolution": {
            "facts": listed(["resolution"]),
            "decided_fix": None
            if decided is None
            else {
                "id": FIX_REF,
                "title": decided.title,
                "steps": list(decided.steps),
                "decision": decided.decision,
            },
            "scripts_run_for_fix": [run_ids[id(r)] for r in bundle.runs_for_fix()],
            "resolution_recorded": bundle.has_resolution(),
        },
    }
