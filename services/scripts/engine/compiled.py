"""Compiled templates: a validated template ready to render any number of value sets, and
the per-process cache of them."""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from services.scripts import param_types
from services.scripts.engine.literals import _ps_literal, quote_ps_string
from services.scripts.engine.spec import (
    _SINGLE_LINE_TYPES,
    SECRET_DELIVERY_MODES,
    ParameterSpec,
    RenderedScript,
    ScriptRenderError,
    SecretInput,
    _Errors,
)
from services.scripts.engine.values import _coerce, _is_empty, _run_time_input, _scrubbed
from shared.vocabulary import REDACTION_MARKER

if TYPE_CHECKING:
    from services.scripts.engine.template_engine import ScriptTemplateEngine


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
    # Per spec, the value an empty answer takes: the parameter's own default, else the
    # template's, else None (nothing to fall back on).
    fallbacks: tuple[Any, ...] = field(init=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "keys", frozenset(spec.key for spec in self.specs))
        set_(self, "sensitive", frozenset(spec.key for spec in self.specs if spec.sensitive))
        set_(self, "prefixes", tuple(f"${spec.variable_name} = " for spec in self.specs))
        set_(self, "fallbacks", tuple(self._fallback(spec) for spec in self.specs))

    def _fallback(self, spec: ParameterSpec) -> Any:
        if not _is_empty(spec.default):
            return spec.default
        template_default = self.defaults.get(spec.key)
        return None if _is_empty(template_default) else template_default

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
        for spec, fallback in zip(specs, self.fallbacks, strict=True):
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
                raw = fallback
            if raw is None:
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
            _check_cross_values(specs, resolved, errors)
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
        parameters_schema: dict[str, Any] | None,
        default_values: dict[str, Any] | None = None,
        validation_rules: dict[str, Any] | None = None,
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
