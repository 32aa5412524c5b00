"""Resolution notes: the fingerprint of what a note is made from, the prompt, validation,
citations, the offline (extractive) note and the generator that ties them together.

No Flask, no database: the caller builds a :class:`services.notes.bundle.NoteBundle` (facts,
active fix, redacted script runs) and hands it to :class:`ResolutionNoteGenerator`.

A note is made of four sections, in this order: ``Problem``, ``What we confirmed``,
``Root cause``, ``Resolution``. Each section is a list of items (a sentence, a bullet or a
numbered step), and each item cites the ids of what it rests on: facts ``F1``..,
script runs ``S1``.. and the suggested fix ``X1``. The model answers that structure as JSON
(structured outputs); the offline generator builds the same structure from exactly the
section sources below. :func:`validate_note` checks it, :func:`render_markdown` turns it into
the markdown delivered to the ticket (no citation markers), and :func:`citations` into the
stored ``citations`` list.

Section sources:

* Problem: the session's problem statement (else its title) and its ``symptom`` facts.
* What we confirmed: ``confirmed``, ``ruled_out`` and ``environment`` facts, and the script
  runs linked to the session (template name and redacted parameters).
* Root cause: ``root_cause`` facts; else the active fix's stated cause (its summary); else a
  plain statement that no cause was confirmed.
* Resolution: ``resolution`` facts, the decided fix (a decision other than ``dismissed``) and
  the scripts run for it; else a plain statement that no resolution was recorded.

Redaction: script-run parameters arrive with sensitive values already replaced by
``[REDACTED]``; ``NoteBundle.forbidden_values`` holds the original sensitive values (or other
canaries) that must never appear in a note. Everything sent to the model and everything the
offline note copies from the bundle is passed through :func:`scrub_text` first.

The package, by what each module does: :mod:`.sources` (what a note is made from, section by
section), :mod:`.fingerprint`, :mod:`.prompt` (the prompt file and the messages),
:mod:`.scrub` (redaction on the way out), :mod:`.draft` (the note's structure and its
renderings), :mod:`.validation` (format, prose, citations, grounding), :mod:`.offline` (the
extractive note) and :mod:`.note_generator` (the generator with its corrective retry). This
module re-exports their public names, and the bundle's and the vocabulary's, as the one
import callers use.
"""

from __future__ import annotations

from services.notes.bundle import (
    BundleFact,
    BundleFix,
    BundleScriptRun,
    NoteBundle,
    bundle_from_dict,
    bundle_to_dict,
)
from services.notes.generator.draft import (
    NOTE_SCHEMA,
    NoteDraft,
    NoteItem,
    citations,
    render_markdown,
)
from services.notes.generator.fingerprint import bundle_fingerprint
from services.notes.generator.kind_sources import answer_schema
from services.notes.generator.note_generator import (
    MAX_TOKENS,
    GeneratedNote,
    ResolutionNoteGenerator,
)
from services.notes.generator.offline import (
    offline_draft,
    offline_note,
)
from services.notes.generator.prompt import (
    PROMPT_FILE,
    PROMPT_VERSION,
    SYSTEM_PROMPT,
    NotePrompt,
    build_prompt,
    note_prompt,
)
from services.notes.generator.scrub import (
    MIN_FORBIDDEN_LEN,
    forbidden_values,
    scrub_any,
    scrub_text,
)
from services.notes.generator.sources import source_document
from services.notes.generator.validation import (
    NoteValidationError,
    Problem,
    bundle_text,
    parse_answer,
    specific_tokens,
    ungrounded_tokens,
    validate_note,
)
from services.notes.kinds import preview_kinds, section_titles
from services.notes.vocabulary import (
    CONFIRMED_KINDS,
    DEFAULT_MAX_CHARS,
    FIX_REF,
    GENERATOR_ANTHROPIC,
    GENERATOR_OFFLINE,
    GENERATOR_OFFLINE_FALLBACK,
    ITEM_FORMATS,
    NO_CONFIRMED_FACTS,
    NO_PROBLEM,
    NO_RESOLUTION,
    NO_ROOT_CAUSE,
    NOTE_KINDS,
    REDACTED,
    REJECTED_DECISIONS,
    SECTIONS,
)
from shared.vocabulary import FACT_KINDS

__all__ = [
    "BundleFact",
    "BundleFix",
    "BundleScriptRun",
    "CONFIRMED_KINDS",
    "DEFAULT_MAX_CHARS",
    "FACT_KINDS",
    "FIX_REF",
    "GENERATOR_ANTHROPIC",
    "GENERATOR_OFFLINE",
    "GENERATOR_OFFLINE_FALLBACK",
    "GeneratedNote",
    "ITEM_FORMATS",
    "MAX_TOKENS",
    "MIN_FORBIDDEN_LEN",
    "NOTE_KINDS",
    "NOTE_SCHEMA",
    "NO_CONFIRMED_FACTS",
    "NO_PROBLEM",
    "NO_RESOLUTION",
    "NO_ROOT_CAUSE",
    "NoteBundle",
    "NoteDraft",
    "NoteItem",
    "NotePrompt",
    "NoteValidationError",
    "PROMPT_FILE",
    "PROMPT_VERSION",
    "Problem",
    "REDACTED",
    "REJECTED_DECISIONS",
    "ResolutionNoteGenerator",
    "SECTIONS",
    "SYSTEM_PROMPT",
    "answer_schema",
    "build_prompt",
    "bundle_fingerprint",
    "bundle_from_dict",
    "bundle_text",
    "bundle_to_dict",
    "citations",
    "forbidden_values",
    "note_prompt",
    "offline_draft",
    "offline_note",
    "parse_answer",
    "preview_kinds",
    "render_markdown",
    "scrub_any",
    "scrub_text",
    "section_titles",
    "source_document",
    "specific_tokens",
    "ungrounded_tokens",
    "validate_note",
]
