"""PowerShell template engine: parameter schemas, validation and injection-safe rendering.

A template is a PowerShell script body with ``{{key}}`` placeholders plus a parameter schema.
Rendering never pastes a value into the body. Instead it emits a generated assignment block
at the top of the script, one line per parameter::

    $rfp_username = 'O''Brien'
    $rfp_days = 30

and replaces each placeholder with a reference to the generated variable (``${rfp_username}``).
Every string value is written exactly once, as a single-quoted PowerShell literal in which each
character PowerShell treats as a single quote (U+0027, U+2018, U+2019, U+201A, U+201B) is
doubled, so no value can end its literal early; numbers come from Python ints and floats the
engine formatted itself, booleans are ``$true``/``$false``. The placeholder replacement text is
a constant that depends only on the key, never on the value, so the structure of the rendered
script is the same for every value. The body is scanned with a small PowerShell lexer only to
refuse placeholders that could never expand (inside single-quoted strings and here-strings);
the injection guarantee does not depend on that lexer.

Pure Python: no Flask, no database. See docs/template-authoring.md for the author's view.
"""

from __future__ import annotations

import copy
import functools
import ipaddress
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from services.scripts import param_types

__all__ = [
    "ENV_VARIABLE_PREFIX",
    "PARAM_TYPES",
    "CompiledTemplate",
    "CompiledTemplateCache",
    "REDACTION_MARKER",
    "SECRET_DELIVERY_MODES",
    "SecretInput",
    "RESERVED_VARIABLE_PREFIX",
    "ParameterSpec",
    "RenderedScript",
    "ScriptRenderError",
    "ScriptTemplateEngine",
    "TemplateDefinitionError",
    "quote_ps_string",
]

REDACTION_MARKER = "[REDACTED]"

#: How a sensitive value reaches the script: written in it (inline), read from an environment
#: variable the RMM sets (env), or asked for when the script runs (prompt).
SECRET_DELIVERY_MODES = ("inline", "env", "prompt")
ENV_VARIABLE_PREFIX = "RF_"

PARAM_TYPES = frozenset(
    {
        "string",
        "text",
        "integer",
        "number",
        "boolean",
        "choice",
        "multichoice",
        "email",
        "hostname",
        "ip",
        "path",
        "password",
    }
    # Structured text types (date, guid, cidr, ...) live in their own registry.
    | set(param_types.TYPES)
)

#: Generated variables are named ``<prefix><key>``; template bodies may not mention the prefix.
RESERVED_VARIABLE_PREFIX = "rfp_"

# Every character PowerShell's tokenizer treats as a single / double quote
# (System.Management.Automation.Language.CharExtensions.IsSingleQuote / IsDoubleQuote).
SINGLE_QUOTE_CHARS = "'\u2018\u2019\u201a\u201b"
DOUBLE_QUOTE_CHARS = '"\u201c\u201d\u201e'

MAX_TEXT_LENGTH = 65_536
MAX_PATH_LENGTH = 32_767
MAX_PATTERN_LENGTH = 1_000
MAX_OPTIONS = 500
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
_MAX_NESTING = 100

_TEXT_TYPES = frozenset(
    {"string", "text", "email", "hostname", "ip", "path", "password", *param_types.TYPES}
)
_SINGLE_LINE_TYPES = _TEXT_TYPES - {"text"} | {"choice"}
_ALLOWED_RULES: dict[str, frozenset[str]] = {
    **{t: frozenset({"pattern", "min_length", "max_length"}) for t in _TEXT_TYPES},
    "ip": frozenset({"pattern", "min_length", "max_length", "allow_zone_id"}),
    # With allow_custom, a custom entry is checked like a string.
    "choice": frozenset({"pattern", "min_length", "max_length"}),
    "multichoice": frozenset({"min_length", "max_length", "pattern"}),
    "integer": frozenset({"min", "max"}),
    "number": frozenset({"min", "max"}),
    "boolean": frozenset(),
}
_CROSS_FIELD_RULES = ("after", "not_equal")
_PARAMETER_FIELDS = frozenset(
    {
        "key",
        "label",
        "type",
        "required",
        "sensitive",
        "default",
        "help",
        "options",
        "validation",
        # A person's description of `validation.pattern`, shown in forms and in every 422.
        "pattern_hint",
        # choice / multichoice: entries outside `options` are accepted, checked as strings.
        "allow_custom",
        # Cross-field rules naming another parameter's key.
        *_CROSS_FIELD_RULES,
    }
)
_RULE_KEYS = frozenset({"pattern", "min_length", "max_length", "min", "max", "allow_zone_id"})

_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_PLACEHOLDER_RE = re.compile(r"\{\{[ \t]*([A-Za-z_][A-Za-z0-9_]*)[ \t]*\}\}")
_RESERVED_RE = re.compile(r"(?<![A-Za-z0-9_])" + re.escape(RESERVED_VARIABLE_PREFIX), re.IGNORECASE)
_PREAMBLE_LINE_RE = re.compile(
    r"[ \t]*(?:#requires\b[^\r\n]*|using[ \t]+(?:namespace|module|assembly)\b[^\r\n]*)?",
    re.IGNORECASE,
)
_FORBIDDEN_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_NEWLINE_RE = re.compile(r"[\r\n]")
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
_SINGLE_QUOTE_RE = re.compile("([" + SINGLE_QUOTE_CHARS + "])")
_INT_STR_RE = re.compile(r"[+-]?[0-9]{1,19}")
_NUMBER_STR_RE = re.compile(
    r"[+-]?(?:[0-9]{1,30}(?:\.[0-9]{0,30})?|\.[0-9]{1,30})(?:[eE][+-]?[0-9]{1,3})?"
)
_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME_RE = re.compile(rf"(?=[^\r\n]{{1,253}}\.?\Z){_HOST_LABEL}(?:\.{_HOST_LABEL})*\.?")
_EMAIL_LOCAL_RE = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
)


class _ErrorCollector(ValueError):
    """Base for the engine's errors: ``errors`` maps a field path or key to messages."""

    def __init__(self, errors: Mapping[str, list[str]], message: str | None = None) -> None:
        self.errors: dict[str, list[str]] = {k: list(v) for k, v in errors.items()}
        super().__init__(message or self._summary())

    def _summary(self) -> str:
        parts = [f"{key}: {'; '.join(msgs)}" for key, msgs in self.errors.items()]
        return "; ".join(parts) if parts else "invalid"


class TemplateDefinitionError(_ErrorCollector):
    """The template itself (body, schema, defaults or rules) is invalid. Maps to HTTP 422."""


