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
address, an absolute path). Lists, hash-table keys, attribute arguments and strings with
anything expanded in them are never touched.

Also here: :func:`normalised_tree`, the comparison that says a rendered template equals the
script it came from "up to the generated parameter block".
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import tree_sitter_powershell as tsp
from tree_sitter import Language, Node, Parser

__all__ = [
    "LiftedParameter",
    "LiftedScript",
    "lift_literals",
    "normalised_tree",
    "strip_generated_block",
]

# What the scripts engine writes around the assignments it generates (see its render).
GENERATED_BLOCK_START = "# >>> ResolutionFlow parameters (generated)"
GENERATED_BLOCK_END = "# <<< ResolutionFlow parameters"
_RESERVED_PREFIX = "rfp_"

# Nodes that only carry one expression through PowerShell's precedence levels: the same
# program has them or not depending on whether a value is a bare word, a string or a variable.
_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_EMAIL_RE = re.compile(r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME_RE = re.compile(rf"{_HOST_LABEL}(?:\.{_HOST_LABEL})*")
# A machine name as MSPs write them: upper-case, with a digit (PRN-SRV01, DC01, WS-0042).
_MACHINE_NAME_RE = re.compile(r"(?=[A-Z0-9-]*[0-9])(?=[A-Z0-9-]*[A-Z])[A-Z][A-Z0-9-]{2,14}")
_ABSOLUTE_PATH_RE = re.compile(r"(?:[A-Za-z]:[\\/]|\\\\[^\\/\s]+[\\/])[^\r\n\"*?<>|]*")
_DOMAIN_USER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,14}\\[A-Za-z0-9._-]{1,64}")
_FILE_NAME_RE = re.compile(r".*\.(?:ps1|psm1|log|txt|csv|xml|json|exe|msi|dll|evtx|zip)$", re.I)
_CAMEL_RE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")

# Command parameters whose argument is one kind of value, by lower-cased name.
_HOST_PARAMETERS = {
    "computername": "computer",
    "computer": "computer",
    "cn": "computer",
    "server": "server",
    "hostname": "computer",
    "host": "computer",
    "dnshostname": "computer",
    "smtpserver": "smtp_server",
    "domaincontroller": "domain_controller",
}
_USER_PARAMETERS = {
    "identity": "user",
    "user": "user",
    "username": "user",
    "samaccountname": "user",
    "member": "user",
    "members": "user",
    "owner": "user",
}
_UPN_PARAMETERS = {"userprincipalname": "upn", "upn": "upn"}
_EMAIL_PARAMETERS = {
    "to": "email",
    "from": "sender",
    "cc": "email",
    "emailaddress": "email",
    "primarysmtpaddress": "email",
    "mailbox": "mailbox",
}
_PATH_PARAMETERS = {
    "path": "path",
    "literalpath": "path",
    "filepath": "path",
    "destination": "destination",
    "destinationpath": "destination",
    "outfile": "output_path",
}
_IP_PARAMETERS = {"ipaddress": "ip_address", "ip": "ip_address", "nexthop": "gateway"}
_SERVICE_COMMANDS = frozenset(
    {
        "get-service",
        "start-service",
        "stop-service",
        "restart-service",
        "set-service",
        "suspend-service",
        "resume-service",
    }
)
_SERVICE_PARAMETERS = frozenset({"name", "servicename"})
_PRINTER_PARAMETERS = frozenset({"printername", "printer"})
# Numbers that are counts of things in a query, not thresholds a ticket chose.
_NOT_A_THRESHOLD = frozenset({0, 1})
_STRING_VARIABLE_KINDS = (
    ("computer", "hostname"),
    ("server", "hostname"),
    ("host", "hostname"),
    ("printer", "printer"),
    ("service", "service"),
    ("upn", "email"),
    ("email", "email"),
    ("mail", "email"),
    ("user", "user"),
    ("path", "path"),
    ("folder", "path"),
    ("ip", "ip"),
)


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


# ── Literal values ─────────────────────────────────────────────────────────


def literal_value(node: Node) -> str | int | None:
    """The value of a literal node that nothing is expanded in, or None."""
    if node.type == "string_literal" and node.child_count == 1:
        inner = node.children[0]
        raw = _text(inner)
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
        raw = _text(node)
        if any(c in raw for c in "$`'\"(){}@;,|&<>") or not raw:
            return None
        return raw
    if node.type == "integer_literal" and node.child_count == 1:
        inner = node.children[0]
        if inner.type == "decimal_integer_literal" and _text(inner).isdigit():
            return int(_text(inner))
    return None


