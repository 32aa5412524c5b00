"""A parsed note as an Atlassian Document Format document, for Jira comments.

ADF is stricter than markdown: lists and quotes cannot hold headings, tables or rules, marks
appear once each, and the code mark combines with links only. What ADF cannot hold keeps its
text (a heading in a list becomes a bold paragraph, a table in a list one paragraph per row).
Links are kept for http(s) and mailto only. The tests validate every output against
Atlassian's JSON schema.
"""

from __future__ import annotations

from typing import Any

from markdown_it.token import Token

from services.notes.adapters.markdown_note import ParsedNote


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


def paragraph(content: list[dict[str, Any]]) -> dict[str, Any]:
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
                out.append(paragraph(_adf_inline(inline)))
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
                    out.append(paragraph(_merge_text(content)))
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
                    {"type": "blockquote", "content": quoted or [paragraph([])]}
                    if not nested
                    else {"type": "__splice", "content": quoted}
                )
            elif kind == "hr":
                out.append({"type": "rule"} if not nested else paragraph([]))
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
                    content.insert(0, paragraph([]))
                items.append({"type": "listItem", "content": content})
        if not items:
            items.append({"type": "listItem", "content": [paragraph([])]})
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
    return {"type": kind, "content": [paragraph(content)]}


def table_text(table: dict[str, Any]) -> list[dict[str, Any]]:
    """A table inside a list becomes one paragraph per row (ADF tables are top-level only)."""
    out: list[dict[str, Any]] = []
    for row in table["content"]:
        texts = []
        for cell in row["content"]:
            texts.append(_node_text(cell))
        out.append(paragraph([{"type": "text", "text": " | ".join(texts)}] if any(texts) else []))
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
    return {"version": 1, "type": "doc", "content": content or [paragraph([])]}


def adf_text(doc: dict[str, Any]) -> str:
    """All text of an ADF document (to find a marker in a comment read back)."""
    return _node_text(doc)