class ScriptRenderError(_ErrorCollector):
    """The values supplied for a render are invalid. ``errors`` is keyed by parameter key
    (``"parameters"`` for problems not tied to one declared parameter, e.g. unknown keys)."""


@dataclass(frozen=True)
class ParameterSpec:
    key: str
    label: str
    type: str
    required: bool
    sensitive: bool
    default: Any
    help: str | None
    options: tuple[str, ...]
    validation: Mapping[str, Any]
    pattern_hint: str | None = None
    allow_custom: bool = False
    after: str | None = None
    not_equal: str | None = None

    @property
    def variable_name(self) -> str:
        """The PowerShell variable (without ``$``) that carries this parameter's value."""
        return RESERVED_VARIABLE_PREFIX + self.key


@dataclass(frozen=True)
class SecretInput:
    """A sensitive parameter the script reads when it runs instead of carrying it."""

    key: str
    label: str
    delivery: str
    variable: str | None  # the environment variable, in env delivery


@dataclass(frozen=True)
class RenderedScript:
    script: str
    stored_script: str
    values: dict[str, Any] = field(default_factory=dict)
    redacted_values: dict[str, Any] = field(default_factory=dict)
    secret_delivery: str = "inline"
    secret_inputs: tuple[SecretInput, ...] = ()
    #: Sensitive keys whose given value was not used because the script reads it at run time.
    ignored_values: tuple[str, ...] = ()


# --------------------------------------------------------------------------------------------
# PowerShell literals
# --------------------------------------------------------------------------------------------


def quote_ps_string(value: str) -> str:
    """Return ``value`` as a single-quoted PowerShell literal.

    Inside a single-quoted literal PowerShell interprets nothing except a single-quote
    character, and a pair of single-quote characters stands for the first of them. Doubling
    every one of the five characters PowerShell counts as a single quote is exactly what
    ``[System.Management.Automation.Language.CodeGeneration]::EscapeSingleQuotedStringContent``
    does.
    """
    if _SINGLE_QUOTE_RE.search(value) is None:  # most values: nothing to double
        return "'" + value + "'"
    return "'" + _SINGLE_QUOTE_RE.sub(r"\1\1", value) + "'"


def _ps_literal(value: Any) -> str:
    if value is None:
        return "$null"
    if value is True:
        return "$true"
    if value is False:
        return "$false"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        if not math.isfinite(value):  # pragma: no cover - rejected during coercion
            raise ValueError("non-finite number")
        return repr(float(value))
    if isinstance(value, str):
        return quote_ps_string(value)
    if isinstance(value, (list, tuple)):
        return "@(" + ",".join(quote_ps_string(v) for v in value) + ")"
    raise TypeError(f"cannot emit a {type(value).__name__} as a PowerShell literal")


# --------------------------------------------------------------------------------------------
# Body scanning
# --------------------------------------------------------------------------------------------

_CTX_CODE = "code"
_CTX_DQ = "double-quoted string"
_CTX_DQ_HERE = "double-quoted here-string"
_CTX_SQ = "single-quoted string"
_CTX_SQ_HERE = "single-quoted here-string"
_CTX_COMMENT = "comment"
_CTX_BRACED = "${...} variable name"


@dataclass(frozen=True)
class _Placeholder:
    start: int
    end: int
    key: str
    context: str


@dataclass(frozen=True)
class _ScanResult:
    preamble_end: int
    placeholders: tuple[_Placeholder, ...]
    problems: tuple[str, ...]
    newline: str


class _Nesting(Exception):
    pass