def _only_child_chain(node: Node, stop: Node) -> bool:
    """Every node from ``node`` up to (not including) ``stop`` is the only child of its parent,
    so ``node`` is the whole of ``stop``'s value and not part of a list or an expression."""
    current = node
    while current.parent is not None and current.parent != stop:
        if current.parent.child_count != 1:
            return False
        current = current.parent
    return current.parent == stop


def _outermost_single(node: Node, limit_types: frozenset[str]) -> Node:
    current = node
    while (
        current.parent is not None
        and current.parent.child_count == 1
        and current.parent.type not in limit_types
    ):
        current = current.parent
    return current


# ── Context: what the tree says a literal is ───────────────────────────────


@dataclass(frozen=True)
class _Context:
    command: str | None = None
    parameter: str | None = None
    variable: str | None = None
    compared_to: str | None = None


def _command_argument_context(node: Node) -> _Context | None:
    top = _outermost_single(node, frozenset({"command_elements"}))
    elements = top.parent
    if elements is None or elements.type != "command_elements":
        return None
    command = elements.parent
    if command is None or command.type != "command":
        return None
    name_node = next((c for c in command.children if c.type == "command_name"), None)
    command_name = _text(name_node).lower() if name_node is not None else None
    siblings = [c for c in elements.children if c.type != "command_argument_sep"]
    index = next(i for i, c in enumerate(siblings) if c == top)
    parameter = None
    if index > 0 and siblings[index - 1].type == "command_parameter":
        raw = _text(siblings[index - 1])
        if not raw.endswith(":"):
            parameter = raw.lstrip("-\u2013\u2014").lower()
    elif index > 0 and siblings[index - 1].type != "command_parameter":
        # A second positional argument: which parameter it binds to is the command's business.
        return _Context(command=command_name, parameter="#positional")
    return _Context(command=command_name, parameter=parameter)


def _assignment_context(node: Node) -> _Context | None:
    top = _outermost_single(node, frozenset({"assignment_expression"}))
    assignment = top.parent
    if assignment is None or assignment.type != "assignment_expression":
        return None
    if assignment.children[-1] != top:
        return None
    operator = next((c for c in assignment.children if c.type == "assignement_operator"), None)
    if operator is None or _text(operator) != "=":
        return None
    left = assignment.children[0]
    variable = _text(left).strip()
    if not re.fullmatch(r"\$[A-Za-z_][A-Za-z0-9_]*", variable):
        return None
    name = variable[1:]
    if name.lower().startswith(_RESERVED_PREFIX):
        return None
    return _Context(variable=name)


def _comparison_context(node: Node) -> _Context | None:
    top = _outermost_single(node, frozenset({"comparison_expression"}))
    comparison = top.parent
    if comparison is None or comparison.type != "comparison_expression":
        return None
    if comparison.children[-1] != top or len(comparison.children) != 3:
        return None
    operator = _text(comparison.children[1]).lower()
    if operator not in ("-gt", "-ge", "-lt", "-le", "-eq", "-ne"):
        return None
    left = _text(comparison.children[0])
    member = re.search(r"\.([A-Za-z_][A-Za-z0-9_]*)\s*$", left)
    subject = member.group(1) if member else left.lstrip("$")
    return _Context(compared_to=subject)


def _context(node: Node) -> _Context | None:
    for finder in (_command_argument_context, _assignment_context, _comparison_context):
        found = finder(node)
        if found is not None:
            return found
    return None


# ── Classification ─────────────────────────────────────────────────────────


def snake_case(name: str) -> str:
    words = _CAMEL_RE.sub("_", name).replace("-", "_").lower()
    words = re.sub(r"[^a-z0-9_]+", "_", words).strip("_")
    if not words or not (words[0].isalpha() or words[0] == "_"):
        words = f"value_{words}".strip("_")
    return words[:60]


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _is_hostname(value: str) -> bool:
    return bool(_HOSTNAME_RE.fullmatch(value)) and not value.replace(".", "").isdigit()


@dataclass(frozen=True)
class _Classified:
    kind: str
    type: str
    key: str


