"""What a literal in a PowerShell script is (a computer, a user, an e-mail address, an IP
address, a path, a service, a printer, a threshold), from where it stands on the syntax tree —
the argument of a command parameter, the right-hand side of an assignment to a named variable,
a number compared against — or from a value that can only be one thing."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from tree_sitter import Node

from shared.powershell_generated import RESERVED_PREFIX
from shared.powershell_tree import node_text, outermost_single

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


# ── Context: what the tree says a literal is ───────────────────────────────


@dataclass(frozen=True)
class Context:
    command: str | None = None
    parameter: str | None = None
    variable: str | None = None
    compared_to: str | None = None


def _command_argument_context(node: Node) -> Context | None:
    top = outermost_single(node, frozenset({"command_elements"}))
    elements = top.parent
    if elements is None or elements.type != "command_elements":
        return None
    command = elements.parent
    if command is None or command.type != "command":
        return None
    name_node = next((c for c in command.children if c.type == "command_name"), None)
    command_name = node_text(name_node).lower() if name_node is not None else None
    siblings = [c for c in elements.children if c.type != "command_argument_sep"]
    index = next(i for i, c in enumerate(siblings) if c == top)
    parameter = None
    if index > 0 and siblings[index - 1].type == "command_parameter":
        raw = node_text(siblings[index - 1])
        if not raw.endswith(":"):
            parameter = raw.lstrip("-\u2013\u2014").lower()
    elif index > 0 and siblings[index - 1].type != "command_parameter":
        # A second positional argument: which parameter it binds to is the command's business.
        return Context(command=command_name, parameter="#positional")
    return Context(command=command_name, parameter=parameter)


def _assignment_context(node: Node) -> Context | None:
    top = outermost_single(node, frozenset({"assignment_expression"}))
    assignment = top.parent
    if assignment is None or assignment.type != "assignment_expression":
        return None
    if assignment.children[-1] != top:
        return None
    operator = next((c for c in assignment.children if c.type == "assignement_operator"), None)
    if operator is None or node_text(operator) != "=":
        return None
    left = assignment.children[0]
    variable = node_text(left).strip()
    if not re.fullmatch(r"\$[A-Za-z_][A-Za-z0-9_]*", variable):
        return None
    name = variable[1:]
    if name.lower().startswith(RESERVED_PREFIX):
        return None
    return Context(variable=name)


def _comparison_context(node: Node) -> Context | None:
    top = outermost_single(node, frozenset({"comparison_expression"}))
    comparison = top.parent
    if comparison is None or comparison.type != "comparison_expression":
        return None
    if comparison.children[-1] != top or len(comparison.children) != 3:
        return None
    operator = node_text(comparison.children[1]).lower()
    if operator not in ("-gt", "-ge", "-lt", "-le", "-eq", "-ne"):
        return None
    left = node_text(comparison.children[0])
    member = re.search(r"\.([A-Za-z_][A-Za-z0-9_]*)\s*$", left)
    subject = member.group(1) if member else left.lstrip("$")
    return Context(compared_to=subject)


def context(node: Node) -> Context | None:
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
class Classified:
    kind: str
    type: str
    key: str


def classify_string(value: str, ctx: Context) -> Classified | None:
    if not value or len(value) > 260 or "\n" in value:
        return None
    parameter = ctx.parameter or ""
    command = ctx.command or ""
    by_value = _classify_by_value(value)
    if parameter in _UPN_PARAMETERS and _EMAIL_RE.fullmatch(value):
        return Classified("user", "email", _UPN_PARAMETERS[parameter])
    if parameter in _EMAIL_PARAMETERS and _EMAIL_RE.fullmatch(value):
        return Classified("email", "email", _EMAIL_PARAMETERS[parameter])
    if parameter in _HOST_PARAMETERS:
        if _is_ip(value):
            return Classified("ip", "ip", _HOST_PARAMETERS[parameter])
        if _is_hostname(value):
            return Classified("computer", "hostname", _HOST_PARAMETERS[parameter])
        return None
    if parameter in _IP_PARAMETERS and _is_ip(value):
        return Classified("ip", "ip", _IP_PARAMETERS[parameter])
    if parameter in _USER_PARAMETERS and re.fullmatch(r"[^\s\\/]+(?:\\[^\s\\/]+)?", value):
        if _EMAIL_RE.fullmatch(value):
            return Classified("user", "email", "upn")
        return Classified("user", "string", _USER_PARAMETERS[parameter])
    if parameter in _PATH_PARAMETERS and _ABSOLUTE_PATH_RE.fullmatch(value):
        return Classified("path", "path", _PATH_PARAMETERS[parameter])
    if command in _SERVICE_COMMANDS and parameter in _SERVICE_PARAMETERS:
        if re.fullmatch(r"[A-Za-z0-9_.-]{1,80}", value):
            return Classified("service", "string", "service")
        return None
    if parameter in _PRINTER_PARAMETERS or (
        "printer" in command and parameter == "name" and "-" in command
    ):
        return Classified("printer", "string", "printer")
    if ctx.variable is not None:
        lowered = ctx.variable.lower()
        for marker, kind in _STRING_VARIABLE_KINDS:
            if marker in lowered:
                found = _classify_variable(value, kind, snake_case(ctx.variable))
                if found is not None:
                    return found
    return by_value


def _classify_variable(value: str, kind: str, key: str) -> Classified | None:
    if kind == "hostname":
        if _is_ip(value):
            return Classified("ip", "ip", key)
        return Classified("computer", "hostname", key) if _is_hostname(value) else None
    if kind == "email":
        return Classified("email", "email", key) if _EMAIL_RE.fullmatch(value) else None
    if kind == "ip":
        return Classified("ip", "ip", key) if _is_ip(value) else None
    if kind == "path":
        return Classified("path", "path", key) if _ABSOLUTE_PATH_RE.fullmatch(value) else None
    if kind == "user":
        if _EMAIL_RE.fullmatch(value):
            return Classified("user", "email", key)
        if re.fullmatch(r"[^\s\\/]+(?:\\[^\s\\/]+)?", value):
            return Classified("user", "string", key)
        return None
    if re.fullmatch(r"[A-Za-z0-9 _.-]{1,80}", value):
        return Classified(kind, "string", key)
    return None


def _classify_by_value(value: str) -> Classified | None:
    """Values that are one thing wherever they stand."""
    if _EMAIL_RE.fullmatch(value):
        return Classified("email", "email", "email")
    if _is_ip(value) and ("." in value or ":" in value):
        return Classified("ip", "ip", "ip_address")
    if _ABSOLUTE_PATH_RE.fullmatch(value) and not value.lower().startswith(
        ("c:\\windows\\", "c:\\program files")
    ):
        return Classified("path", "path", "path")
    if _DOMAIN_USER_RE.fullmatch(value) and value.split("\\", 1)[0].isupper():
        return Classified("user", "string", "user")
    if _MACHINE_NAME_RE.fullmatch(value) and not _FILE_NAME_RE.match(value):
        return Classified("computer", "hostname", "computer")
    return None


def classify_number(value: int, ctx: Context) -> Classified | None:
    if value in _NOT_A_THRESHOLD or value > 2**31:
        return None
    if ctx.compared_to:
        return Classified("threshold", "integer", f"{snake_case(ctx.compared_to)}_threshold")
    if ctx.parameter and ctx.parameter != "#positional":
        return Classified("threshold", "integer", snake_case(ctx.parameter))
    if ctx.variable:
        return Classified("threshold", "integer", snake_case(ctx.variable))
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


def describe(key: str, kind: str, value: Any, ctx: Context) -> tuple[str, str]:
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
