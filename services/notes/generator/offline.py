"""The offline (extractive) note: the same four-section draft built from exactly the section
sources, with no model, fitted to the note's length limit."""

from __future__ import annotations

import re
from typing import Any

from services.notes.bundle import (
    BundleFact,
    BundleScriptRun,
    NoteBundle,
)
from services.notes.generator import kind_sources
from services.notes.generator.draft import (
    NoteDraft,
    NoteItem,
    render_markdown,
)
from services.notes.generator.scrub import scrub_text
from services.notes.kinds import KindSpec, SectionSpec, kind_spec
from services.notes.vocabulary import (
    DEFAULT_MAX_CHARS,
    FIX_REF,
    NO_CONFIRMED_FACTS,
    NO_PROBLEM,
    NO_RESOLUTION,
    NO_ROOT_CAUSE,
    SECTIONS,
)

# Offline note limits (per item, and items per list), so one huge fact cannot crowd out the
# rest; the whole note is then fitted to max_chars.
_OFFLINE_ITEM_CHARS = 600
_OFFLINE_MAX_BULLETS = 25


def _one_line(text: str, bundle: NoteBundle, limit: int = _OFFLINE_ITEM_CHARS) -> str:
    """Scrubbed, single-line, length-capped text that cannot start a markdown heading."""
    flat = scrub_text(" ".join(_FENCES.sub(" ", text).split()), bundle)
    if len(flat) > limit:
        flat = flat[: limit - 1].rstrip() + "…"
    return _LINE_START.sub("", flat)


_LINE_START = re.compile(r"^(?:#|\s)+")
_FENCES = re.compile(r"```+|~~~+")


def _sentence(text: str) -> str:
    return text if not text or text[-1] in ".!?…:" else f"{text}."


def _params(run: BundleScriptRun, bundle: NoteBundle) -> str:
    shown = []
    for key, value in run.parameters.items():
        if isinstance(value, list | tuple):
            value = ", ".join(str(v) for v in value)
        shown.append(f"{key} {value}")
    return _one_line("; ".join(shown), bundle, 300)


def _offline_sections(bundle: NoteBundle, bullets: int) -> dict[str, list[NoteItem]]:
    facts = bundle.facts_by_kind()

    def fact_item(fact: BundleFact, fmt: str, prefix: str = "") -> NoteItem:
        return NoteItem(
            text=prefix + _sentence(_one_line(fact.text, bundle)),
            format=fmt,
            cites=(bundle.ref_of(fact),),
        )

    def capped(items: list[NoteItem]) -> list[NoteItem]:
        items = [i for i in items if i.text.strip(" .")]
        if len(items) <= bullets:
            return items
        rest = len(items) - bullets
        return [*items[:bullets], NoteItem(text=f"… and {rest} more.", format=items[0].format)]

    run_refs = {id(run): ref for ref, run in bundle.run_refs().items()}

    problem: list[NoteItem] = []
    statement = _one_line(bundle.problem_statement(), bundle, 2 * _OFFLINE_ITEM_CHARS)
    if statement:
        problem.append(NoteItem(text=_sentence(statement)))
    symptoms = capped([fact_item(f, "bullet") for f in facts["symptom"]])
    if symptoms:
        problem.append(NoteItem(text="Reported symptoms:"))
        problem += symptoms
    if not problem:
        problem.append(NoteItem(text=NO_PROBLEM))

    confirmed = capped(
        [fact_item(f, "bullet") for f in facts["confirmed"]]
        + [fact_item(f, "bullet", "Ruled out: ") for f in facts["ruled_out"]]
        + [fact_item(f, "bullet", "Environment: ") for f in facts["environment"]]
        + [
            NoteItem(
                text=_sentence(
                    f"Ran the script “{_one_line(run.template_name, bundle, 200)}”"
                    + (f" ({_params(run, bundle)})" if run.parameters else "")
                ),
                format="bullet",
                cites=(run_refs[id(run)],),
            )
            for run in bundle.script_runs
        ]
    )
    if not confirmed:
        confirmed = [NoteItem(text=NO_CONFIRMED_FACTS)]

    cause: list[NoteItem] = [fact_item(f, "sentence") for f in facts["root_cause"]]
    cause_fix = bundle.fix_for_cause()
    if not cause and cause_fix is not None and (cause_fix.summary or "").strip():
        cause.append(
            NoteItem(
                text=_sentence(_one_line(cause_fix.summary or "", bundle, 2 * _OFFLINE_ITEM_CHARS)),
                cites=(FIX_REF,),
            )
        )
    if not cause:
        cause.append(NoteItem(text=NO_ROOT_CAUSE))
    cause = capped(cause)

    resolution: list[NoteItem] = capped([fact_item(f, "sentence") for f in facts["resolution"]])
    fix = bundle.decided_fix()
    if fix is not None:
        title = _one_line(fix.title, bundle, 200)
        if title:
            lead = "Applied the suggested fix: " if not resolution else "Suggested fix applied: "
            resolution.append(NoteItem(text=_sentence(lead + title), cites=(FIX_REF,)))
        steps = [_one_line(step, bundle) for step in fix.steps]
        resolution += capped(
            [NoteItem(text=_sentence(s), format="step", cites=(FIX_REF,)) for s in steps if s]
        )
        runs = bundle.runs_for_fix()
        if runs:
            resolution.append(NoteItem(text="Scripts run for the fix:"))
            resolution += capped(
                [
                    NoteItem(
                        text=_sentence(_one_line(run.template_name, bundle, 200)),
                        format="bullet",
                        cites=(run_refs[id(run)],),
                    )
                    for run in runs
                ]
            )
    if not resolution:
        resolution.append(NoteItem(text=NO_RESOLUTION))

    return {
        "Problem": problem,
        "What we confirmed": confirmed,
        "Root cause": cause,
        "Resolution": resolution,
    }