def _classify_string(value: str, ctx: _Context) -> _Classified | None:
    if not value or len(value) > 260 or "\n" in value:
        return None
    parameter = ctx.parameter or ""
    command = ctx.command or ""
    by_value = _classify_by_value(value)
    if parameter in _UPN_PARAMETERS and _EMAIL_RE.fullmatch(value):
        return _Classified("user", "email", _UPN_PARAMETERS[parameter])
    if parameter in _EMAIL_PARAMETERS and _EMAIL_RE.fullmatch(value):
        return _Classified("email", "email", _EMAIL_PARAMETERS[parameter])
    if parameter in _HOST_PARAMETERS:
        if _is_ip(value):
            return _Classified("ip", "ip", _HOST_PARAMETERS[parameter])
        if _is_hostname(value):
            return _Classified("computer", "hostname", _HOST_PARAMETERS[parameter])
        return None
    if parameter in _IP_PARAMETERS and _is_ip(value):
        return _Classified("ip", "ip", _IP_PARAMETERS[parameter])
    if parameter in _USER_PARAMETERS and re.fullmatch(r"[^\s\\/]+(?:\\[^\s\\/]+)?", value):
        if _EMAIL_RE.fullmatch(value):
            return _Classified("user", "email", "upn")
        return _Classified("user", "string", _USER_PARAMETERS[parameter])
    if parameter in _PATH_PARAMETERS and _ABSOLUTE_PATH_RE.fullmatch(value):
        return _Classified("path", "path", _PATH_PARAMETERS[parameter])
    if command in _SERVICE_COMMANDS and parameter in _SERVICE_PARAMETERS:
        if re.fullmatch(r"[A-Za-z0-9_.-]{1,80}", value):
            return _Classified("service", "string", "service")
        return None
    if parameter in _PRINTER_PARAMETERS or (
        "printer" in command and parameter == "name" and "-" in command
    ):
        return _Classified("printer", "string", "printer")
    if ctx.variable is not None:
        lowered = ctx.variable.lower()
        for marker, kind in _STRING_VARIABLE_KINDS:
            if marker in lowered:
                found = _classify_variable(value, kind, snake_case(ctx.variable))
                if found is not None:
                    return found
    return by_value


def _classify_variable(value: str, kind: str, key: str) -> _Classified | None:
    if kind == "hostname":
        if _is_ip(value):
            return _Classified("ip", "ip", key)
        return _Classified("computer", "hostname", key) if _is_hostname(value) else None
    if kind == "email":
        return _Classified("email", "email", key) if _EMAIL_RE.fullmatch(value) else None
    if kind == "ip":
        return _Classified("ip", "ip", key) if _is_ip(value) else None
    if kind == "path":
        return _Classified("path", "path", key) if _ABSOLUTE_PATH_RE.fullmatch(value) else None
    if kind == "user":
        if _EMAIL_RE.fullmatch(value):
            return _Classified("user", "email", key)
        if re.fullmatch(r"[^\s\\/]+(?:\\[^\s\\/]+)?", value):
            return _Classified("user", "string", key)
        return None
    if re.fullmatch(r"[A-Za-z0-9 _.-]{1,80}", value):
        return _Classified(kind, "string", key)
    return None


def _classify_by_value(value: str) -> _Classified | None:
    """Values that are one thing wherever they stand."""
    if _EMAIL_RE.fullmatch(value):
        return _Classified("email", "email", "email")
    if _is_ip(value) and ("." in value or ":" in value):
        return _Classified("ip", "ip", "ip_address")
    if _ABSOLUTE_PATH_RE.fullmatch(value) and not value.lower().startswith(
        ("c:\\windows\\", "c:\\program files")
    ):
        return _Classified("path", "path", "path")
    if _DOMAIN_USER_RE.fullmatch(value) and value.split("\\", 1)[0].isupper():
        return _Classified("user", "string", "user")
    if _MACHINE_NAME_RE.fullmatch(value) and not _FILE_NAME_RE.match(value):
        return _Classified("computer", "hostname", "computer")
    return None


def _classify_number(value: int, ctx: _Context) -> _Classified | None:
    if value in _NOT_A_THRESHOLD or value > 2**31:
        return None
    if ctx.compared_to:
        return _Classified("threshold", "integer", f"{snake_case(ctx.compared_to)}_threshold")
    if ctx.parameter and ctx.parameter != "#positional":
        return _Classified("threshold", "integer", snake_case(ctx.parameter))
    if ctx.variable:
        return _Classified("threshold", "integer", snake_case(ctx.variable))
    return None


