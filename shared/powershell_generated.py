"""What the scripts engine writes around the assignments it generates (see its render), and
the comparison that says a rendered template equals the script it came from "up to the
generated parameter block"."""

from __future__ import annotations

import re
from typing import Any

from tree_sitter import Node

from shared.powershell_tree import LITERAL_TYPES, literal_value, node_text, parser, walk

GENERATED_BLOCK_START = "# >>> ResolutionFlow parameters (generated)"
GENERATED_BLOCK_END = "# <<< ResolutionFlow parameters"
# The prefix of every generated variable (``$rfp_computer``).
RESERVED_PREFIX = "rfp_"


def strip_generated_block(rendered: str) -> tuple[str, dict[str, str]]:
    """The rendered script without the engine's generated assignments, and each generated
    variable's literal text by key (``{"computer": "'PRN-SRV01'"}``)."""
    begin = rendered.find(GENERATED_BLOCK_START)
    if begin < 0:
        return rendered, {}
    finish = rendered.find(GENERATED_BLOCK_END, begin)
    if finish < 0:
        return rendered, {}
    block = rendered[begin + len(GENERATED_BLOCK_START) : finish]
    rest = rendered[finish + len(GENERATED_BLOCK_END) :]
    # The engine ends the block with its marker line and one blank line.
    for newline in ("\r\n", "\n", "\r"):
        if rest.startswith(newline * 2):
            rest = rest[2 * len(newline) :]
            break
    assignments: dict[str, str] = {}
    tree = parser().parse(block.encode("utf-8"))
    for node in walk(tree.root_node):
        if node.type != "assignment_expression" or len(node.children) < 3:
            continue
        match = re.fullmatch(r"\$rfp_([A-Za-z0-9_]+)", node_text(node.children[0]).strip())
        if match:
            assignments[match.group(1)] = node_text(node.children[-1]).strip()
    return rendered[:begin] + rest, assignments


def _variable_key(node: Node) -> str | None:
    match = re.fullmatch(r"\$\{?rfp_([A-Za-z0-9_]+)\}?", node_text(node))
    return match.group(1) if match else None


def _assigned_value(literal: str) -> str | int | None:
    tree = parser().parse(literal.encode("utf-8"))
    for node in walk(tree.root_node):
        if node.type in LITERAL_TYPES:
            return literal_value(node)
    return None


def normalised_tree(script: str, variables: dict[str, str] | None = None) -> tuple[Any, ...]:
    """The script's syntax tree as nested tuples, with each literal (and each generated
    ``$rfp_key`` variable, resolved through ``variables``) reduced to its value and each node
    that only passes one child through dropped. Two scripts with equal trees run the same
    commands with the same values, whether a value is written as a literal or held in a
    generated variable."""
    values = {k: _assigned_value(v) for k, v in (variables or {}).items()}
    tree = parser().parse(script.encode("utf-8"))

    def build(node: Node) -> Any:
        key = _variable_key(node) if node.type == "variable" else None
        if key is not None and key in values and values[key] is not None:
            return ("value", str(values[key]))
        if node.type in LITERAL_TYPES:
            value = literal_value(node)
            if value is not None:
                return ("value", str(value))
        children = [c for c in node.children if c.type != "command_argument_sep"]
        # Nodes that only carry one expression through PowerShell's precedence levels: the
        # same program has them or not depending on whether a value is a bare word, a string
        # or a variable.
        if len(children) == 1:
            return build(children[0])
        if not children:
            return (node.type, node_text(node))
        return (node.type, *(build(c) for c in children))

    return tuple(build(tree.root_node))
