"""PowerShell literals: every value the engine writes into a script goes through these."""

from __future__ import annotations

import math
from typing import Any

from services.scripts.engine.spec import _SINGLE_QUOTE_RE


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