_LABELS = {
    "computer": ("Computer", "The machine the script acts on (a host name or IP address)."),
    "user": ("User", "The account the script acts on."),
    "email": ("E-mail address", "An e-mail address the script uses."),
    "ip": ("IP address", "An IP address the script uses."),
    "path": ("Path", "A file or folder path the script uses."),
    "service": ("Service", "The Windows service the script acts on (its service name)."),
    "printer": ("Printer", "The printer the script acts on (its name as Windows shows it)."),
    "threshold": ("Threshold", "A number the script compares against or passes on."),
}


def _label(key: str, kind: str, value: Any, ctx: _Context) -> tuple[str, str]:
    base_label, base_help = _LABELS[kind]
    words = key.replace("_", " ").strip()
    label = words[:1].upper() + words[1:] if words else base_label
    where = ""
    if ctx.parameter and ctx.parameter != "#positional" and ctx.command:
        where = f" Passed to {ctx.command} -{ctx.parameter}."
    elif ctx.variable:
        where = f" Assigned to ${ctx.variable}."
    elif ctx.compared_to:
        where = f" Compared against {ctx.compared_to}."
    shown = value if isinstance(value, int) else f"'{value}'"
    return label, f"{base_help}{where} The fix used {shown}."


# ── Lifting ────────────────────────────────────────────────────────────────

_LITERAL_TYPES = frozenset({"string_literal", "generic_token", "integer_literal"})


@dataclass
class _Lift:
    start: int
    end: int
    key: str


def lift_literals(script: str) -> LiftedScript:
    """The script with its ticket-specific literals replaced by ``{{key}}`` placeholders, and
    one parameter per distinct value (its default is the value)."""
    source = script.encode("utf-8")
    tree = _parser().parse(source)
    by_value: dict[tuple[str, str], LiftedParameter] = {}
    keys: set[str] = set()
    lifts: list[_Lift] = []
    for node in _walk(tree.root_node):
        if node.type not in _LITERAL_TYPES or _inside_excluded(node):
            continue
        value = literal_value(node)
        if value is None:
            continue
        ctx = _context(node)
        if ctx is None:
            if isinstance(value, int):
                continue
            ctx = _Context()
        classified = (
            _classify_number(value, ctx) if isinstance(value, int) else _classify_string(value, ctx)
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
            label, help_text = _label(key, classified.kind, value, ctx)
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
    if key.lower().startswith(_RESERVED_PREFIX):
        key = f"p_{key}"
    candidate, n = key, 2
    while candidate.lower() in taken:
        candidate = f"{key}_{n}"
        n += 1
    return candidate


# ── Comparing a rendering with the script it came from ─────────────────────


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
    tree = _parser().parse(block.encode("utf-8"))
    for node in _walk(tree.root_node):
        if node.type != "assignment_expression" or len(node.children) < 3:
            continue
        match = re.fullmatch(r"\$rfp_([A-Za-z0-9_]+)", _text(node.children[0]).strip())
        if match:
            assignments[match.group(1)] = _text(node.children[-1]).strip()
    return rendered[:begin] + rest, assignments


def _variable_key(node: Node) -> str | None:
    match = re.fullmatch(r"\$\{?rfp_([A-Za-z0-9_]+)\}?", _text(node))
    return match.group(1) if match else None


def _assigned_value(literal: str) -> str | int | None:
    tree = _parser().parse(literal.encode("utf-8"))
    for node in _walk(tree.root_node):
        if node.type in _LITERAL_TYPES:
            return literal_value(node)
    return None


def normalised_tree(script: str, variables: dict[str, str] | None = None) -> tuple[Any, ...]:
    """The script's syntax tree as nested tuples, with each literal (and each generated
    ``$rfp_key`` variable, resolved through ``variables``) reduced to its value and each node
    that only passes one child through dropped. Two scripts with equal trees run the same
    commands with the same values, whether a value is written as a literal or held in a
    generated variable."""
    values = {k: _assigned_value(v) for k, v in (variables or {}).items()}
    tree = _parser().parse(script.encode("utf-8"))

    def build(node: Node) -> Any:
        key = _variable_key(node) if node.type == "variable" else None
        if key is not None and key in values and values[key] is not None:
            return ("value", str(values[key]))
        if node.type in _LITERAL_TYPES:
            value = literal_value(node)
            if value is not None:
                return ("value", str(value))
        children = [c for c in node.children if c.type != "command_argument_sep"]
        if len(children) == 1:
            return build(children[0])
        if not children:
            return (node.type, _text(node))
        return (node.type, *(build(c) for c in children))

    return tuple(build(tree.root_node))
