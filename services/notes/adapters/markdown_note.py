"""The note's markdown, parsed once (markdown-it, CommonMark with tables and strikethrough,
raw HTML off) for every dialect to render from."""

from __future__ import annotations

from dataclasses import dataclass

from markdown_it import MarkdownIt
from markdown_it.token import Token


def _parser() -> MarkdownIt:
    # Raw HTML off: an LLM's <script> is text, never a tag.
    return MarkdownIt("commonmark", {"html": False, "linkify": False}).enable(
        ["table", "strikethrough"]
    )


MARKDOWN = _parser()


@dataclass(frozen=True)
class ParsedNote:
    markdown: str
    tokens: list[Token]


def parse(markdown: str) -> ParsedNote:
    return ParsedNote(markdown=markdown, tokens=MARKDOWN.parse(markdown))
