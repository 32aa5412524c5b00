"""One markdown note rendered to every dialect: nothing executable survives, ADF is valid
against Atlassian's schema, and the text round-trips."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import _keywords, validators
from markdown_it import MarkdownIt

from services.notes.adapters.adf import adf_text
from services.notes.adapters.markdown_note import parse
from services.notes.adapters.render import neutralise_servicenow, render
from tests.support.examples import examples

ADF_SCHEMA = json.loads(
    (Path(__file__).parents[3] / "support" / "data" / "adf-full-schema.json").read_text()
)


def _any_of(
    validator: jsonschema.protocols.Validator, any_of: Any, instance: Any, schema: Any
) -> Any:
    """``anyOf`` that stops at an alternative's first error: the ADF schema nests ``anyOf``
    over every node and mark type, and collecting each failing alternative's full error list
    makes one document take a second. The verdict is the same; when no alternative fits, the
    errors are jsonschema's own."""
    for index, subschema in enumerate(any_of):
        if next(validator.descend(instance, subschema, schema_path=index), None) is None:
            return
    yield from _keywords.anyOf(validator, any_of, instance, schema)


ADF = validators.extend(jsonschema.Draft4Validator, {"anyOf": _any_of})(ADF_SCHEMA)
NOTE_ID = "3f2b8c1e-0000-4000-8000-000000000001"

HOSTILE = [
    "<script>alert(1)</script>",
    "[code]<img src=x onerror=alert(1)>[/code]",
    "[CODE ]<svg onload=alert(1)>[/ code]",
    "<img src=x onerror=alert(1)>",
    '<a href="javascript:alert(1)">x</a>',
    "[click](javascript:alert(1))",
    "[ok](https://example.com/a?b=1)",
    "<javascript:alert(1)>",
    "&lt;script&gt;",
    "<!-- comment -->",
    "<iframe src=//evil>",
    "`<b>code</b>`",
    "**bold <u>under</u>**",
    "x" * 3000,
]

BLOCK = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\x00"),
        max_size=80,
    ),
    st.builds(lambda s: f"# {s}", st.sampled_from(HOSTILE)),
    st.builds(lambda s: f"- {s}\n  - {s}\n    1. {s}", st.sampled_from(HOSTILE)),
    st.builds(lambda s: f"| a | b |\n|---|---|\n| {s} | {s} |", st.sampled_from(HOSTILE)),
    st.builds(lambda s: f"```\n{s}\n```", st.sampled_from(HOSTILE)),
    st.builds(lambda s: f"> {s}\n> - {s}", st.sampled_from(HOSTILE)),
    st.builds(lambda s: f"1. {s}\n\n   | x |\n   |---|\n   | {s} |", st.sampled_from(HOSTILE)),
)
NOTES = st.lists(BLOCK, min_size=1, max_size=8).map("\n\n".join)


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.comments: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def handle_comment(self, data: str) -> None:
        self.comments.append(data)


SAFE_TAGS = {
    "p", "br", "strong", "em", "code", "pre", "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5",
    "h6", "blockquote", "hr", "table", "thead", "tbody", "tr", "th", "td", "a", "s",
}  # fmt: skip


def _words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z0-9]+", text.replace("\u200b", ""))


def _source_words(markdown: str) -> list[str]:
    """The words a reader sees: the text of every inline and code token, in order."""
    pieces: list[str] = []
    for token in parse(markdown).tokens:
        if token.type in ("fence", "code_block"):
            pieces.append(token.content)
        for child in token.children or []:
            if child.type in ("text", "code_inline"):
                pieces.append(child.content)
    return _words(" ".join(pieces))


def _round_trips(words: list[str], rendered_text: str) -> bool:
    """Every source word appears, in order (a dialect may add list numbers and the marker)."""
    remaining = iter(_words(rendered_text))
    return all(any(word == seen for seen in remaining) for word in words)


def _assert_safe_html(body: str) -> _Tags:
    parser = _Tags()
    parser.feed(body)
    for tag, attrs in parser.tags:
        assert tag in SAFE_TAGS, tag
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)
            assert name in ("href", "title", "start", "rel"), (tag, name)
            if name == "href":
                assert (value or "").startswith(("http://", "https://", "mailto:")), value
    assert not parser.comments
    return parser


def _check_all(markdown: str) -> None:
    words = _source_words(markdown)

    plain = render(markdown, "plain", NOTE_ID).body
    assert _round_trips(words, plain)
    assert plain.endswith(f"RF-Ref: {NOTE_ID}")

    snow = render(markdown, "servicenow", NOTE_ID).body
    assert not re.search(r"\[\s*/?\s*code\s*\]", snow, re.IGNORECASE)
    assert neutralise_servicenow(snow) == snow
    assert _round_trips(words, snow)

    page = render(markdown, "html", NOTE_ID).body
    parsed = _assert_safe_html(page)
    assert _round_trips(words, "".join(parsed.text))

    doc = render(markdown, "adf", NOTE_ID).body
    errors = sorted(ADF.iter_errors(doc), key=lambda e: list(e.absolute_path))
    assert not errors, (errors[0].message, list(errors[0].absolute_path), json.dumps(doc)[:2000])
    assert _round_trips(words, adf_text(doc))

    common = render(markdown, "commonmark", NOTE_ID).body
    # Read back the way a CommonMark renderer with raw HTML *enabled* would.
    tokens = MarkdownIt("commonmark", {"html": True}).enable("table").parse(common)
    for token in tokens:
        assert token.type != "html_block", token.content
        for child in token.children or []:
            assert child.type != "html_inline", child.content
            if child.type == "link_open":
                href = str(child.attrGet("href") or "")
                assert href.startswith(("http://", "https://", "mailto:")), href
    assert _source_words(common) == words + _words(f"RF-Ref: {NOTE_ID}")


@pytest.mark.parametrize("snippet", HOSTILE)
def test_each_hostile_snippet_is_inert_in_every_dialect(snippet: str) -> None:
    _check_all(f"## Problem\n\n{snippet}\n\n- {snippet}\n\n| h |\n|---|\n| {snippet} |")


@settings(max_examples=examples(50), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(NOTES)
def test_llm_like_markdown_renders_safely_everywhere(markdown: str) -> None:
    _check_all(markdown)


def test_a_realistic_note_keeps_its_structure() -> None:
    markdown = (
        "## Problem\nPrinter **offline** for `HR-PC-04`.\n\n## Resolution\n"
        "1. Restarted the spooler\n2. Cleared the queue\n\n| step | ok |\n|---|---|\n| 1 | yes |\n"
    )
    page = render(markdown, "html", "n").body
    assert "<h2>Problem</h2>" in page and "<strong>offline</strong>" in page
    assert "<ol>" in page and "<table>" in page
    doc: Any = render(markdown, "adf", "n").body
    kinds = [node["type"] for node in doc["content"]]
    assert kinds[:5] == ["heading", "paragraph", "heading", "orderedList", "table"]
    plain = render(markdown, "plain", "n").body
    assert "1. Restarted the spooler" in plain and "step | ok" in plain
