"""The note prompt: the system prompt read once from its text file (with a version that feeds
every fingerprint), the user message built from the scrubbed section sources, and the
corrective message sent after a rejected answer."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from services.notes.bundle import NoteBundle
from services.notes.generator.scrub import scrub_any
from services.notes.generator.sources import source_document
from services.notes.generator.validation import Problem
from services.notes.kinds import generalisation_version, kind_spec
from services.notes.vocabulary import (
    REDACTED,
    SECTIONS,
)

PROMPT_FILE = Path(__file__).with_name("note_prompt.txt")

# -- prompt file -----------------------------------------------------------------------------


@dataclass(frozen=True)
class NotePrompt:
    """The system prompt, read once from :data:`PROMPT_FILE`. ``version`` is the file's
    declared ``prompt-version`` plus a hash of its text, so any edit to the prompt changes
    every note fingerprint (and no stored note is reused across prompts)."""

    text: str
    version: str


@cache
def note_prompt() -> NotePrompt:
    raw = PROMPT_FILE.read_text(encoding="utf-8")
    header, _, body = raw.partition("\n")
    key, _, declared = header.partition(":")
    if key.strip() != "prompt-version" or not declared.strip():
        raise RuntimeError(f"{PROMPT_FILE.name} must start with 'prompt-version: NAME'")
    text = body.strip() + "\n"
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
    return NotePrompt(text=text, version=f"{declared.strip()}+{digest}")


PROMPT_VERSION = note_prompt().version
SYSTEM_PROMPT = note_prompt().text


def prompt_version(kind: str) -> str:
    """The version a kind's notes are fingerprinted with: its prompt (and, for a generalised
    kind, the generalisation rules), so an edit to either is never served an older note."""
    spec = kind_spec(kind)
    if spec is None:
        return note_prompt().version
    if spec.generalised:
        return f"{spec.prompt.version}/{generalisation_version()}"
    return spec.prompt.version


def system_prompt(kind: str) -> str:
    spec = kind_spec(kind)
    return note_prompt().text if spec is None else spec.prompt.text


def build_prompt(bundle: NoteBundle) -> tuple[str, list[dict[str, Any]]]:
    """``(system, messages)`` for the Messages API.

    The system prompt is constant (from :data:`PROMPT_FILE`); the user message carries the
    section sources as JSON, each fact, script run and the fix with its short id, every string
    scrubbed of forbidden values first. Timestamps and database ids are not sent.
    """
    document = scrub_any(source_document(bundle), bundle)
    body = json.dumps(document, indent=2, ensure_ascii=False, default=str)
    spec = kind_spec(bundle.kind)
    what = "resolution note" if spec is None else spec.label.lower()
    user = (
        f"Write the {what} for this troubleshooting session. The session data is "
        "between the <session> tags, grouped by the section that may use it.\n\n"
        f"<session>\n{body}\n</session>\n\n"
        "Answer with the JSON object only."
    )
    return system_prompt(bundle.kind), [{"role": "user", "content": user}]


def _correction_message(
    problems: list[Problem], stop_reason: str | None, titles: tuple[str, ...] = SECTIONS
) -> str:
    lines = ["Your note cannot be used as written. Problems:"]
    lines += [f"- {problem.message}" for problem in problems]
    if stop_reason == "max_tokens":
        lines.append("- the answer was cut off at the length limit; write a shorter note")
    lines.append("")
    lines.append(
        f"Write the corrected note now, as the JSON object: exactly the {len(titles)} sections "
        + ", ".join(f"'{s}'" for s in titles)
        + ", in that order, each with at least one item of plain prose, citing only the ids "
        f"in the session data, stating only values the session data holds, and {REDACTED} in "
        "place of any redacted value."
    )
    return "\n".join(lines)