class _BodyScanner:
    """Just enough of PowerShell's tokenizer to know, for each ``{{key}}``, whether it sits in
    code, a comment, an expandable string or a verbatim (single-quoted) string."""

    _COMMENT_PREV = frozenset(" \t\r\n;(){}|&,=")

    def __init__(self, body: str) -> None:
        self.s = body
        self.n = len(body)
        self.placeholders: list[_Placeholder] = []
        self.problems: list[str] = []
        self.depth = 0

    # -- helpers -----------------------------------------------------------------------------
    def _match_placeholder(self, i: int, context: str) -> int | None:
        m = _PLACEHOLDER_RE.match(self.s, i)
        if m is None:
            return None
        self.placeholders.append(_Placeholder(m.start(), m.end(), m.group(1), context))
        return m.end()

    def _scan_plain_region(self, start: int, end: int, context: str) -> None:
        for m in _PLACEHOLDER_RE.finditer(self.s, start, end):
            self.placeholders.append(_Placeholder(m.start(), m.end(), m.group(1), context))

    def _here_header_end(self, i: int) -> int | None:
        """``i`` is just after ``@'`` / ``@"``: return the start of the first content line if
        only whitespace follows on this line (a valid here-string header), else None."""
        j = i
        while j < self.n and self.s[j] in " \t":
            j += 1
        if j < self.n and self.s[j] == "\n":
            return j + 1
        if j < self.n and self.s[j] == "\r":
            return j + 2 if self.s.startswith("\r\n", j) else j + 1
        return None

    def _at_line_start(self, i: int) -> bool:
        return i > 0 and self.s[i - 1] in "\r\n"

    def _push(self) -> None:
        self.depth += 1
        if self.depth > _MAX_NESTING:
            raise _Nesting

    # -- states ------------------------------------------------------------------------------
    def scan_code(self, i: int, in_subexpression: bool) -> int:
        """Scan code from ``i``. In a ``$(...)`` subexpression, return just past its ``)``."""
        s, n = self.s, self.n
        self._push()
        parens = 0
        braces = 0
        while i < n:
            c = s[i]
            if c == "{" and s.startswith("{{", i):
                end = self._match_placeholder(i, _CTX_CODE)
                if end is not None:
                    if i > 0 and s[i - 1] == "$":
                        self.problems.append(
                            f"placeholder '{{{{{self.placeholders[-1].key}}}}}' directly after "
                            "'$' would not be a valid variable reference; write it on its own"
                        )
                    i = end
                    continue
            if c == "`":
                i += 2
            elif c == "<" and s.startswith("<#", i):
                end = s.find("#>", i + 2)
                end = n if end < 0 else end + 2
                self._scan_plain_region(i, end, _CTX_COMMENT)
                i = end
            elif c == "#" and (i == 0 or s[i - 1] in self._COMMENT_PREV):
                end = i
                while end < n and s[end] not in "\r\n":
                    end += 1
                self._scan_plain_region(i, end, _CTX_COMMENT)
                i = end
            elif c in SINGLE_QUOTE_CHARS:
                i = self.scan_single_quoted(i + 1)
            elif c in DOUBLE_QUOTE_CHARS:
                i = self.scan_double_quoted(i + 1)
            elif c == "@" and i + 1 < n and s[i + 1] in SINGLE_QUOTE_CHARS + DOUBLE_QUOTE_CHARS:
                content = self._here_header_end(i + 2)
                if content is None:
                    i += 1
                elif s[i + 1] in SINGLE_QUOTE_CHARS:
                    i = self.scan_single_here(content)
                else:
                    i = self.scan_double_here(content)
            elif c == "$" and s.startswith("${", i) and not _PLACEHOLDER_RE.match(s, i + 1):
                i = self.scan_braced_variable(i + 2)
            elif c == "(":
                parens += 1
                i += 1
            elif c == ")":
                if in_subexpression and parens == 0:
                    self.depth -= 1
                    return i + 1
                parens -= 1
                i += 1
            elif c == "{":
                braces += 1
                i += 1
            elif c == "}":
                braces -= 1
                i += 1
            elif (
                self.depth == 1
                and parens == 0
                and braces == 0
                and c in "pP"
                and s[i : i + 5].lower() == "param"
                and (i == 0 or not (s[i - 1].isalnum() or s[i - 1] in "_-$:.\\/"))
            ):
                j = i + 5
                while j < n and s[j] in " \t\r\n":
                    j += 1
                if j < n and s[j] == "(":
                    self.problems.append(
                        "a script-level param() block is not supported: declare parameters in "
                        "the parameter schema and use {{placeholders}}"
                    )
                i += 5
            else:
                i += 1
        self.depth -= 1
        return n

    def scan_braced_variable(self, i: int) -> int:
        s, n = self.s, self.n
        while i < n:
            c = s[i]
            if c == "`":
                i += 2
                continue
            if c == "}":
                return i + 1
            if c == "{" and _PLACEHOLDER_RE.match(s, i):
                end = self._match_placeholder(i, _CTX_BRACED)
                i = end if end is not None else i + 1
                continue
            i += 1
        return n

    def scan_single_quoted(self, i: int) -> int:
        s, n = self.s, self.n
        while i < n:
            c = s[i]
            if c in SINGLE_QUOTE_CHARS:
                if i + 1 < n and s[i + 1] in SINGLE_QUOTE_CHARS:
                    i += 2
                    continue
                return i + 1
            if c == "{" and s.startswith("{{", i):
                end = self._match_placeholder(i, _CTX_SQ)
                if end is not None:
                    i = end
                    continue
            i += 1
        return n

    def scan_single_here(self, i: int) -> int:
        s, n = self.s, self.n
        while i < n:
            c = s[i]
            if c in SINGLE_QUOTE_CHARS and self._at_line_start(i) and i + 1 < n and s[i + 1] == "@":
                return i + 2
            if c == "{" and s.startswith("{{", i):
                end = self._match_placeholder(i, _CTX_SQ_HERE)
                if end is not None:
                    i = end
                    continue
            i += 1
        return n

    def _double_common(self, i: int, context: str) -> int | None:
        """Shared handling of backticks, ``$(...)``, ``${...}`` and placeholders in expandable
        strings; returns the next index, or None when ``s[i]`` is an ordinary character."""
        s = self.s
        c = s[i]
        if c == "`":
            return i + 2
        if c == "$" and s.startswith("$(", i):
            return self.scan_code(i + 2, in_subexpression=True)
        if c == "$" and s.startswith("${", i) and not _PLACEHOLDER_RE.match(s, i + 1):
            return self.scan_braced_variable(i + 2)
        if c == "{" and s.startswith("{{", i):
            end = self._match_placeholder(i, context)
            if end is not None:
                if i > 0 and s[i - 1] == "$":
                    self.problems.append(
                        f"placeholder '{{{{{self.placeholders[-1].key}}}}}' directly after '$' "
                        "would not be a valid variable reference; write it on its own"
                    )
                return end
        return None

    def scan_double_quoted(self, i: int) -> int:
        s, n = self.s, self.n
        self._push()
        while i < n:
            c = s[i]
            if c in DOUBLE_QUOTE_CHARS:
                if i + 1 < n and s[i + 1] in DOUBLE_QUOTE_CHARS:
                    i += 2
                    continue
                self.depth -= 1
                return i + 1
            nxt = self._double_common(i, _CTX_DQ)
            i = i + 1 if nxt is None else nxt
        self.depth -= 1
        return n

    def scan_double_here(self, i: int) -> int:
        s, n = self.s, self.n
        self._push()
        while i < n:
            c = s[i]
            if c in DOUBLE_QUOTE_CHARS and self._at_line_start(i) and i + 1 < n and s[i + 1] == "@":
                self.depth -= 1
                return i + 2
            nxt = self._double_common(i, _CTX_DQ_HERE)
            i = i + 1 if nxt is None else nxt
        self.depth -= 1
        return n


def _preamble_end(body: str) -> int:
    """Index just past the leading ``#Requires`` / ``using`` lines (0 when there are none)."""
    pos = 0
    end = 0
    n = len(body)
    if body.startswith("\ufeff"):
        pos = end = 1
    while pos < n:
        nl = body.find("\n", pos)
        line_end = n if nl < 0 else nl
        line = body[pos:line_end].rstrip("\r")
        m = _PREAMBLE_LINE_RE.fullmatch(line)
        if m is None:
            break
        next_pos = n if nl < 0 else nl + 1
        if line.strip():
            end = next_pos
        pos = next_pos
    return end


@functools.lru_cache(maxsize=512)
def _scan_body(body: str) -> _ScanResult:
    newline = "\r\n" if "\r\n" in body else "\n"
    preamble_end = _preamble_end(body)
    scanner = _BodyScanner(body)
    problems: list[str] = []
    if "\x00" in body:
        problems.append("must not contain NUL characters")
    if _SURROGATE_RE.search(body):
        problems.append("must be valid Unicode text (it contains an unpaired surrogate)")
    if _RESERVED_RE.search(_PLACEHOLDER_RE.sub("", body)):
        problems.append(
            f"names starting with '{RESERVED_VARIABLE_PREFIX}' are reserved for generated "
            "parameter variables; rename the variable"
        )
    try:
        scanner.scan_code(0, in_subexpression=False)
    except _Nesting:
        problems.append(f"strings and subexpressions are nested more than {_MAX_NESTING} deep")
    problems.extend(scanner.problems)
    placeholders = tuple(sorted(scanner.placeholders, key=lambda p: p.start))
    return _ScanResult(preamble_end, placeholders, tuple(problems), newline)


