"""The note kinds besides the resolution note: the knowledge-base article (``kb_article``) and the
escalation handoff (``escalation``).

Each kind is data (``note_kinds.yaml`` and one prompt file per kind, beside this module): its
sections in order, the sources each section draws on, and what a section says when the session
holds nothing for it. The generator package builds what the shared note machinery needs from
a :class:`KindSpec`: the source document and the answer's schema
(:mod:`services.notes.generator.kind_sources`) and the offline note
(:mod:`services.notes.generator.offline`); validation, rendering, citations and the generator
are the resolution note's own, given the kind's section titles.

A generalised kind (the KB article) is made from a generalised bundle
(:func:`generalised_bundle`): customer-identifying details replaced by placeholders before
anything reads it, the originals kept as ``withheld`` values no note may bring back.

No Flask, no database.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from services.notes.generalise import find_identifiers
from services.notes.generalise import rules as generalise_rules
from services.notes.vocabulary import NOTE_KINDS, SECTIONS

if TYPE_CHECKING:
    from services.notes.bundle import NoteBundle

KINDS_FILE = Path(__file__).with_name("note_kinds.yaml")
SOURCE_NAMES = frozenset(
    {
        "problem",
        "fix_cause",
        "decided_fix",
        "proposed_fix",
        "fix_state",
        "scripts_for_fix",
        "script_runs",
    }
)
FACT_SOURCE = "facts:"
ITEM_FORMATS = ("sentence", "bullet", "step")


@dataclass(frozen=True)
class KindPrompt:
    """A kind's system prompt. ``version`` is the file's ``prompt-version`` plus a hash of its
    text and of the kind's definition, so an edit to either changes every fingerprint."""

    text: str
    version: str


@dataclass(frozen=True)
class SectionSpec:
    title: str
    sources: tuple[str, ...]
    fallback: tuple[str, ...]
    format: str
    when_empty: str
    prefixes: dict[str, str]


@dataclass(frozen=True)
class KindSpec:
    name: str
    label: str
    prompt: KindPrompt
    # The session status this kind is written for ("resolved", "active"), or None for any.
    session_status: str | None
    generalised: bool
    keepable: bool
    batch_on_resolve: bool
    sections: tuple[SectionSpec, ...]
    decision_labels: dict[str, str]

    def decision_label(self, decision: str | None) -> str:
        return self.decision_labels.get(decision or "pending", decision or "not decided yet")

    @property
    def titles(self) -> tuple[str, ...]:
        return tuple(s.title for s in self.sections)

    def fact_kinds(self) -> tuple[str, ...]:
        """The fact kinds some section draws on (the evaluation's coverage counts them)."""
        kinds: list[str] = []
        for section in self.sections:
            for source in (*section.sources, *section.fallback):
                if source.startswith(FACT_SOURCE):
                    kinds.append(source[len(FACT_SOURCE) :])
        return tuple(dict.fromkeys(kinds))


def _check_source(kind: str, source: str) -> str:
    if source in SOURCE_NAMES or (
        source.startswith(FACT_SOURCE) and len(source) > len(FACT_SOURCE)
    ):
        return source
    raise RuntimeError(f"{KINDS_FILE.name}: kind {kind!r} names an unknown source {source!r}")


def _read_prompt(path: Path, definition: dict[str, Any]) -> KindPrompt:
    raw = path.read_text(encoding="utf-8")
    header, _, body = raw.partition("\n")
    key, _, declared = header.partition(":")
    if key.strip() != "prompt-version" or not declared.strip():
        raise RuntimeError(f"{path.name} must start with 'prompt-version: NAME'")
    text = body.strip() + "\n"
    spec_text = yaml.safe_dump(definition, sort_keys=True)
    digest = hashlib.sha256((text + spec_text).encode("utf-8")).hexdigest()[:12]
    return KindPrompt(text=text, version=f"{declared.strip()}+{digest}")


