"""A static check of PowerShell on its syntax tree (tree-sitter-powershell), in the spirit of
PSScriptAnalyzer's rules: each finding has a rule id, a severity, a line and a short why.

It warns a person before a script does harm; it is not a sandbox and promises nothing about a
script it finds nothing in. Rules are one table (``RULES``) and one checker per command or
construct, so a new rule is a new row.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import tree_sitter_powershell as tsp
from tree_sitter import Language, Node, Parser

__all__ = ["RULES", "Finding", "Rule", "check_script", "errors_of", "format_finding"]

SEVERITIES = ("error", "warning", "information")


@dataclass(frozen=True)
class Rule:
    id: str
    name: str
    severity: str
    why: str


RULES: dict[str, Rule] = {
    rule.id: rule
    for rule in (
        Rule(
            "RF1001",
            "destructive-command",
            "warning",
            "deletes or disables something that cannot be undone by running the script again",
        ),
        Rule("RF1002", "wipes-disk", "error", "erases a volume or disk: every file on it is gone"),
        Rule(
            "RF1003",
            "registry-delete",
            "warning",
            "deletes registry keys or values; export them first (reg export) to undo",
        ),
        Rule(
            "RF1004",
            "shuts-down",
            "warning",
            "restarts or shuts the machine down: the user loses unsaved work",
        ),
        Rule(
            "RF1005",
            "execution-policy-unrestricted",
            "warning",
            "lowers the execution policy for every later script, not just this one",
        ),
        Rule(
            "RF2001",
            "invoke-expression",
            "warning",
            "runs a string as code: whatever the string holds runs (AvoidUsingInvokeExpression)",
        ),
        Rule(
            "RF2002",
            "downloaded-code-run",
            "error",
            "runs code fetched from the network without saving, reading or signing it",
        ),
        Rule(
            "RF3001",
            "plaintext-secret-literal",
            "error",
            "a literal secret in the script text ends up in logs (event 4104) and RMM history",
        ),
        Rule(
            "RF3002",
            "password-in-literal",
            "warning",
            "a variable or parameter named like a secret holds literal text: the script text "
            "carries the secret (AvoidUsingPlainTextForPassword)",
        ),
        Rule("RF4001", "defender-disabled", "error", "turns off Microsoft Defender protection"),
        Rule(
            "RF4002",
            "defender-exclusion",
            "warning",
            "excludes paths, processes or extensions from Defender scanning",
        ),
        Rule("RF4003", "firewall-disabled", "error", "turns the Windows firewall off"),
    )
}


@dataclass(frozen=True)
class Finding:
    rule: str
    name: str
    severity: str
    line: int
    column: int
    why: str
    excerpt: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_ALIASES = {
    "iex": "invoke-expression",
    "iwr": "invoke-webrequest",
    "irm": "invoke-restmethod",
    "curl": "invoke-webrequest",
    "wget": "invoke-webrequest",
    "rm": "remove-item",
    "ri": "remove-item",
    "del": "remove-item",
    "erase": "remove-item",
    "rd": "remove-item",
    "rmdir": "remove-item",
    "rp": "remove-itemproperty",
}
_DOWNLOADERS = frozenset({"invoke-webrequest", "invoke-restmethod", "start-bitstransfer"})
_DOWNLOAD_MEMBERS_RE = re.compile(r"\.\s*download(?:string|data|file)\s*\(", re.IGNORECASE)
_SECRET_NAME_RE = re.compile(
    r"(?:pass(?:word|wd|phrase)?|pwd|secret|api_?key|token|psk|pre_shared_key)", re.IGNORECASE
)
_REGISTRY_RE = re.compile(r"^['\"]?(?:HK(?:LM|CU|CR|U|CC)|HKEY_[A-Z_]+|Registry::)", re.I)
_FALSE_RE = re.compile(r"^(?:\$false|false|0)$", re.IGNORECASE)
_TRUE_RE = re.compile(r"^(?:\$true|true|1)?$", re.IGNORECASE)


@functools.cache
def _parser() -> Parser:
    return Parser(Language(tsp.language()))


def _walk(node: Node) -> Iterator[Node]:
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(current.children))


def _text(node: Node | None) -> str:
    return (node.text or b"").decode("utf-8", "replace") if node is not None else ""


@dataclass
class _Command:
    node: Node
    name: str
    #: parameter name (lower-case, no dash) -> its argument node, or None for a switch
    params: dict[str, Node | None]
    positional: list[Node]

    def arg(self, name: str) -> str | None:
        if name not in self.params:
            return None
        return _text(self.params[name]).strip()

    def has(self, *names: str) -> bool:
        return any(name in self.params for name in names)


def _command(node: Node) -> _Command | None:
    name_node = next((c for c in node.children if c.type == "command_name"), None)
    if name_node is None:
        return None
    name = _text(name_node).lower()
    name = _ALIASES.get(name, name)
    params: dict[str, Node | None] = {}
    positional: list[Node] = []
    elements = next((c for c in node.children if c.type == "command_elements"), None)
    if elements is not None:
        items = [c for c in elements.children if c.type != "command_argument_sep"]
        index = 0
        while index < len(items):
            item = items[index]
            if item.type == "command_parameter":
                pname = _text(item).lstrip("-\u2013\u2014").rstrip(":").lower()
                following = items[index + 1] if index + 1 < len(items) else None
                colon = _text(item).endswith(":") or (
                    following is not None and _separated_by_colon(item, following)
                )
                if (
                    following is not None
                    and following.type != "command_parameter"
                    and (colon or _takes_value(name, pname))
                ):
                    params[pname] = following
                    index += 2
                    continue
                params[pname] = None
            else:
                positional.append(item)
            index += 1
    return _Command(node, name, params, positional)


def _separated_by_colon(left: Node, right: Node) -> bool:
    source = (left.parent.text or b"") if left.parent is not None else b""
    start = left.end_byte - (left.parent.start_byte if left.parent is not None else 0)
    end = right.start_byte - (left.parent.start_byte if left.parent is not None else 0)
    return source[start:end].strip() == b":"


# Switch parameters the rules read, which never take the next element as their value.
_SWITCHES = frozenset({"recurse", "force", "asplaintext", "confirm", "whatif", "full"})


def _takes_value(command: str, parameter: str) -> bool:
    return parameter not in _SWITCHES


def _is_literal_string(node: Node | None) -> bool:
    """A quoted string with nothing expanded in it."""
    if node is None:
        return False
    text = _text(node).strip()
    if not text or text[0] not in "'\"\u2018\u2019\u201c\u201d":
        return False
    nodes = list(_walk(node))
    if any(n.type in ("variable", "sub_expression", "braced_variable") for n in nodes):
        return False
    return any(n.type == "string_literal" for n in nodes)


Checker = Callable[[_Command], list[tuple[str, Node]]]


def _remove_item(cmd: _Command) -> list[tuple[str, Node]]:
    path = (
        cmd.arg("path")
        or cmd.arg("literalpath")
        or (_text(cmd.positional[0]) if cmd.positional else "")
    )
    if _REGISTRY_RE.match(path.strip()):
        return [("RF1003", cmd.node)]
    if cmd.has("recurse"):
        return [("RF1001", cmd.node)]
    return []


def _always(rule: str) -> Checker:
    return lambda cmd: [(rule, cmd.node)]


def _execution_policy(cmd: _Command) -> list[tuple[str, Node]]:
    policy = cmd.arg("executionpolicy") or " ".join(_text(p) for p in cmd.positional)
    return [("RF1005", cmd.node)] if "unrestricted" in policy.lower() else []


def _invoke_expression(cmd: _Command) -> list[tuple[str, Node]]:
    scope = cmd.node.parent if cmd.node.parent is not None else cmd.node
    if _downloads(scope):
        return [("RF2002", cmd.node)]
    return [("RF2001", cmd.node)]


def _downloads(node: Node) -> bool:
    if _DOWNLOAD_MEMBERS_RE.search(_text(node)):
        return True
    for inner in _walk(node):
        if inner.type == "command":
            parsed = _command(inner)
            if parsed is not None and parsed.name in _DOWNLOADERS:
                return True
    return False


def _secure_string(cmd: _Command) -> list[tuple[str, Node]]:
    if not cmd.has("asplaintext"):
        return []
    value = cmd.params.get("string") or (cmd.positional[0] if cmd.positional else None)
    return [("RF3001", cmd.node)] if _is_literal_string(value) else []


def _secret_parameters(cmd: _Command) -> list[tuple[str, Node]]:
    return [
        ("RF3002", value)
        for name, value in cmd.params.items()
        if value is not None and _SECRET_NAME_RE.search(name) and _is_literal_string(value)
    ]


def _mp_preference(cmd: _Command) -> list[tuple[str, Node]]:
    found: list[tuple[str, Node]] = []
    for name, value in cmd.params.items():
        if name.startswith("disable") and _TRUE_RE.match(_text(value).strip()):
            found.append(("RF4001", cmd.node))
        elif name.startswith("exclusion"):
            found.append(("RF4002", cmd.node))
    return found[:1]


def _firewall(cmd: _Command) -> list[tuple[str, Node]]:
    enabled = cmd.arg("enabled")
    return [("RF4003", cmd.node)] if enabled is not None and _FALSE_RE.match(enabled) else []


def _netsh(cmd: _Command) -> list[tuple[str, Node]]:
    words = " ".join(_text(p).lower() for p in cmd.positional)
    if "advfirewall" in words and re.search(r"\bstate\s+off\b", words):
        return [("RF4003", cmd.node)]
    return []


def _reg_exe(cmd: _Command) -> list[tuple[str, Node]]:
    first = _text(cmd.positional[0]).lower() if cmd.positional else ""
    return [("RF1003", cmd.node)] if first == "delete" else []


COMMAND_CHECKS: dict[str, list[Checker]] = {
    "remove-item": [_remove_item],
    "remove-itemproperty": [_always("RF1003")],
    "format-volume": [_always("RF1002")],
    "clear-disk": [_always("RF1002")],
    "remove-aduser": [_always("RF1001")],
    "disable-adaccount": [_always("RF1001")],
    "stop-computer": [_always("RF1004")],
    "restart-computer": [_always("RF1004")],
    "set-executionpolicy": [_execution_policy],
    "invoke-expression": [_invoke_expression],
    "convertto-securestring": [_secure_string],
    "set-mppreference": [_mp_preference],
    "add-mppreference": [_mp_preference],
    "set-netfirewallprofile": [_firewall],
    "netsh": [_netsh],
    "netsh.exe": [_netsh],
    "reg": [_reg_exe],
    "reg.exe": [_reg_exe],
}


def _assignment_findings(node: Node) -> list[tuple[str, Node]]:
    left = next((c for c in node.children if c.type == "left_assignment_expression"), None)
    right = node.children[-1] if node.children else None
    if left is None or right is None:
        return []
    name = _text(left).strip()
    if not name.startswith("$") or not _SECRET_NAME_RE.search(name):
        return []
    return [("RF3002", node)] if _is_literal_string(right) and _only_string(right) else []


def _only_string(node: Node) -> bool:
    """The right-hand side is one string literal, not an expression that uses one."""
    return not any(n.type in ("command", "invokation_expression") for n in _walk(node))


def _script_block_create(node: Node) -> list[tuple[str, Node]]:
    text = _text(node)
    if "scriptblock" in text.lower() and "::create" in text.lower() and _downloads(node):
        return [("RF2002", node)]
    return []


def check_script(script: str) -> list[Finding]:
    """Every finding in ``script``, in source order, one per rule and line."""
    tree = _parser().parse(script.encode("utf-8"))
    lines = script.splitlines()
    raw: list[tuple[str, Node]] = []
    for node in _walk(tree.root_node):
        if node.type == "command":
            cmd = _command(node)
            if cmd is None:
                continue
            for checker in COMMAND_CHECKS.get(cmd.name, ()):
                raw.extend(checker(cmd))
            raw.extend(_secret_parameters(cmd))
        elif node.type == "assignment_expression":
            raw.extend(_assignment_findings(node))
        elif (
            node.type == "pipeline"
            and node.parent is not None
            and (node.parent.type == "statement_list")
        ):
            raw.extend(_script_block_create(node))
    findings: dict[tuple[str, int], Finding] = {}
    for rule_id, node in raw:
        rule = RULES[rule_id]
        line = node.start_point[0] + 1
        excerpt = lines[line - 1].strip()[:160] if line - 1 < len(lines) else ""
        findings.setdefault(
            (rule_id, line),
            Finding(
                rule=rule.id,
                name=rule.name,
                severity=rule.severity,
                line=line,
                column=node.start_point[1] + 1,
                why=rule.why,
                excerpt=excerpt,
            ),
        )
    return sorted(findings.values(), key=lambda f: (f.line, f.column, f.rule))


def errors_of(
    findings: list[Finding], acknowledged: frozenset[str] | set[str] = frozenset()
) -> list[Finding]:
    """The error-severity findings not acknowledged by rule id."""
    return [f for f in findings if f.severity == "error" and f.rule not in acknowledged]


def format_finding(finding: Finding) -> str:
    return f"{finding.rule} {finding.name} ({finding.severity}, line {finding.line}): {finding.why}"