def _offline_item(
    spec: KindSpec, section: SectionSpec, item: dict[str, Any], bundle: NoteBundle
) -> list[NoteItem]:
    cites = (str(item["id"]),) if item.get("id") else ()
    source = str(item.get("source"))
    fmt = "bullet" if section.format == "step" else section.format
    prefix = section.prefixes.get(source, "")

    def line(text: str, limit: int = _OFFLINE_ITEM_CHARS) -> str:
        return _sentence(_one_line(text, bundle, limit))

    if source == "problem":
        return [NoteItem(text=line(str(item["text"]), 2 * _OFFLINE_ITEM_CHARS), cites=())]
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


def _kind_sections(
    spec: KindSpec, bundle: NoteBundle, bullets: int
) -> list[tuple[str, tuple[NoteItem, ...]]]:
    """The offline note of this kind: every source item copied (scrubbed, one line, capped),
    at most ``bullets`` items per list, the section's `when_empty` sentence for an empty one."""
    out: list[tuple[str, tuple[NoteItem, ...]]] = []
    for section in spec.sections:
        items: list[NoteItem] = []
        for source_item in kind_sources.section_items(spec, section, bundle):
            items += _offline_item(spec, section, source_item, bundle)
        items = [i for i in items if i.text.strip(" .")]
        if len(items) > bullets:
            rest = len(items) - bullets
            items = [*items[:bullets], NoteItem(text=f"… and {rest} more.", format=items[0].format)]
        if not items:
            items = [NoteItem(text=section.when_empty)]
        out.append((section.title, tuple(items)))
    return out


def offline_draft(bundle: NoteBundle, *, max_chars: int = DEFAULT_MAX_CHARS) -> NoteDraft:
    """A deterministic, extractive note grounded only in the section sources (no model).

    Every copied text is scrubbed of forbidden and redacted values, flattened to one line and
    capped; each item cites what it copies; lists are shortened until the note fits
    ``max_chars``. The result passes :func:`validate_note`.
    """
    bullets = _OFFLINE_MAX_BULLETS
    spec = kind_spec(bundle.kind)
    while True:
        if spec is not None:
            draft = NoteDraft(sections=tuple(_kind_sections(spec, bundle, bullets)))
        else:
            sections = _offline_sections(bundle, bullets)
            draft = NoteDraft(sections=tuple((name, tuple(sections[name])) for name in SECTIONS))
        if len(render_markdown(draft)) <= max_chars or bullets <= 1:
            break
        bullets = bullets // 2
    if len(render_markdown(draft)) > max_chars:  # only with a tiny max_chars: cut every item
        budget = max(20, (max_chars - 80) // (len(draft.sections) * 3))
        draft = NoteDraft(
            sections=tuple(
                (
                    name,
                    tuple(
                        NoteItem(_one_line(i.text, bundle, budget), i.format, i.cites)
                        for i in items[:2]
                    ),
                )
                for name, items in draft.sections
            )
        )
    return draft


def offline_note(bundle: NoteBundle, *, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """The offline note as markdown (see :func:`offline_draft`)."""
    return render_markdown(offline_draft(bundle, max_chars=max_chars))
