"""Redaction on the way out: forbidden values and sensitive parameters scrubbed from everything
the prompt carries and the offline note copies."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from services.notes.bundle import NoteBundle
from services.notes.vocabulary import REDACTED

# Forbidden values shorter than this are not searched for: they would match ordinary words.
MIN_FORBIDDEN_LEN = 4


def forbidden_values(bundle: NoteBundle) -> list[str]:
    values = {
        v.strip() for v in bundle.forbidden_values if v and len(v.strip()) >= MIN_FORBIDDEN_LEN
    }
    return sorted(values, key=lambda v: (-len(v), v))  # longest first, deterministic


_KEY_MARKUP = r"[*_`'\"]*"
# A value after "Key:" / "Key =": optional markup or quote, then one non-space token.
_VALUE = r"[ \t]*[*_`'\"]*[ \t]*(?P<value>[^\s*_`'\",;]+)?"


def sensitive_patterns(bundle: NoteBundle) -> list[tuple[str, re.Pattern[str]]]:
    """For each redacted parameter name: ``Name: value``/``Name = value`` (optionally with
    a leading ``-`` or ``$`` and markdown emphasis or code around the name), and the
    PowerShell form ``-Name 'value'`` / ``-Name "value"`` with a quoted value."""
    patterns = []
    for key in sorted(bundle.sensitive_keys()):
        name = re.escape(key)
        assignment = rf"(?<![\w-])[-$]?{_KEY_MARKUP}{name}{_KEY_MARKUP}[ \t]*[:=]{_VALUE}"
        powershell = rf"(?<![\w-])-{name}[ \t]+['\"](?P<value>[^'\"\s]+)"
        patterns.append((key, re.compile(assignment, re.IGNORECASE)))
        patterns.append((key, re.compile(powershell, re.IGNORECASE)))
    return patterns


def redacted_value_ok(value: str | None) -> bool:
    return value is None or value.startswith(REDACTED) or value.startswith("[REDACTED")


def scrub_text(text: str, bundle: NoteBundle) -> str:
    """``text`` with every forbidden value, and any value written after a redacted parameter
    name (``NewPassword: x``), replaced by ``[REDACTED]``."""
    for value in forbidden_values(bundle):
        text = re.sub(re.escape(value), REDACTED, text, flags=re.IGNORECASE)
    for _key, pattern in sensitive_patterns(bundle):

        def replace(match: re.Match[str]) -> str:
            value = match.group("value")
            if redacted_value_ok(value):
                return match.group(0)
            start, end = match.span("value")
            base = match.start(0)
            whole = match.group(0)
            return whole[: start - base] + REDACTED + whole[end - base :]

        text = pattern.sub(replace, text)
    return text


def scrub_any(value: Any, bundle: NoteBundle) -> Any:
    if isinstance(value, str):
        return scrub_text(value, bundle)
    if isinstance(value, Mapping):
        return {str(k): scrub_any(v, bundle) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_any(v, bundle) for v in value]
    return value