# --------------------------------------------------------------------------------------------
# Value coercion
# --------------------------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_text(value: str, ptype: str, rules: Mapping[str, Any] | None = None) -> list[str]:
    errors: list[str] = []
    if _FORBIDDEN_CONTROL_RE.search(value):
        errors.append(
            "must not contain NUL or other control characters (only tab, CR and LF are allowed)"
        )
    if _SURROGATE_RE.search(value):
        errors.append("must be valid Unicode text (it contains an unpaired surrogate)")
    if ptype in _SINGLE_LINE_TYPES and _NEWLINE_RE.search(value):
        errors.append("must be a single line")
    limit = MAX_PATH_LENGTH if ptype == "path" else MAX_TEXT_LENGTH
    if len(value) > limit:
        errors.append(f"must be at most {limit} characters")
    if errors:
        return errors
    if ptype == "email" and not _is_email(value):
        errors.append("must be a valid email address")
    elif ptype == "hostname" and not _is_hostname(value):
        errors.append("must be a valid hostname (RFC 1123)")
    elif ptype == "ip":
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            errors.append("must be a valid IPv4 or IPv6 address, e.g. 192.0.2.10 or 2001:db8::53")
        else:
            if (
                isinstance(address, ipaddress.IPv6Address)
                and address.scope_id
                and not (rules or {}).get("allow_zone_id")
            ):
                errors.append(
                    f"must be an address without a zone id: '{address.scope_id}' after '%' only "
                    "names a local interface (write the address alone)"
                )
    return errors


def _is_hostname(value: str) -> bool:
    return value.isascii() and _HOSTNAME_RE.fullmatch(value) is not None


def _is_email(value: str) -> bool:
    if len(value) > 254 or not value.isascii() or value.count("@") < 1:
        return False
    local, _, domain = value.rpartition("@")
    if not local or len(local) > 64 or _EMAIL_LOCAL_RE.fullmatch(local) is None:
        return False
    return "." in domain.rstrip(".") and _is_hostname(domain)


def _apply_text_rules(
    length: int, value: str | None, rules: Mapping[str, Any], hint: str | None = None
) -> list[str]:
    errors: list[str] = []
    min_length = rules.get("min_length")
    max_length = rules.get("max_length")
    if min_length is not None and length < min_length:
        errors.append(f"must be at least {min_length} characters")
    if max_length is not None and length > max_length:
        errors.append(f"must be at most {max_length} characters")
    pattern = rules.get("pattern")
    if value is not None and pattern is not None:
        try:
            if re.fullmatch(pattern, value) is None:
                errors.append(f"must be {hint}" if hint else f"must match the pattern {pattern}")
        except re.error:  # pragma: no cover - patterns are checked at definition time
            errors.append("has an invalid validation pattern")
    return errors


def _coerce(spec: ParameterSpec, value: Any, rules: Mapping[str, Any]) -> tuple[Any, list[str]]:
    """Validate ``value`` for ``spec`` and return (normalised value, errors)."""
    ptype = spec.type
    if ptype in _TEXT_TYPES or ptype == "choice":
        if not isinstance(value, str):
            return None, ["must be a string"]
        errors = _check_text(value, ptype, rules)
        if errors:
            return None, errors
        if ptype == "choice":
            if value in spec.options:
                return value, []
            if not spec.allow_custom:
                return None, [_not_an_option(value, spec)]
            return value, _apply_text_rules(len(value), value, rules, spec.pattern_hint)
        if ptype in param_types.TYPES:
            normalised, problem = param_types.check(ptype, value)
            if problem is not None:
                return None, [problem]
            assert normalised is not None
            return normalised, _apply_text_rules(len(value), value, rules, spec.pattern_hint)
        return value, _apply_text_rules(len(value), value, rules, spec.pattern_hint)
    if ptype == "multichoice":
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            return None, ["must be a list of options"]
        errors = []
        seen: set[str] = set()
        item_rules = {"pattern": rules["pattern"]} if "pattern" in rules else {}
        for index, item in enumerate(value):
            if not isinstance(item, str):
                errors.append(f"item {index + 1} must be a string")
                continue
            if item in seen:
                errors.append(f"'{item}' is chosen more than once")
                continue
            seen.add(item)
            if item not in spec.options:
                if not spec.allow_custom:
                    errors.append(_not_an_option(item, spec))
                    continue
                problems = _check_text(item, "string") or _apply_text_rules(
                    len(item), item, item_rules, spec.pattern_hint
                )
                errors.extend(f"'{item}' {problem}" for problem in problems)
        if errors:
            return None, errors
        count_errors = []
        if rules.get("min_length") is not None and len(value) < rules["min_length"]:
            count_errors.append(f"must have at least {rules['min_length']} options selected")
        if rules.get("max_length") is not None and len(value) > rules["max_length"]:
            count_errors.append(f"must have at most {rules['max_length']} options selected")
        return list(value), count_errors
    if ptype == "integer":
        number: int | float
        if isinstance(value, bool):
            return None, ["must be an integer"]
        if isinstance(value, int):
            number = value
        elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
            number = int(value)
        elif isinstance(value, str) and _INT_STR_RE.fullmatch(value.strip()):
            number = int(value.strip())
        else:
            return None, ["must be an integer"]
        if not INT64_MIN <= number <= INT64_MAX:
            return None, ["must fit in a 64-bit signed integer"]
        return number, _apply_number_rules(number, rules)
    if ptype == "number":
        if isinstance(value, bool):
            return None, ["must be a number"]
        if isinstance(value, int):
            if not INT64_MIN <= value <= INT64_MAX:
                return None, ["must fit in a 64-bit signed integer"]
            number = value
        elif isinstance(value, float):
            number = value
        elif isinstance(value, str) and _NUMBER_STR_RE.fullmatch(value.strip()):
            number = float(value.strip())
        else:
            return None, ["must be a number"]
        if isinstance(number, float) and not math.isfinite(number):
            return None, ["must be a finite number"]
        return number, _apply_number_rules(number, rules)
    if ptype == "boolean":
        if isinstance(value, bool):
            return value, []
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true", []
        return None, ["must be true or false"]
    return None, [f"unsupported type '{ptype}'"]  # pragma: no cover - types checked at parse


def _apply_number_rules(number: int | float, rules: Mapping[str, Any]) -> list[str]:
    low, high = rules.get("min"), rules.get("max")
    if (low is not None and number < low) or (high is not None and number > high):
        if low is not None and high is not None:
            return [f"must be between {low} and {high} (got {number})"]
        if low is not None:
            return [f"must be at least {low} (got {number})"]
        return [f"must be at most {high} (got {number})"]
    return []


