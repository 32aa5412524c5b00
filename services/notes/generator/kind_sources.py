"""What a note of a data-defined kind (services/notes/kinds.py) is made from, section by
section: the source document the prompt carries and the fingerprint hashes (the offline note
copies the same items, see :mod:`.offline`), and the JSON schema the model answers in.

Every item of the source document carries the id the note cites (facts ``F1``.., script runs
``S1``.., the suggested fix ``X1``).
"""

from __future__ import annotations

from typing import Any

from services.notes.bundle import BundleScriptRun, NoteBundle
from services.notes.generator.draft import NOTE_SCHEMA, sections_schema
from services.notes.kinds import FACT_SOURCE, KindSpec, SectionSpec, kind_spec
from services.notes.vocabulary import FIX_REF


def _run_item(ref: str, run: BundleScriptRun) -> dict[str, Any]:
    return {
        "id": ref,
        "source": "script_run",
        "template_name": run.template_name,
        "parameters": dict(run.parameters),
    }


def _source_items(
    spec: KindSpec, bundle: NoteBundle, source: str, run_refs: dict[int, str]
) -> list[dict[str, Any]]:
    if source.startswith(FACT_SOURCE):
        kind = source[len(FACT_SOURCE) :]
        return [
            {"id": ref, "source": kind, "text": fact.text}
            for ref, fact in bundle.fact_refs().items()
            if fact.kind == kind
        ]
    fix = bundle.active_fix
    if source == "problem":
        statement = bundle.problem_statement()
        return [{"source": "problem", "text": statement}] if statement else []
    if source == "fix_cause":
        cause = bundle.fix_for_cause()
        if cause is None or not (cause.summary or "").strip():
            return []
        return [{"id": FIX_REF, "source": "fix_cause", "text": cause.summary}]
    if source == "decided_fix":
        decided = bundle.decided_fix()
        if decided is None:
            return []
        return [
            {
                "id": FIX_REF,
                "source": "decided_fix",
                "title": decided.title,
                "steps": list(decided.steps),
                "decision": spec.decision_label(decided.decision),
            }
        ]
    if source == "proposed_fix":
        if fix is None or fix.decision is not None:
            return []
        return [
            {
                "id": FIX_REF,
                "source": "proposed_fix",
                "title": fix.title,
                "steps": list(fix.steps),
                "confidence": fix.confidence,
            }
        ]
    if source == "fix_state":
        if fix is None:
            return []
        item: dict[str, Any] = {
            "source": "fix_state",
            "title": fix.title,
            "decision": spec.decision_label(fix.decision),
        }
        if fix.applied:
            item = {"id": FIX_REF, **item}
        return [item]
    if source == "scripts_for_fix":
        return [_run_item(run_refs[id(run)], run) for run in bundle.runs_for_fix()]
    if source == "script_runs":
        return [_run_item(run_refs[id(run)], run) for run in bundle.script_runs]
    raise ValueError(f"unknown source {source!r}")


def section_items(spec: KindSpec, section: SectionSpec, bundle: NoteBundle) -> list[dict[str, Any]]:
    """The source items of one section: its own sources, else its fallback sources."""
    run_refs = {id(run): ref for ref, run in bundle.run_refs().items()}
    items = [i for s in section.sources for i in _source_items(spec, bundle, s, run_refs)]
    if not items:
        items = [i for s in section.fallback for i in _source_items(spec, bundle, s, run_refs)]
    return items


def source_document(spec: KindSpec, bundle: NoteBundle) -> dict[str, Any]:
    """Exactly what a note of this kind is made from, section by section."""
    return {
        "note_kind": spec.name,
        "sections": [
            {
                "title": section.title,
                "items": section_items(spec, section, bundle),
                "when_empty": section.when_empty,
            }
            for section in spec.sections
        ],
    }


def answer_schema(kind: str) -> dict[str, Any]:
    """The JSON schema of the model's answer for ``kind``: its sections, each a list of
    items (the resolution note's is :data:`.draft.NOTE_SCHEMA`)."""
    spec = kind_spec(kind)
    if spec is None:
        return NOTE_SCHEMA
    return sections_schema(spec.titles, count=str(len(spec.sections)))
