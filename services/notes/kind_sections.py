"""What a note of a data-defined kind (services/notes/kinds.py) is made from, section by
section: the source document the prompt carries and the fingerprint hashes, the offline
(extractive) note's items, and the JSON schema the model answers in.

Every item of the source document carries the id the note cites (facts ``F1``.., script runs
``S1``.., the suggested fix ``X1``); the offline note copies each item, scrubbed, flattened and
capped like the resolution note's, citing it.
"""

from __future__ import annotations

from typing import Any

from services.notes.generator import (
    FIX_REF,
    ITEM_FORMATS,
    BundleScriptRun,
    NoteBundle,
    NoteItem,
    _one_line,
    _params,
    _sentence,
)
from services.notes.kinds import FACT_SOURCE, KindSpec, SectionSpec

# Per item and items per list, as for the resolution note's offline note.
_ITEM_CHARS = 600


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


def _offline_item(
    spec: KindSpec, section: SectionSpec, item: dict[str, Any], bundle: NoteBundle
) -> list[NoteItem]:
    cites = (str(item["id"]),) if item.get("id") else ()
    source = str(item.get("source"))
    fmt = "bullet" if section.format == "step" else section.format
    prefix = section.prefixes.get(source, "")

    def line(text: str, limit: int = _ITEM_CHARS) -> str:
        return _sentence(_one_line(text, bundle, limit))

    if source == "problem":
        return [NoteItem(text=line(str(item["text"]), 2 * _ITEM_CHARS), cites=())]
    if source == "script_run":
        name = _one_line(str(item["template_name"]), bundle, 200)
        run = BundleScriptRun(
            template_name=name, parameters=dict(item["parameters"]), created_at=""
        )
        params = _params(run, bundle) if run.parameters else ""
        text = f"Ran the script “{name}”" + (f" ({params})" if params else "")
        return [NoteItem(text=_sentence(text), format="bullet", cites=cites)]
    if source in ("decided_fix", "proposed_fix"):
        title = _one_line(str(item["title"]), bundle, 200)
        lead = "Applied the fix: " if source == "decided_fix" else "Proposed fix: "
        out = [NoteItem(text=_sentence(lead + title), cites=cites)] if title else []
        steps = [_one_line(str(s), bundle) for s in item.get("steps") or []]
        out += [NoteItem(text=_sentence(s), format="step", cites=cites) for s in steps if s]
        return out
    if source == "fix_state":
        title = _one_line(str(item["title"]), bundle, 200)
        text = f"Suggested fix “{title}”: {item['decision']}"
        return [NoteItem(text=_sentence(text), format=fmt, cites=cites)]
    return [NoteItem(text=prefix + line(str(item.get("text", ""))), format=fmt, cites=cites)]


def offline_sections(
    spec: KindSpec, bundle: NoteBundle, bullets: int
) -> list[tuple[str, tuple[NoteItem, ...]]]:
    """The offline note of this kind: every source item copied (scrubbed, one line, capped),
    at most ``bullets`` items per list, the section's `when_empty` sentence for an empty one."""
    out: list[tuple[str, tuple[NoteItem, ...]]] = []
    for section in spec.sections:
        items: list[NoteItem] = []
        for source_item in section_items(spec, section, bundle):
            items += _offline_item(spec, section, source_item, bundle)
        items = [i for i in items if i.text.strip(" .")]
        if len(items) > bullets:
            rest = len(items) - bullets
            items = [*items[:bullets], NoteItem(text=f"… and {rest} more.", format=items[0].format)]
        if not items:
            items = [NoteItem(text=section.when_empty)]
        out.append((section.title, tuple(items)))
    return out


def answer_schema(spec: KindSpec) -> dict[str, Any]:
    """The JSON schema of the model's answer: the kind's sections, each a list of items."""
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["sections"],
        "properties": {
            "sections": {
                "type": "array",
                "description": f"exactly {len(spec.sections)} sections: "
                + ", ".join(spec.titles)
                + ", in this order",
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["title", "items"],
                    "properties": {
                        "title": {"type": "string", "enum": list(spec.titles)},
                        "items": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["text", "format", "cites"],
                                "properties": {
                                    "text": {"type": "string"},
                                    "format": {"type": "string", "enum": list(ITEM_FORMATS)},
                                    "cites": {"type": "array", "items": {"type": "string"}},
                                },
                            },
                        },
                    },
                },
            }
        },
    }
