"""The engine's vocabulary: parameter types and limits, the patterns values are checked
with, the errors it raises and the values it returns."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from services.scripts import param_types

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
# The preamble grammar: blank lines, `#Requires ...` (a line comment to PowerShell, so nothing
# in it can stay open) and `using namespace|module|assembly NAME` followed by nothing
# but a complete comment. NAME is a bare word, a quoted string that cannot expand or continue
# onto the next line (ASCII quotes only: no typographic quote may delimit or appear in it), or
# a module specification hashtable of single-quoted values. Anything else could leave a block
# comment or string open over the generated assignments.
_PS_SQ_BODY = "[^'\u2018-\u201b\\r\\n]*"
_PS_USING_NAME = (
    r"(?:[A-Za-z0-9_.\\/:-]+"
    rf"|'{_PS_SQ_BODY}'"
    r'|"[^"\u201c-\u201e$`\r\n]*"'
    rf"|@\{{[ \t]*[A-Za-z]+[ \t]*=[ \t]*'{_PS_SQ_BODY}'"
    rf"(?:[ \t]*;[ \t]*[A-Za-z]+[ \t]*=[ \t]*'{_PS_SQ_BODY}')*[ \t]*;?[ \t]*\}})"
)
_PS_COMPLETE_COMMENTS = r"(?:[ \t]+<#(?:(?!#>)[^\r\n])*#>)*(?:[ \t]+#[^\r\n]*)?[ \t]*"
_PREAMBLE_LINE_RE = re.compile(
    r"[ \t]*(?:#requires\b[^\r\n]*"
    rf"|using[ \t]+(?:namespace|module|assembly)[ \t]+{_PS_USING_NAME}"
    rf"{_PS_COMPLETE_COMMENTS})?",
    re.IGNORECASE,
)
_USING_LINE_RE = re.compile(r"[ \t]*using[ \t]", re.IGNORECASE)
_FORBIDDEN_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_NEWLINE_RE = re.compile(r"[\r\n]")
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
# Any character one of the three above looks for: a value without one (nearly every value)
# is checked by one search instead of three.
_SUSPECT_TEXT_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\r\n\ud800-\udfff]")
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
