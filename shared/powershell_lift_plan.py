"""Where a script's literals stand, and lifting a chosen set of them into parameters.

:func:`shared.powershell_literals.lift_literals` decides on its own which literals to lift.
This module lets someone else choose (the LLM's proposal, once checked) while keeping the
tree as the only authority on what a literal is:

* :func:`literal_sites`: every literal on the syntax tree whose value nothing is expanded in,
  outside lists, attributes, type names, ``param()`` blocks and hash-table keys (the places
  the lifter never touches), with the command parameter or variable it is bound to and
  whether that name says it holds a secret;
* :func:`deterministic_sites`: which of those sites the deterministic lift replaced, by
  which of its parameters (aligned on the lifted body, so the lifter stays the one place
  that decides what is ticket-specific offline);
* :func:`lift_sites`: the script with a chosen set of sites replaced by ``{{key}}``
  placeholders, everything else byte for byte as written.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import tree_sitter_powershell as tsp
from tree_sitter import Language, Node, Parser

from shared.powershell_literals import LiftedParameter, LiftedScript, literal_value

__all__ = [
    "LiteralSite",
    "deterministic_sites",
    "is_sensitive_name",
    "lift_sites",
    "literal_sites",
    "script_with_secrets_withheld",
]

_LITERAL_TYPES = frozenset({"string_literal", "generic_token", "integer_literal"})
_EXCLUDING_TYPES = frozenset({"attribute", "type_literal", "param_block"})
# Names whose values are withheld from any prompt (the pilot's prompt rule, on the tree).
_SENSITIVE_NAME_RE = re.compile(
    r"pass(word|wd|phrase)?|secret|token|api[_-]?key|credential|private[_-]?key|"
    r"connection[_-]?string|\bpin\b|otp|mfa|securestring|plaintext",
    re.IGNORECASE,
)
_VARIABLE_RE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_:]*)\}?")


@dataclass(frozen=True)
class LiteralSite:
    """One literal of the script: its byte span, value, source text and what binds it."""

    start: int
    end: int
    value: str | int
    text: str
    #: The command parameter (``ComputerName``) or variable (``server``) it is the value of.
    bound_to: str | None
    #: Bound to a name that says secret (password, token, ...), or an argument of a command
    #: that makes secure strings: never lifted, never shown to an LLM.
    sensitive: bool


@functools.cache
def _parser() -> Parser:
    return Parser(Language(tsp.language()))


def _text(node: Node) -> str:
    return (node.text or b"").decode("utf-8", "replace")


def _walk(node: Node) -> Iterator[Node]:
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(current.children))


def is_sensitive_name(name: str | None) -> bool:
    return bool(name) and _SENSITIVE_NAME_RE.search(name or "") is not None


def _excluded(node: Node) -> bool:
    current = node.parent
    while current is not None:
        if current.type == "array_literal_expression" and current.child_count > 1:
            return True
        if current.type in _EXCLUDING_TYPES:
            return True
        if current.type == "hash_literal_body":
            entry = node
            while entry.parent is not None and entry.parent != current:
                entry = entry.parent
            key = entry.children[0] if entry.children else None
            return key is not None and key.start_byte <= node.start_byte < key.end_byte
        current = current.parent
    return False


def _binding(node: Node) -> tuple[str | None, str | None]:
    """(the name the literal is bound to, the command it is an argument of)."""
    current = node
    while current.parent is not None and current.parent.child_count == 1:
        current = current.parent
    parent = current.parent
    if parent is not None and parent.type == "command_elements":
        command = parent.parent
        name_node = (
            next((c for c in command.children if c.type == "command_name"), None)
            if command is not None
            else None
        )
        command_name = _text(name_node) if name_node is not None else None
        siblings = [c for c in parent.children if c.type != "command_argument_sep"]
        index = siblings.index(current)
        if index > 0 and siblings[index - 1].type == "command_parameter":
            return _text(siblings[index - 1]).lstrip("-\u2013\u2014").rstrip(":"), command_name
        return None, command_name
    if (
        parent is not None
        and parent.type == "assignment_expression"
        and parent.children[-1] == current
    ):
        match = _VARIABLE_RE.fullmatch(_text(parent.children[0]).strip())
        if match:
            return match.group(1), None
    return None, None


def literal_sites(script: str) -> list[LiteralSite]:
    """Every literal of the script a template could take as a parameter, in source order."""
    source = script.encode("utf-8")
    tree = _parser().parse(source)
    sites: list[LiteralSite] = []
    for node in _walk(tree.root_node):
        if node.type not in _LITERAL_TYPES or _excluded(node):
            continue
        value = literal_value(node)
        if value is None or value == "":
            continue
        bound_to, command = _binding(node)
        sensitive = is_sensitive_name(bound_to) or (
            command is not None and "securestring" in command.lower()
        )
        sites.append(
            LiteralSite(
                start=node.start_byte,
                end=node.end_byte,
                value=value,
                text=source[node.start_byte : node.end_byte].decode("utf-8", "replace"),
                bound_to=bound_to,
                sensitive=sensitive,
            )
        )
    secrets = {site.value for site in sites if site.sensitive}
    sites = [
        site if site.sensitive or site.value not in secrets else _withheld(site)
        for site in sorted(sites, key=lambda site: site.start)
    ]
    return sites


def _withheld(site: LiteralSite) -> LiteralSite:
    return LiteralSite(site.start, site.end, site.value, site.text, site.bound_to, True)


def deterministic_sites(
    script: str, lifted: LiftedScript, sites: Sequence[LiteralSite]
) -> dict[int, LiftedParameter] | None:
    """For each site the deterministic lift replaced (by start byte), its parameter; None
    when the lifted body does not align with the script (then nothing can be re-chosen)."""
    by_key = {p.key: p for p in lifted.parameters}
    if not by_key:
        return {}
    source = script.encode("utf-8")
    body = lifted.body.encode("utf-8")
    placeholder = re.compile(
        rb"\{\{(" + b"|".join(re.escape(k.encode()) for k in by_key) + rb")\}\}"
    )
    starts = {site.start: site for site in sites}
    found: dict[int, LiftedParameter] = {}
    cursor = 0  # in the script
    previous = 0  # in the body
    for match in placeholder.finditer(body):
        segment = body[previous : match.start()]
        if source[cursor : cursor + len(segment)] != segment:
            return None
        start = cursor + len(segment)
        site = starts.get(start)
        if site is None:
            return None
        found[start] = by_key[match.group(1).decode()]
        cursor = site.end
        previous = match.end()
    if source[cursor:] != body[previous:]:
        return None
    return found


def lift_sites(
    script: str, chosen: Mapping[int, LiftedParameter], sites: Sequence[LiteralSite]
) -> LiftedScript:
    """The script with each chosen site (by start byte) replaced by its parameter's
    placeholder; the parameters in order of first use."""
    source = script.encode("utf-8")
    out = bytearray()
    cursor = 0
    parameters: dict[str, LiftedParameter] = {}
    for site in sites:
        parameter = chosen.get(site.start)
        if parameter is None or site.start < cursor:
            continue
        out += source[cursor : site.start]
        out += b"{{" + parameter.key.encode() + b"}}"
        cursor = site.end
        parameters.setdefault(parameter.key, parameter)
    out += source[cursor:]
    return LiftedScript(body=out.decode("utf-8"), parameters=tuple(parameters.values()))


def script_with_secrets_withheld(script: str, sites: Sequence[LiteralSite], marker: str) -> str:
    """The script as an LLM may see it: every sensitive site's literal replaced by
    ``marker`` (quoted, so the script still reads as PowerShell)."""
    source = script.encode("utf-8")
    out = bytearray()
    cursor = 0
    for site in sites:
        if not site.sensitive or site.start < cursor:
            continue
        out += source[cursor : site.start] + f"'{marker}'".encode()
        cursor = site.end
    out += source[cursor:]
    text = out.decode("utf-8")
    # The same secret written again where the tree cannot see it (inside a longer string).
    for secret in {str(site.value) for site in sites if site.sensitive}:
        if len(secret) >= 4:
            text = text.replace(secret, marker)
    return text