def _scrubbed(spec: ParameterSpec, value: Any, problems: list[str]) -> list[str]:
    """Messages name the value they refuse so a person can find it, except a sensitive one:
    errors are logged and shown, secrets must not be."""
    if not spec.sensitive:
        return problems
    items = value if isinstance(value, (list, tuple)) else [value]
    shown = sorted({str(item) for item in items if str(item)}, key=len, reverse=True)
    cleaned = []
    for problem in problems:
        for item in shown:
            problem = problem.replace(item, "(the value given)")
        cleaned.append(problem)
    return cleaned


def _run_time_input(spec: ParameterSpec, delivery: str) -> tuple[str, SecretInput]:
    """The generated line that fetches a secret when the script runs. Only the key (an
    identifier) and the label (a quoted literal) appear in it, never a value."""
    label = quote_ps_string(spec.label)
    if delivery == "env":
        name = ENV_VARIABLE_PREFIX + spec.key.upper()
        missing = quote_ps_string(f"Set the environment variable {name} ({spec.label}) first.")
        line = (
            f"${spec.variable_name} = $env:{name}; "
            f"if ([string]::IsNullOrEmpty(${spec.variable_name})) {{ throw {missing} }}"
        )
        return line, SecretInput(spec.key, spec.label, delivery, name)
    # Read-Host -AsSecureString keeps the answer off the screen and out of the transcript;
    # the template body works with plain text, so it is converted once, in memory.
    line = (
        f"${spec.variable_name} = [System.Net.NetworkCredential]::new('', "
        f"(Read-Host -AsSecureString -Prompt {label})).Password"
    )
    return line, SecretInput(spec.key, spec.label, delivery, None)


def _not_an_option(value: str, spec: ParameterSpec) -> str:
    shown = ", ".join(f"'{option}'" for option in spec.options[:50])
    more = f" and {len(spec.options) - 50} more" if len(spec.options) > 50 else ""
    return f"'{value}' is not one of the allowed options: {shown}{more}"


def _is_empty(value: Any) -> bool:
    return (
        value is None
        or (isinstance(value, str) and value == "")
        or (isinstance(value, (list, tuple)) and len(value) == 0)
    )


# --------------------------------------------------------------------------------------------
# The engine
# --------------------------------------------------------------------------------------------


class _Errors:
    def __init__(self) -> None:
        self.items: dict[str, list[str]] = {}

    def add(self, key: str, message: str) -> None:
        self.items.setdefault(key, []).append(message)

    def extend(self, key: str, messages: Iterable[str]) -> None:
        for message in messages:
            self.add(key, message)

    def __bool__(self) -> bool:
        return bool(self.items)


def _check_rules(rules: Any, ptype: str | None, path: str, errors: _Errors) -> dict[str, Any]:
    """Check a validation mapping; return the well-formed part."""
    if rules is None:
        return {}
    if not isinstance(rules, Mapping):
        errors.add(path, "must be an object")
        return {}
    clean: dict[str, Any] = {}
    for name, rule in rules.items():
        rule_path = f"{path}.{name}"
        if name not in _RULE_KEYS:
            errors.add(rule_path, f"unknown validation rule '{name}'")
            continue
        if rule is None:
            continue
        if ptype is not None and name not in _ALLOWED_RULES.get(ptype, frozenset()):
            errors.add(rule_path, f"'{name}' does not apply to type '{ptype}'")
            continue
        if name == "pattern":
            if not isinstance(rule, str):
                errors.add(rule_path, "must be a string")
                continue
            if len(rule) > MAX_PATTERN_LENGTH:
                errors.add(rule_path, f"must be at most {MAX_PATTERN_LENGTH} characters")
                continue
            try:
                re.compile(rule)
            except re.error as exc:
                errors.add(rule_path, f"invalid regular expression: {exc}")
                continue
        elif name == "allow_zone_id":
            if not isinstance(rule, bool):
                errors.add(rule_path, "must be true or false")
                continue
        elif name in ("min_length", "max_length"):
            if isinstance(rule, bool) or not isinstance(rule, int) or rule < 0:
                errors.add(rule_path, "must be a non-negative integer")
                continue
        else:
            if not _is_number(rule) or (isinstance(rule, float) and not math.isfinite(rule)):
                errors.add(rule_path, "must be a number")
                continue
        clean[name] = rule
    for low, high in (("min_length", "max_length"), ("min", "max")):
        if low in clean and high in clean and clean[low] > clean[high]:
            errors.add(path, f"{low} ({clean[low]}) is greater than {high} ({clean[high]})")
    return clean


