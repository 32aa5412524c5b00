"""One markdown note, parsed once, rendered to each ticketing system's dialect.

The note is written by an LLM, so nothing in it may become markup that runs in the target:

- ``plain``: text only (ConnectWise, Autotask, Request Tracker);
- ``servicenow``: text with ``[code]…[/code]`` neutralised (ServiceNow renders what is between
  them as HTML in journal fields);
- ``html``: markdown-it with raw HTML disabled, then an allow-list sanitiser (nh3) as a second
  wall (Zendesk, Freshservice, HaloPSA, Zammad);
- ``adf``: Atlassian Document Format for Jira comments (validated against Atlassian's JSON schema
  in the tests);
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
from markdown_it import MarkdownIt
from markdown_it.token import Token

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


def _parser() -> MarkdownIt:
    # Raw HTML off: an LLM's <script> is text, never a tag.
    return MarkdownIt("commonmark", {"html": False, "linkify": False}).enable(
        ["table", "strikethrough"]
    )


_MD = _parser()


def marker(note_id: str) -> str:
    """The marker line that identifies one note on a ticket."""
    return f"{MARKER_PREFIX} {note_id}"


def has_marker(text: str, note_id: str) -> bool:
    return marker(note_id) in text


@dataclass(frozen=True)
class ParsedNote:
    markdown: str
    tokens: list[Token]


def parse(markdown: str) -> ParsedNote:
    return ParsedNote(markdown=markdown, tokens=_MD.parse(markdown))


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
    return sanitise_html(_MD.renderer.render(note.tokens, _MD.options, {}))


# ── Atlassian Document Format ────────────────────────────────────────────────────────────────


def _adf_inline(token: Token) -> list[dict[str, Any]]:
    nodes: list[dict[str, Any]] = []
    marks: list[dict[str, Any]] = []
    for child in token.children or []:
        kind = child.type
        if kind == "strong_open":
            marks.append({"type": "strong"})
        elif kind == "em_open":
            marks.append({"type": "em"})
        elif kind == "s_open":
            marks.append({"type": "strike"})
        elif kind == "link_open":
            href = str(child.attrGet("href") or "")
            if href.lower().startswith(("http://", "https://", "mailto:")):
                marks.append({"type": "link", "attrs": {"href": href}})
            else:
                marks.append({"type": "__nolink"})
        elif kind in ("strong_close", "em_close", "s_close", "link_close"):
            wanted = {
                "strong_close": ("strong",),
                "em_close": ("em",),
                "s_close": ("strike",),
                "link_close": ("link", "__nolink"),
            }[kind]
            for i in range(len(marks) - 1, -1, -1):
                if marks[i]["type"] in wanted:
                    del marks[i]
                    break
        elif kind in ("text", "html_inline", "image"):
            text = child.content
            if text:
                nodes.append(_adf_text(text, marks))
        elif kind == "code_inline":
            if child.content:
                # In ADF the code mark combines with links only.
                code_marks = [{"type": "code"}] + [m for m in marks if m["type"] == "link"]
                nodes.append(_adf_text(child.content, code_marks))
        elif kind in ("softbreak", "hardbreak"):
            nodes.append({"type": "hardBreak"})
    return _merge_text(nodes)


def _adf_text(text: str, marks: list[dict[str, Any]]) -> dict[str, Any]:
    real = [m for m in marks if m["type"] != "__nolink"]
    # One mark of each type (nested **bold *and* bold** repeats them).
    unique: list[dict[str, Any]] = []
    for mark in real:
        if all(mark["type"] != seen["type"] for seen in unique):
            unique.append(dict(mark))
    node: dict[str, Any] = {"type": "text", "text": text}
    if unique:
        node["marks"] = unique
    return node


def _merge_text(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    merged: list[dict[str, Any]] = []
    for node in nodes:
        last = merged[-1] if merged else None
        if (
            last is not None
            and node["type"] == "text"
            and last["type"] == "text"
            and last.get("marks") == node.get("marks")
        ):
            last["text"] += node["text"]
        else:
            merged.append(node)
    return merged


def _paragraph(content: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "paragraph", "content": content} if content else {"type": "paragraph"}


class _AdfBuilder:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.pos = 0

    def blocks(self, closing: str | None, *, nested: bool = False) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while self.pos < len(self.tokens):
            token = self.tokens[self.pos]
            self.pos += 1
            kind = token.type
            if closing is not None and kind == closing:
                return out
            if kind == "paragraph_open":
                inline = self.tokens[self.pos]
                self.pos += 2  # inline, paragraph_close
                out.append(_paragraph(_adf_inline(inline)))
            elif kind == "heading_open":
                inline = self.tokens[self.pos]
                self.pos += 2
                content = _adf_inline(inline)
                if nested:
                    # Lists and quotes cannot hold headings: keep the text, in bold.
                    for child in content:
                        kinds = {m["type"] for m in child.get("marks", [])}
                        if child["type"] == "text" and not kinds & {"code", "strong"}:
                            child.setdefault("marks", []).append({"type": "strong"})
                    out.append(_paragraph(_merge_text(content)))
                else:
                    level = int(token.tag[1])
                    heading: dict[str, Any] = {"type": "heading", "attrs": {"level": level}}
                    if content:
                        heading["content"] = content
                    out.append(heading)
            elif kind in ("fence", "code_block"):
                text = token.content.rstrip("\n")
                code: dict[str, Any] = {"type": "codeBlock"}
                if text:
                    code["content"] = [{"type": "text", "text": text}]
                out.append(code)
            elif kind == "bullet_list_open":
                out.append({"type": "bulletList", "content": self.items("bullet_list_close")})
            elif kind == "ordered_list_open":
                start = int(token.attrGet("start") or 1)
                ordered: dict[str, Any] = {
                    "type": "orderedList",
                    "content": self.items("ordered_list_close"),
                }
                if start != 1:
                    ordered["attrs"] = {"order": start}
                out.append(ordered)
            elif kind == "blockquote_open":
                inner = self.blocks("blockquote_close", nested=True)
                quoted = [n for n in _flatten(inner) if n["type"] in ("paragraph", "codeBlock")]
                out.append(
                    {"type": "blockquote", "content": quoted or [_paragraph([])]}
                    if not nested
                    else {"type": "__splice", "content": quoted}
                )
            elif kind == "hr":
                out.append({"type": "rule"} if not nested else _paragraph([]))
            elif kind == "table_open":
                table = self.table()
                out.append(
                    table if not nested else {"type": "__splice", "content": table_text(table)}
                )
        return out

    def items(self, closing: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        while self.pos < len(self.tokens):
            token = self.tokens[self.pos]
            self.pos += 1
            if token.type == closing:
                break
            if token.type == "list_item_open":
                content = _splice(self.blocks("list_item_close", nested=True))
                content = [n for n in content if n["type"] != "blockquote"]
                if not content or content[0]["type"] != "paragraph":
                    content.insert(0, _paragraph([]))
                items.append({"type": "listItem", "content": content})
        if not items:
            items.append({"type": "listItem", "content": [_paragraph([])]})
        return items

    def table(self) -> dict[str, Any]:
        rows: list[dict[str, Any]] = []
        cells: list[dict[str, Any]] = []
        cell_type = "tableCell"
        while self.pos < len(self.tokens):
            token = self.tokens[self.pos]
            self.pos += 1
            kind = token.type
            if kind == "table_close":
                break
            if kind == "tr_open":
                cells = []
            elif kind == "tr_close":
                rows.append({"type": "tableRow", "content": cells or [_cell("tableCell", [])]})
            elif kind in ("th_open", "td_open"):
                cell_type = "tableHeader" if kind == "th_open" else "tableCell"
            elif kind == "inline":
                cells.append(_cell(cell_type, _adf_inline(token)))
        return {
            "type": "table",
            "content": rows or [{"type": "tableRow", "content": [_cell("tableCell", [])]}],
        }


def _cell(kind: str, content: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": kind, "content": [_paragraph(content)]}


def table_text(table: dict[str, Any]) -> list[dict[str, Any]]:
    """A table inside a list becomes one paragraph per row (ADF tables are top-level only)."""
    out: list[dict[str, Any]] = []
    for row in table["content"]:
        texts = []
        for cell in row["content"]:
            texts.append(_node_text(cell))
        out.append(_paragraph([{"type": "text", "text": " | ".join(texts)}] if any(texts) else []))
    return out


def _node_text(node: dict[str, Any]) -> str:
    if node.get("type") == "text":
        return str(node.get("text", ""))
    if node.get("type") == "hardBreak":
        return "\n"
    children = node.get("content", [])
    inline = all(child.get("type") in ("text", "hardBreak") for child in children)
    return ("" if inline else "\n").join(_node_text(child) for child in children)


def _splice(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for node in nodes:
        if node["type"] == "__splice":
            out.extend(node["content"])
        else:
            out.append(node)
    return out


def _flatten(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for node in _splice(nodes):
        if node["type"] in ("bulletList", "orderedList"):
            for item in node["content"]:
                out.extend(_flatten(item["content"]))
        else:
            out.append(node)
    return out


def to_adf(note: ParsedNote) -> dict[str, Any]:
    content = _splice(_AdfBuilder(note.tokens).blocks(None))
    return {"version": 1, "type": "doc", "content": content or [_paragraph([])]}


def adf_text(doc: dict[str, Any]) -> str:
    """All text of an ADF document (to find a marker in a comment read back)."""
    return _node_text(doc)


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
        doc["content"].append(_paragraph([{"type": "text", "text": ref}]))
        body = doc
    elif dialect == "markdown":
        body = markdown
    else:
        raise ValueError(f"unknown dialect {dialect!r}")
    return Rendered(dialect=dialect, body=body, note_id=note_id)