@cache
def kind_specs() -> dict[str, KindSpec]:
    """Every kind of :data:`KINDS_FILE`, in file order."""
    raw = KINDS_FILE.read_text(encoding="utf-8")
    data: dict[str, Any] = yaml.safe_load(raw)
    specs: dict[str, KindSpec] = {}
    labels = {str(k): str(v) for k, v in (data.get("decision_labels") or {}).items()}
    for name, definition in (data.get("kinds") or {}).items():
        sections = []
        for section in definition["sections"]:
            fmt = str(section.get("format") or "sentence")
            if fmt not in ITEM_FORMATS:
                raise RuntimeError(f"{KINDS_FILE.name}: {name}: unknown format {fmt!r}")
            sections.append(
                SectionSpec(
                    title=str(section["title"]),
                    sources=tuple(_check_source(name, s) for s in section.get("sources") or ()),
                    fallback=tuple(_check_source(name, s) for s in section.get("fallback") or ()),
                    format=fmt,
                    when_empty=str(section["when_empty"]),
                    prefixes={str(k): str(v) for k, v in (section.get("prefixes") or {}).items()},
                )
            )
        specs[str(name)] = KindSpec(
            name=str(name),
            label=str(definition["label"]),
            prompt=_read_prompt(
                KINDS_FILE.with_name(str(definition["prompt"])), {**definition, "labels": labels}
            ),
            session_status=definition.get("session_status"),
            generalised=bool(definition.get("generalised")),
            keepable=bool(definition.get("keepable")),
            batch_on_resolve=bool(definition.get("batch_on_resolve")),
            sections=tuple(sections),
            decision_labels=labels,
        )
    return specs


def kind_spec(name: str) -> KindSpec | None:
    return kind_specs().get(name)


def generalised_bundle(bundle: NoteBundle, *, ticket_ref: str | None = None) -> NoteBundle:
    """``bundle`` with its customer-identifying details replaced by placeholders everywhere a
    note could read them (title, problem, facts, the fix, script-run parameters), and the
    original values added to ``withheld``. Template names are the library's, not the
    customer's, and stay."""
    fix = bundle.active_fix
    texts = [bundle.title or "", bundle.problem or "", *(f.text for f in bundle.facts)]
    if fix is not None:
        texts += [fix.title, fix.summary or "", *fix.steps, fix.script or ""]
    found = find_identifiers(
        texts,
        parameters=[run.parameters for run in bundle.script_runs],
        tickets=[ticket_ref],
    )
    if not found.identifiers:
        return bundle
    apply = found.apply
    return replace(
        bundle,
        title=apply(bundle.title) if bundle.title else bundle.title,
        problem=apply(bundle.problem) if bundle.problem else bundle.problem,
        facts=tuple(replace(f, text=apply(f.text)) for f in bundle.facts),
        active_fix=None
        if fix is None
        else replace(
            fix,
            title=apply(fix.title),
            summary=apply(fix.summary) if fix.summary else fix.summary,
            steps=tuple(apply(step) for step in fix.steps),
            script=apply(fix.script) if fix.script else fix.script,
        ),
        script_runs=tuple(
            replace(run, parameters=found.apply_any(dict(run.parameters)))
            for run in bundle.script_runs
        ),
        withheld=bundle.withheld | found.values,
    )


def prepared_bundle(bundle: NoteBundle, *, ticket_ref: str | None = None) -> NoteBundle:
    """The bundle a note of ``bundle.kind`` is made from: generalised for a generalised kind,
    as it is otherwise."""
    spec = kind_spec(bundle.kind)
    if spec is None or not spec.generalised:
        return bundle
    return generalised_bundle(bundle, ticket_ref=ticket_ref)


def generalisation_version() -> str:
    return generalise_rules().version


def preview_kinds() -> tuple[str, ...]:
    """Every kind a preview can ask for: the resolution note, then the data-defined kinds."""
    return (*NOTE_KINDS, *kind_specs())


def section_titles(kind: str) -> tuple[str, ...]:
    spec = kind_spec(kind)
    return SECTIONS if spec is None else spec.titles