class ScriptTemplateEngine:
    """Validates PowerShell templates and renders them with injection-safe parameter values."""

    # -- schema ------------------------------------------------------------------------------
    def parse_parameters(self, parameters_schema: dict | None) -> list[ParameterSpec]:
        errors = _Errors()
        specs = self._parse_parameters(parameters_schema, errors)
        if errors:
            raise TemplateDefinitionError(errors.items)
        return specs

    def _parse_parameters(self, schema: Any, errors: _Errors) -> list[ParameterSpec]:
        if schema is None:
            return []
        if not isinstance(schema, Mapping):
            errors.add("parameters_schema", "must be an object")
            return []
        unknown = sorted(str(k) for k in schema if k != "parameters")
        if unknown:
            errors.add("parameters_schema", f"unknown fields: {', '.join(unknown)}")
        params = schema.get("parameters")
        if params is None:
            return []
        if not isinstance(params, list):
            errors.add("parameters_schema.parameters", "must be a list")
            return []
        specs: list[ParameterSpec] = []
        seen: dict[str, int] = {}
        for index, raw in enumerate(params):
            path = f"parameters_schema.parameters[{index}]"
            spec = self._parse_one(raw, path, errors)
            key = raw.get("key") if isinstance(raw, Mapping) else None
            if isinstance(key, str) and _KEY_RE.fullmatch(key):
                folded = key.lower()
                if folded in seen:
                    errors.add(
                        f"{path}.key",
                        f"duplicate key '{key}' (already used by parameters[{seen[folded]}]; "
                        "PowerShell variable names are case-insensitive)",
                    )
                    continue
                seen[folded] = index
            if spec is not None:
                specs.append(spec)
        return specs

    def _parse_one(self, raw: Any, path: str, errors: _Errors) -> ParameterSpec | None:
        if not isinstance(raw, Mapping):
            errors.add(path, "must be an object")
            return None
        before = sum(len(v) for v in errors.items.values())
        for name in raw:
            if name not in _PARAMETER_FIELDS:
                errors.add(f"{path}.{name}", f"unknown field '{name}'")
        key = raw.get("key")
        if not isinstance(key, str) or _KEY_RE.fullmatch(key) is None:
            errors.add(
                f"{path}.key",
                "must be an identifier: a letter or underscore, then letters, digits or "
                "underscores (at most 64 characters)",
            )
        ptype = raw.get("type")
        if not isinstance(ptype, str) or ptype not in PARAM_TYPES:
            errors.add(
                f"{path}.type",
                f"unknown type {ptype!r}; expected one of {', '.join(sorted(PARAM_TYPES))}",
            )
            ptype = None
        label = raw.get("label", key)
        if label is not None and not isinstance(label, str):
            errors.add(f"{path}.label", "must be a string")
        help_text = raw.get("help")
        if help_text is not None and not isinstance(help_text, str):
            errors.add(f"{path}.help", "must be a string")
        flags: dict[str, bool] = {}
        for flag in ("required", "sensitive"):
            flag_value = raw.get(flag, False)
            if not isinstance(flag_value, bool):
                errors.add(f"{path}.{flag}", "must be true or false")
                flag_value = False
            flags[flag] = flag_value
        options = self._parse_options(raw.get("options"), ptype, f"{path}.options", errors)
        extras = self._parse_extras(raw, ptype, path, errors)
        rules = _check_rules(raw.get("validation"), ptype, f"{path}.validation", errors)
        if sum(len(v) for v in errors.items.values()) != before or ptype is None:
            return None
        assert isinstance(key, str)
        spec = ParameterSpec(
            key=key,
            label=label if isinstance(label, str) else key,
            type=ptype,
            required=flags["required"],
            sensitive=flags["sensitive"] or ptype == "password",
            default=None,
            help=help_text,
            options=options,
            validation=rules,
            **extras,
        )
        default = raw.get("default")
        if not _is_empty(default):
            normalised, problems = _coerce(spec, default, rules)
            if problems:
                errors.extend(f"{path}.default", problems)
                return None
            spec = replace(spec, default=normalised)
        return spec

    @staticmethod
    def _parse_extras(
        raw: Mapping[str, Any], ptype: str | None, path: str, errors: _Errors
    ) -> dict[str, Any]:
        extras: dict[str, Any] = {}
        hint = raw.get("pattern_hint")
        if hint is not None:
            if not isinstance(hint, str) or not hint.strip() or len(hint) > 200:
                errors.add(f"{path}.pattern_hint", "must be a short non-empty text")
            elif not isinstance(raw.get("validation"), Mapping) or "pattern" not in raw.get(
                "validation", {}
            ):
                errors.add(f"{path}.pattern_hint", "describes validation.pattern, which is unset")
            else:
                extras["pattern_hint"] = hint
        custom = raw.get("allow_custom")
        if custom is not None:
            if not isinstance(custom, bool):
                errors.add(f"{path}.allow_custom", "must be true or false")
            elif ptype not in ("choice", "multichoice", None):
                errors.add(f"{path}.allow_custom", "applies to choice and multichoice only")
            else:
                extras["allow_custom"] = custom
        for rule in _CROSS_FIELD_RULES:
            other = raw.get(rule)
            if other is None:
                continue
            if not isinstance(other, str) or _KEY_RE.fullmatch(other) is None:
                errors.add(f"{path}.{rule}", "must be the key of another parameter")
            else:
                extras[rule] = other
        return extras

    @staticmethod
    def _check_cross_fields(specs: list[ParameterSpec], errors: _Errors) -> None:
        by_key = {spec.key: spec for spec in specs}
        for index, spec in enumerate(specs):
            path = f"parameters_schema.parameters[{index}]"
            for rule in _CROSS_FIELD_RULES:
                other_key = getattr(spec, rule)
                if other_key is None:
                    continue
                other = by_key.get(other_key)
                if other is None or other is spec:
                    errors.add(f"{path}.{rule}", f"names no other parameter ('{other_key}')")
                    continue
                if rule == "after":
                    ordered = spec.type in ("integer", "number") or (
                        spec.type in param_types.TYPES and param_types.TYPES[spec.type].ordered
                    )
                    if not ordered or other.type != spec.type:
                        errors.add(
                            f"{path}.after",
                            "compares two parameters of the same type: date, datetime, "
                            f"integer or number (here {spec.type} and {other.type})",
                        )

    @staticmethod
    def _parse_options(
        options: Any, ptype: str | None, path: str, errors: _Errors
    ) -> tuple[str, ...]:
        if ptype not in ("choice", "multichoice"):
            if options not in (None, []) and ptype is not None:
                errors.add(path, f"options do not apply to type '{ptype}'")
            return ()
        if not isinstance(options, list) or not options:
            errors.add(path, f"type '{ptype}' needs a non-empty list of options")
            return ()
        if len(options) > MAX_OPTIONS:
            errors.add(path, f"at most {MAX_OPTIONS} options are allowed")
            return ()
        values: list[str] = []
        for index, option in enumerate(options):
            value = option.get("value") if isinstance(option, Mapping) else option
            if (
                not isinstance(value, str)
                or not value
                or _FORBIDDEN_CONTROL_RE.search(value)
                or _NEWLINE_RE.search(value)
                or _SURROGATE_RE.search(value)
            ):
                errors.add(
                    f"{path}[{index}]",
                    "must be a non-empty single-line string (or an object with such a 'value')",
                )
                continue
            if value in values:
                errors.add(f"{path}[{index}]", f"duplicate option '{value}'")
                continue
            values.append(value)
        return tuple(values)

    # -- template ----------------------------------------------------------------------------
    def validate_template(
        self,
        script_body: str,
        parameters_schema: dict | None,
        default_values: dict | None = None,
        validation_rules: dict | None = None,
    ) -> list[ParameterSpec]:
        errors = _Errors()
        specs = self._validate(
            script_body, parameters_schema, default_values, validation_rules, errors
        )
        if errors:
            raise TemplateDefinitionError(errors.items)
        return specs

    def _validate(
        self,
        script_body: Any,
        parameters_schema: Any,
        default_values: Any,
        validation_rules: Any,
        errors: _Errors,
    ) -> list[ParameterSpec]:
        specs = self._parse_parameters(parameters_schema, errors)
        self._check_cross_fields(specs, errors)
        by_key = {spec.key: spec for spec in specs}

        # Template-level validation rules, merged over each parameter's own.
        if validation_rules is not None and not isinstance(validation_rules, Mapping):
            errors.add("validation_rules", "must be an object")
        elif validation_rules:
            merged: dict[str, ParameterSpec] = {}
            for key, rules in validation_rules.items():
                spec = by_key.get(key)
                path = f"validation_rules.{key}"
                if spec is None:
                    errors.add(path, f"no parameter named '{key}'")
                    continue
                extra = _check_rules(rules, spec.type, path, errors)
                combined = {**spec.validation, **extra}
                for low, high in (("min_length", "max_length"), ("min", "max")):
                    both_new = low in extra and high in extra  # already reported by _check_rules
                    if low in combined and high in combined and not both_new:
                        if combined[low] > combined[high]:
                            errors.add(
                                path,
                                f"{low} ({combined[low]}) is greater than {high} "
                                f"({combined[high]}) once merged with the parameter's own rules",
                            )
                new = replace(spec, validation=combined)
                if not _is_empty(new.default):
                    _, problems = _coerce(new, new.default, combined)
                    errors.extend(
                        f"parameters_schema.parameters[{specs.index(spec)}].default", problems
                    )
                merged[key] = new
            specs = [merged.get(spec.key, spec) for spec in specs]
            by_key = {spec.key: spec for spec in specs}

        # Template-level default values.
        if default_values is not None and not isinstance(default_values, Mapping):
            errors.add("default_values", "must be an object")
        elif default_values:
            for key, value in default_values.items():
                path = f"default_values.{key}"
                spec = by_key.get(key)
                if spec is None:
                    errors.add(path, f"no parameter named '{key}'")
                elif not _is_empty(value):
                    _, problems = _coerce(spec, value, spec.validation)
                    errors.extend(path, problems)

        # The body.
        if not isinstance(script_body, str) or not script_body.strip():
            errors.add("script_body", "must be a non-empty string")
            return specs
        scan = _scan_body(script_body)
        errors.extend("script_body", scan.problems)
        reported: set[tuple[str, str]] = set()
        for ph in scan.placeholders:
            problem = None
            if ph.key not in by_key and not self._declared_but_invalid(ph.key, parameters_schema):
                problem = f"placeholder '{{{{{ph.key}}}}}' has no parameter of that key"
            elif ph.start < scan.preamble_end:
                problem = (
                    f"placeholder '{{{{{ph.key}}}}}' is not allowed in #Requires or using lines"
                )
            elif ph.context in (_CTX_SQ, _CTX_SQ_HERE, _CTX_BRACED):
                problem = (
                    f"placeholder '{{{{{ph.key}}}}}' is inside a {ph.context}, where PowerShell "
                    "does not expand variables; use a double-quoted string or put the "
                    "placeholder outside the string"
                )
            if problem and (ph.key, problem) not in reported:
                reported.add((ph.key, problem))
                errors.add("script_body", problem)
        return specs

    @staticmethod
    def _declared_but_invalid(key: str, schema: Any) -> bool:
        """True when the schema lists ``key`` but the entry was rejected for another reason,
        so the placeholder is not reported a second time."""
        if not isinstance(schema, Mapping) or not isinstance(schema.get("parameters"), list):
            return False
        return any(isinstance(p, Mapping) and p.get("key") == key for p in schema["parameters"])

    # -- render ------------------------------------------------------------------------------
    def compile(
        self,
        script_body: str,
        parameters_schema: dict | None,
        default_values: dict | None = None,
        validation_rules: dict | None = None,
    ) -> CompiledTemplate:
        """Validate the template once and keep what every render of it shares: the parameter
        specs, the body with its placeholders already replaced, the generated block's place.
        Raises TemplateDefinitionError like :meth:`validate_template`."""
        specs = self.validate_template(
            script_body, parameters_schema, default_values, validation_rules
        )
        scan = _scan_body(script_body)
        body = self._substitute(script_body, scan)
        head = script_body[: scan.preamble_end]
        if head.lstrip("\ufeff") and not head.endswith(("\n", "\r")):
            head += scan.newline
        rest = body[scan.preamble_end :] if scan.preamble_end else body
        return CompiledTemplate(
            specs=tuple(specs),
            defaults=dict(default_values) if isinstance(default_values, Mapping) else {},
            head=head,
            rest=rest,
            newline=scan.newline,
        )

    def render(
        self,
        script_body: str,
        parameters_schema: dict | None,
        values: dict[str, Any],
        default_values: dict | None = None,
        validation_rules: dict | None = None,
        *,
        secret_delivery: str = "inline",
    ) -> RenderedScript:
        compiled = self.compile(script_body, parameters_schema, default_values, validation_rules)
        return compiled.render(values, secret_delivery=secret_delivery)

    @staticmethod
    def _check_cross_values(
        specs: Sequence[ParameterSpec], resolved: Mapping[str, Any], errors: _Errors
    ) -> None:
        for spec in specs:
            value = resolved.get(spec.key)
            if spec.after is not None and value is not None:
                other = resolved.get(spec.after)
                if other is not None:
                    mine = param_types.comparable(spec.type, value)
                    theirs = param_types.comparable(spec.type, other)
                    try:
                        later = mine > theirs  # type: ignore[operator]
                    except TypeError:
                        errors.add(
                            spec.key,
                            f"and {spec.after} must both have a UTC offset or both have none",
                        )
                        continue
                    if not later:
                        shown = "" if spec.sensitive else f" ({other}); got {value}"
                        errors.add(spec.key, f"must be after {spec.after}{shown}")
            if spec.not_equal is not None and value is not None:
                other = resolved.get(spec.not_equal)
                same = (
                    value.casefold() == other.casefold()
                    if isinstance(value, str) and isinstance(other, str)
                    else value == other
                )
                if other is not None and same:
                    errors.add(spec.key, f"must differ from {spec.not_equal}")

    @staticmethod
    def _substitute(script_body: str, scan: _ScanResult) -> str:
        if not scan.placeholders:
            return script_body
        parts: list[str] = []
        pos = 0
        for ph in scan.placeholders:
            parts.append(script_body[pos : ph.start])
            parts.append("${" + RESERVED_VARIABLE_PREFIX + ph.key + "}")
            pos = ph.end
        parts.append(script_body[pos:])
        # The preamble holds no placeholders (validate_template refuses them), so indices
        # up to preamble_end are unchanged.
        return "".join(parts)

    # -- redaction ---------------------------------------------------------------------------
    @staticmethod
    def sensitive_keys(parameters_schema: dict | None) -> set[str]:
        """Keys of parameters marked ``sensitive`` or of type ``password``. Lenient: entries
        that are malformed are skipped rather than reported."""
        keys: set[str] = set()
        if not isinstance(parameters_schema, Mapping):
            return keys
        params = parameters_schema.get("parameters")
        if not isinstance(params, list):
            return keys
        for param in params:
            if not isinstance(param, Mapping) or not isinstance(param.get("key"), str):
                continue
            if param.get("sensitive") is True or param.get("type") == "password":
                keys.add(param["key"])
        return keys

    @staticmethod
    def redact_sensitive(parameters: dict[str, Any], sensitive_keys: set[str]) -> dict[str, Any]:
        """A copy of ``parameters`` with the value of every sensitive key replaced by
        REDACTION_MARKER (whatever the value, ``None`` included)."""
        return {
            key: (REDACTION_MARKER if key in sensitive_keys else value)
            for key, value in (parameters or {}).items()
        }


