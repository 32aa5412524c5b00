"""Ticket-specific literals of a PowerShell script, found on its syntax tree
(tree-sitter-powershell), and lifted into template parameters.

A fix written for one ticket names that ticket's machine, user, mailbox, printer or threshold
in literals. Lifting replaces each such literal by a ``{{key}}`` placeholder and describes it as
a typed parameter whose default is the literal's value, so the template renders back to the
same script for the same ticket and to the next ticket's script for the next one. Everything
else in the script is left byte for byte as it was.

Deterministic and offline: a literal is lifted only where the tree says what it is — the
argument of a command parameter (``-ComputerName PRN-SRV01``), the right-hand side of an
assignment to a named variable (``$server = 'PRN-SRV01'``), or a number compared against
(``-gt 30``) — or where the value itself can only be one thing (an e-mail address, an IP
address, an absolute path); ``powershell_literal_kinds`` says which. Lists, hash-table keys,
attribute arguments and strings with anything expanded in them are never touched.

``powershell_generated.normalised_tree`` is the comparison that says a rendered template equals
the script it came from "up to the generated parameter block".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from tree_sitter import Node

from shared.powershell_generated import RESERVED_PREFIX
from shared.powershell_literal_kinds import (
    Context,
    classify_number,
    classify_string,
    context,
    describe,
)
from shared.powershell_tree import LITERAL_TYPES, literal_value, parser, walk

__all__ = ["LiftedParameter", "LiftedScript", "lift_literals"]

_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


@dataclass(frozen=True)
class LiftedParameter:
    key: str
    label: str
    type: str
    default: Any
    help: str
    #: What was recognised: computer, user, email, ip, path, service, printer, threshold.
    kind: str

    def as_schema(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "label": self.label,
            "type": self.type,
            "required": True,
            "default": self.default,
            "help": self.help,
        }


@dataclass(frozen=True)
class LiftedScript:
    body: str
    parameters: tuple[LiftedParameter, ...] = field(default_factory=tuple)

    @property
    def parameters_schema(self) -> dict[str, Any]:
        return {"parameters": [p.as_schema() for p in self.parameters]}

    @property
    def defaults(self) -> dict[str, Any]:
        return {p.key: p.default for p in self.parameters}


@dataclass
class _Lift:
    start: int
    end: int
    key: str


def lift_literals(script: str) -> LiftedScript:
    """The script with its ticket-specific literals replaced by ``{{key}}`` placeholders, and
    one parameter per distinct value (its default is the value)."""
    source = script.encode("utf-8")
    tree = parser().parse(source)
    by_value: dict[tuple[str, str], LiftedParameter] = {}
    keys: set[str] = set()
    lifts: list[_Lift] = []
    for node in walk(tree.root_node):
        if node.type not in LITERAL_TYPES or _inside_excluded(node):
            continue
        value = literal_value(node)
        if value is None:
            continue
        ctx = context(node)
        if ctx is None:
            if isinstance(value, int):
                continue
            ctx = Context()
        classified = (
            classify_number(value, ctx) if isinstance(value, int) else classify_string(value, ctx)
        )
        if classified is None:
            continue
        identity = (
            classified.type,
            str(value) if classified.type == "path" else str(value).lower(),
        )
        parameter = by_value.get(identity)
        if parameter is None:
            key = _free_key(classified.key, keys)
            label, help_text = describe(key, classified.kind, value, ctx)
            parameter = LiftedParameter(
                key=key,
                label=label,
                type=classified.type,
                default=value,
                help=help_text,
                kind=classified.kind,
            )
            by_value[identity] = parameter
            keys.add(key.lower())
        lifts.append(_Lift(node.start_byte, node.end_byte, parameter.key))
    lifts.sort(key=lambda lift: lift.start)
    out = bytearray()
    cursor = 0
    for lift in lifts:
        if lift.start < cursor:  # pragma: no cover - literal nodes never nest
            continue
        out += source[cursor : lift.start]
        out += b"{{" + lift.key.encode() + b"}}"
        cursor = lift.end
    out += source[cursor:]
    return LiftedScript(body=out.decode("utf-8"), parameters=tuple(by_value.values()))


def _inside_excluded(node: Node) -> bool:
    """Attribute arguments, type literals and hash-table keys are part of the script's shape; an
    item of a list is one of several values a template would take as one."""
    current: Node | None = node.parent
    while current is not None:
        if current.type == "array_literal_expression" and current.child_count > 1:
            return True
        if current.type in ("attribute", "type_literal", "param_block", "hash_literal_body"):
            if current.type == "hash_literal_body":
                return _is_hash_key(node, current)
            return True
        current = current.parent
    return False


def _is_hash_key(node: Node, body: Node) -> bool:
    entry = node
    while entry.parent is not None and entry.parent != body:
        entry = entry.parent
    key = entry.children[0] if entry.children else None
    return key is not None and key.start_byte <= node.start_byte < key.end_byte


def _free_key(base: str, taken: set[str]) -> str:
    key = base if _KEY_RE.fullmatch(base) else "value"
    if key.lower().startswith(RESERVED_PREFIX):
        key = f"p_{key}"
    candidate, n = key, 2
    while candidate.lower() in taken:
        candidate = f"{key}_{n}"
        n += 1
    return candidate
