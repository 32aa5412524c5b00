"""The note's structure (sections of cited items), the JSON schema the model answers in, and the
two renderings of a draft: the markdown delivered to the ticket and the stored citations."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from services.notes.bundle import NoteBundle
from services.notes.vocabulary import (
    ITEM_FORMATS,
    SECTIONS,
)


@dataclass(frozen=True)
class NoteItem:
    text: str
    format: str = "sentence"  # "sentence" | "bullet" | "step"
    cites: tuple[str, ...] = ()


@dataclass(frozen=True)
class NoteDraft:
    """A validated note: the four sections, in order, each a non-empty list of items."""

    sections: tuple[tuple[str, tuple[NoteItem, ...]], ...]

    def items(self) -> Iterable[tuple[str, NoteItem]]:
        for name, items in self.sections:
            for item in items:
                yield name, item

    def to_json(self) -> str:
        return json.dumps(
            {
                "sections": [
                    {
                        "title": name,
                        "items": [
                            {"text": i.text, "format": i.format, "cites": list(i.cites)}
                            for i in items
                        ],
                    }
                    for name, items in self.sections
                ]
            },
            ensure_ascii=False,
        )


def sections_schema(titles: Sequence[str], *, count: str) -> dict[str, Any]:
    """The JSON schema of a note's answer: exactly these sections (`count` spells how many, as
    the model reads it), in this order, each a list of items with their format and citations.
    One shape for every note kind."""
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["sections"],
        "properties": {
            "sections": {
                "type": "array",
                "description": f"exactly {count} sections: "
                + ", ".join(titles)
                + ", in this order",
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["title", "items"],
                    "properties": {
                        "title": {"type": "string", "enum": list(titles)},
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


NOTE_SCHEMA: dict[str, Any] = sections_schema(SECTIONS, count="four")


def _render_group(group: list[NoteItem]) -> str:
    fmt = group[0].format
    if fmt == "sentence":
        return " ".join(i.text for i in group)
    if fmt == "bullet":
        return "\n".join(f"- {i.text}" for i in group)
    return "\n".join(f"{n}. {i.text}" for n, i in enumerate(group, start=1))


def render_markdown(draft: NoteDraft) -> str:
    """The note as delivered: ``## Section`` headings; consecutive sentences make one
    paragraph, bullets ``- `` lines, steps ``1.`` lines; blocks apart by a blank line. No
    citation markers."""
    out: list[str] = []
    for name, items in draft.sections:
        groups: list[list[NoteItem]] = []
        for item in items:
            if groups and groups[-1][-1].format == item.format:
                groups[-1].append(item)
            else:
                groups.append([item])
        blocks = [_render_group(group) for group in groups]
        out.append(f"## {name}\n" + "\n\n".join(blocks))
    return "\n\n".join(out) + "\n"


def citations(draft: NoteDraft, bundle: NoteBundle) -> list[dict[str, Any]]:
    """One entry per sentence, bullet or step: its section, its text, the ids it cites and
    the fact ids (uuids) behind the ``F`` ones."""
    facts = bundle.fact_refs()
    return [
        {
            "section": name,
            "text": item.text,
            "cites": list(item.cites),
            "fact_ids": [facts[ref].id for ref in item.cites if ref in facts and facts[ref].id],
        }
        for name, item in draft.items()
    ]
