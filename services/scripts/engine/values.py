"""Value coercion: checking and normalising one value against its parameter's type and
validation rules, and checking the rules themselves."""

from __future__ import annotations

import functools
import ipaddress
import math
import re
from collections.abc import Mapping
from typing import Any

import re2

from services.scripts import param_types
from services.scripts.engine.literals import quote_ps_string
from services.scripts.engine.spec import (
    _ALLOWED_RULES,
    _EMAIL_LOCAL_RE,
    _FORBIDDEN_CONTROL_RE,
    _HOSTNAME_RE,
    _INT_STR_RE,
    _NEWLINE_RE,
    _NUMBER_STR_RE,
    _RULE_KEYS,
    _SINGLE_LINE_TYPES,
    _SURROGATE_RE,
    _SUSPECT_TEXT_RE,
    _TEXT_TYPES,
    ENV_VARIABLE_PREFIX,
    INT64_MAX,
    INT64_MIN,
    MAX_PATH_LENGTH,
    MAX_PATTERN_LENGTH,
    MAX_TEXT_LENGTH,
    ParameterSpec,
    SecretInput,
    _Errors,
)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_text(value: str, ptype: str, rules: Mapping[str, Any] | None = None) -> list[str]:
    errors: list[str] = []
    if _SUSPECT_TEXT_RE.search(value):
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


# Patterns run on RE2, whose matching time is linear in the value's length whatever the
# pattern: Python's backtracking `re` let a 26-character pattern freeze a gateway process.
# Patterns RE2 cannot run (backreferences, lookaround, huge repetitions) are refused when the
# template is saved; values longer than this are refused before any matching.
MAX_PATTERN_SUBJECT_LENGTH = 8_192
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False
_RE2_OPTIONS.max_mem = 8 << 20


class PatternError(ValueError):
    """A validation pattern that the linear-time engine cannot run."""


@functools.lru_cache(maxsize=1024)
def compile_pattern(pattern: str) -> Any:
    """The compiled RE2 form of a template author's `validation.pattern`."""
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        detail = exc.args[0] if exc.args else ""
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", errors="replace")
        raise PatternError(
            f"not supported by the linear-time regex engine (RE2: no backreferences, "
            f"lookaround or huge repetitions): {detail}"
        ) from exc


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
        if len(value) > MAX_PATTERN_SUBJECT_LENGTH:
            errors.append(
                f"must be at most {MAX_PATTERN_SUBJECT_LENGTH} characters to be checked against "
                "the required pattern"
            )
            return errors
        try:
            if compile_pattern(pattern).fullmatch(value) is None:
                errors.append(f"must be {hint}" if hint else f"must match the pattern {pattern}")
        except PatternError:  # pragma: no cover - patterns are checked at definition time
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
            try:
                compile_pattern(rule)
            except PatternError as exc:
                errors.add(rule_path, str(exc))
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