# --------------------------------------------------------------------------------------------
# Compiled templates
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CompiledTemplate:
    """A validated template, ready to render any number of value sets. Immutable, so one
    instance serves every thread."""

    specs: tuple[ParameterSpec, ...]
    defaults: Mapping[str, Any]
    head: str
    rest: str
    newline: str
    # Derived from the fields above once, so that a render only formats values.
    keys: frozenset[str] = field(init=False)
    sensitive: frozenset[str] = field(init=False)
    prefixes: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "keys", frozenset(spec.key for spec in self.specs))
        set_(self, "sensitive", frozenset(spec.key for spec in self.specs if spec.sensitive))
        set_(self, "prefixes", tuple(f"${spec.variable_name} = " for spec in self.specs))

    def render(self, values: dict[str, Any], *, secret_delivery: str = "inline") -> RenderedScript:
        specs = self.specs
        if secret_delivery not in SECRET_DELIVERY_MODES:
            raise ValueError(f"unknown secret delivery {secret_delivery!r}")
        if values is None:
            values = {}
        errors = _Errors()
        if not isinstance(values, Mapping):
            raise ScriptRenderError({"parameters": ["must be an object of parameter values"]})
        # One level per parameter: an unknown key is reported under its own name.
        for unknown in sorted(str(k) for k in values if k not in self.keys):
            takes = ", ".join(spec.key for spec in specs) or "no parameters"
            errors.add(unknown, f"is not a parameter of this template (it takes: {takes})")
        defaults = self.defaults

        resolved: dict[str, Any] = {}
        # Sensitive text parameters the script reads at run time: no value is needed, and one
        # given is not used (so it cannot reach the script text).
        deferred = (
            frozenset()
            if secret_delivery == "inline"
            else frozenset(
                spec.key for spec in specs if spec.sensitive and spec.type in _SINGLE_LINE_TYPES
            )
        )
        for spec in specs:
            if spec.key in deferred:
                resolved[spec.key] = None
                continue
            raw = values.get(spec.key)
            if spec.required and spec.type == "multichoice" and spec.key in values and raw == []:
                # An explicit empty selection is an answer, not a request for the default.
                choices = ", ".join(f"'{o}'" for o in spec.options[:50])
                errors.add(spec.key, f"is required: choose at least one of {choices}")
                continue
            if _is_empty(raw):
                if not _is_empty(spec.default):
                    raw = spec.default
                elif not _is_empty(defaults.get(spec.key)):
                    raw = defaults[spec.key]
            if _is_empty(raw):
                if spec.required:
                    errors.add(spec.key, "is required")
                resolved[spec.key] = [] if spec.type == "multichoice" else None
                continue
            normalised, problems = _coerce(spec, raw, spec.validation)
            if problems:
                errors.extend(spec.key, _scrubbed(spec, raw, problems))
            else:
                resolved[spec.key] = normalised
        if not errors:
            ScriptTemplateEngine._check_cross_values(specs, resolved, errors)
        if errors:
            raise ScriptRenderError(errors.items)
        if not specs:
            script = self.head + self.rest
            return RenderedScript(
                script=script, stored_script=script, values={}, secret_delivery=secret_delivery
            )

        real_lines = ["# >>> ResolutionFlow parameters (generated)"]
        stored_lines = real_lines.copy()
        secret_inputs: list[SecretInput] = []
        sensitive = self.sensitive
        for spec, prefix in zip(specs, self.prefixes, strict=True):
            if spec.key in deferred:
                line, secret = _run_time_input(spec, secret_delivery)
                real_lines.append(line)
                stored_lines.append(line)
                secret_inputs.append(secret)
                continue
            value = resolved[spec.key]
            real = prefix + _ps_literal(value)
            real_lines.append(real)
            if spec.key in sensitive and not _is_empty(value):
                stored_lines.append(prefix + _REDACTED_LITERAL)
            else:
                stored_lines.append(real)
        nl = self.newline
        tail = nl + "# <<< ResolutionFlow parameters" + nl + nl + self.rest
        return RenderedScript(
            script=self.head + nl.join(real_lines) + tail,
            stored_script=self.head + nl.join(stored_lines) + tail,
            values=resolved,
            redacted_values={
                key: (REDACTION_MARKER if key in sensitive else value)
                for key, value in resolved.items()
            },
            secret_delivery=secret_delivery,
            secret_inputs=tuple(secret_inputs),
            ignored_values=tuple(sorted(key for key in deferred if not _is_empty(values.get(key)))),
        )


