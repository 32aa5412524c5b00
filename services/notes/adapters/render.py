"""One markdown note, parsed once (``markdown_note.py``), rendered to each ticketing system's
dialect.

The note is written by an LLM, so nothing in it may become markup that runs in the target:

- ``plain``: text only (ConnectWise, Autotask, Request Tracker);
- ``servicenow``: text with ``[code]…[/code]`` neutralised (ServiceNow renders what is between
  them as HTML in journal fields);
- ``html``: markdown-it with raw HTML disabled, then an allow-list sanitiser (nh3) as a second
  wall (Zendesk, Freshservice, HaloPSA, Zammad);
- ``adf``: Atlassian Document Format for Jira comments (``adf.py``; validated against
  Atlassian's JSON schema in the tests);
- ``commonmark``: markdown for Redmine, with every ``<`` outside code escaped so no raw HTML
  survives a CommonMark renderer.

Every dialect ends with the delivery marker line (``RF-Ref: <note id>``) that lets an adapter
find a note it already posted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import nh3
from markdown_it.token import Token

from services.notes.adapters.adf import paragraph, to_adf
from services.notes.adapters.markdown_note import MARKDOWN, ParsedNote, parse

MARKER_PREFIX = "RF-Ref:"

_ALLOWED_TAGS = {
    "p",
    "br",
    "strong",
    "em",
    "code",
    "pre",
    "ul",
    "ol",
    "li",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "blockquote",
    "hr",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "a",
    "s",
}
_ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}}
_URL_SCHEMES = {"http", "https", "mailto"}


def marker(note_id: str) -> str:
    """The marker line that identifies one note on a ticket."""
    return f"{MARKER_PREFIX} {note_id}"


def has_marker(text: str, note_id: str) -> bool:
    return marker(note_id) in text


# ── plain text ───────────────────────────────────────────────────────────────────────────────


def _inline_text(token: Token) -> str:
    parts: list[str] = []
    for child in token.children or []:
        if child.type in ("text", "code_inline", "html_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append("\n")
        elif child.type == "image":
            parts.append(child.content or "")
    return "".join(parts)


def _plain_lines(tokens: list[Token]) -> list[str]:
    lines: list[str] = []
    list_stack: list[list[int]] = []  # [next number] for ordered, [] for bullet
    pending_prefix: str | None = None
    row: list[str] = []
    in_cell = False
    blockquote = 0

    def emit(text: str) -> None:
        nonlocal pending_prefix
        depth = max(len(list_stack) - 1, 0)
        indent = "  " * depth
        quote = "> " * blockquote
        for i, line in enumerate(text.split("\n")):
            if pending_prefix is not None and i == 0:
                lines.append(quote + indent + pending_prefix + line)
            elif list_stack:
                lines.append(quote + indent + "   " + line)
            else:
                lines.append(quote + line)
        pending_prefix = None

    for token in tokens:
        kind = token.type
        if kind == "bullet_list_open":
            list_stack.append([])
        elif kind == "ordered_list_open":
            list_stack.append([int(token.attrGet("start") or 1)])
        elif kind in ("bullet_list_close", "ordered_list_close"):
            list_stack.pop()
            if not list_stack:
                lines.append("")
        elif kind == "list_item_open":
            top = list_stack[-1]
            if top:
                pending_prefix = f"{top[0]}. "
                top[0] += 1
            else:
                pending_prefix = "- "
        elif kind == "blockquote_open":
            blockquote += 1
        elif kind == "blockquote_close":
            blockquote -= 1
        elif kind in ("th_open", "td_open"):
            in_cell = True
        elif kind in ("th_close", "td_close"):
            in_cell = False
        elif kind == "inline":
            if in_cell:
                row.append(_inline_text(token))
            else:
                emit(_inline_text(token))
        elif kind in ("paragraph_close", "heading_close") and not list_stack:
            lines.append("")
        elif kind in ("fence", "code_block"):
            emit("\n".join("    " + line for line in token.content.rstrip("\n").split("\n")))
            if not list_stack:
                lines.append("")
        elif kind == "hr":
            emit("-" * 20)
            lines.append("")
        elif kind == "tr_open":
            row = []
        elif kind == "tr_close":
            emit(" | ".join(row))
            row = []
        elif kind == "table_close":
            lines.append("")
    return lines


def to_plain(note: ParsedNote) -> str:
    lines = _plain_lines(note.tokens)
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines)


_CODE_TAG = re.compile(r"\[(\s*/?\s*code\s*)\]", re.IGNORECASE)


def neutralise_servicenow(text: str) -> str:
    """ServiceNow renders ``[code]…[/code]`` in journal fields as HTML: break every such tag
    with a zero-width space so it stays text."""
    return _CODE_TAG.sub("[\u200b\\1]", text)


# ── sanitised HTML ───────────────────────────────────────────────────────────────────────────


def sanitise_html(html: str) -> str:
    return nh3.clean(
        html,
        tags=_ALLOWED_TAGS,
        attributes=_ALLOWED_ATTRIBUTES,
        url_schemes=_URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )


def to_html(note: ParsedNote) -> str:
    return sanitise_html(MARKDOWN.renderer.render(note.tokens, MARKDOWN.options, {}))


# ── CommonMark (Redmine) ─────────────────────────────────────────────────────────────────────

_CODE_SPAN = re.compile(r"(`+)(.+?)(?<!`)\1(?!`)", re.DOTALL)


def _escape_outside_code_spans(line: str) -> str:
    out: list[str] = []
    last = 0
    for match in _CODE_SPAN.finditer(line):
        out.append(_escape_html(line[last : match.start()]))
        out.append(match.group(0))
        last = match.end()
    out.append(_escape_html(line[last:]))
    return "".join(out)


_UNSAFE_LINK = re.compile(r"\]\((?!\s*(?:https?://|mailto:))")


def _escape_html(text: str) -> str:
    # "<" starts every raw HTML tag and autolink; "](" not followed by a safe scheme would
    # start a link to javascript: or data: in a renderer less strict than ours.
    return _UNSAFE_LINK.sub("]\\(", text.replace("<", "\\<"))


def to_commonmark(note: ParsedNote) -> str:
    """The markdown itself (Redmine renders CommonMark), with raw HTML made literal: every
    ``<`` outside code blocks and code spans is backslash-escaped, and so is the ``(`` of a
    link to anything but http(s) or mailto."""
    lines = note.markdown.split("\n")
    code_lines: set[int] = set()
    for token in note.tokens:
        if token.type in ("fence", "code_block") and token.map:
            start, end = token.map
            code_lines.update(range(start, end))
    out = [
        line if i in code_lines else _escape_outside_code_spans(line)
        for i, line in enumerate(lines)
    ]
    return "\n".join(out)


# ── with the marker ──────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class Rendered:
    """The note in one dialect, with its marker; ``body`` is a string or an ADF document."""

    dialect: str
    body: Any
    note_id: str


def render(markdown: str, dialect: str, note_id: str) -> Rendered:
    note = parse(markdown)
    ref = marker(note_id)
    body: Any
    if dialect == "plain":
        body = f"{to_plain(note)}\n\n{ref}"
    elif dialect == "servicenow":
        body = f"{neutralise_servicenow(to_plain(note))}\n\n{ref}"
    elif dialect == "html":
        body = f"{to_html(note)}<p>{ref}</p>"
    elif dialect == "commonmark":
        body = f"{to_commonmark(note)}\n\n{ref}\n"
    elif dialect == "adf":
        doc = to_adf(note)
        doc["content"].append(paragraph([{"type": "text", "text": ref}]))
        body = doc
    elif dialect == "markdown":
        body = markdown
    else:
        raise ValueError(f"unknown dialect {dialect!r}")
    return Rendered(dialect=dialect, body=body, note_id=note_id)
