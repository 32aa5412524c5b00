"""PowerShell's syntax tree (tree-sitter-powershell): one cached parser, and the literal
values the lifting and the comparison read off it."""

from __future__ import annotations

import functools
from collections.abc import Iterator

import tree_sitter_powershell as tsp
from tree_sitter import Language, Node, Parser

# The node types a literal value stands in.
LITERAL_TYPES = frozenset({"string_literal", "generic_token", "integer_literal"})


@functools.cache
def parser() -> Parser:
    return Parser(Language(tsp.language()))


def node_text(node: Node) -> str:
    return (node.text or b"").decode("utf-8", "replace")


def walk(node: Node) -> Iterator[Node]:
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(current.children))


def literal_value(node: Node) -> str | int | None:
    """The value of a literal node that nothing is expanded in, or None."""
    if node.type == "string_literal" and node.child_count == 1:
        inner = node.children[0]
        raw = node_text(inner)
        if inner.type == "verbatim_string_characters" and len(raw) >= 2 and raw[0] == raw[-1]:
            if raw[0] != "'":
                return None
            return raw[1:-1].replace("''", "'")
        if (
            inner.type == "expandable_string_literal"
            and inner.child_count == 0
            and len(raw) >= 2
            and raw[0] == raw[-1] == '"'
        ):
            content = raw[1:-1]
            # A backtick escape or a `$` could mean something: leave such strings alone.
            if "`" in content or "$" in content or '"' in content:
                return None
            return content
        return None
    if node.type == "generic_token":
        raw = node_text(node)
        if any(c in raw for c in "$`'\"(){}@;,|&<>") or not raw:
            return None
        return raw
    if node.type == "integer_literal" and node.child_count == 1:
        inner = node.children[0]
        if inner.type == "decimal_integer_literal" and node_text(inner).isdigit():
            return int(node_text(inner))
    return None


def outermost_single(node: Node, limit_types: frozenset[str]) -> Node:
    current = node
    while (
        current.parent is not None
        and current.parent.child_count == 1
        and current.parent.type not in limit_types
    ):
        current = current.parent
    return current