_REDACTED_LITERAL = quote_ps_string(REDACTION_MARKER)


class CompiledTemplateCache:
    """Compiled templates of this process, keyed by (template id, version), least recently
    used first out.

    A template's version moves only with its body or parameter schema; its default values and
    validation rules change in place. So an entry also keeps the four inputs it was compiled
    from and is used only when they are all equal to the caller's: a stale entry is compiled
    again, never served."""

    def __init__(self, engine: ScriptTemplateEngine, maxsize: int = 1024) -> None:
        self.engine = engine
        self.maxsize = maxsize
        self._entries: OrderedDict[Hashable, tuple[tuple[Any, ...], CompiledTemplate]] = (
            OrderedDict()
        )
        self._lock = threading.Lock()

    def get(
        self,
        key: Hashable,
        script_body: str,
        parameters_schema: dict | None,
        default_values: dict | None = None,
        validation_rules: dict | None = None,
    ) -> CompiledTemplate:
        inputs = (script_body, parameters_schema, default_values, validation_rules)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0] == inputs:
                self._entries.move_to_end(key)
                return entry[1]
        compiled = self.engine.compile(*inputs)
        # Deep copies of the JSON documents: a caller mutating its dict later cannot make the
        # entry look equal to inputs it was not compiled from.
        frozen = (script_body, *(copy.deepcopy(doc) for doc in inputs[1:]))
        with self._lock:
            self._entries[key] = (frozen, compiled)
            self._entries.move_to_end(key)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)
        return compiled

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
