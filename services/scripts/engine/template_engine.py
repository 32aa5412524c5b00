"""The engine: parses parameter schemas, validates templates and compiles them for rendering."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from services.scripts import param_types
from services.scripts.engine.compiled import CompiledTemplate
from services.scripts.engine.scanner import (
    _CTX_BRACED,
    _CTX_SQ,
    _CTX_SQ_HERE,
    _scan_body,
    _ScanResult,
)
from services.scripts.engine.spec import (
    _CROSS_FIELD_RULES,
    _FORBIDDEN_CONTROL_RE,
    _KEY_RE,
    _NEWLINE_RE,
    _PARAMETER_FIELDS,
    _SURROGATE_RE,
    MAX_OPTIONS,
    PARAM_TYPES,
    RESERVED_VARIABLE_PREFIX,
    ParameterSpec,
    RenderedScript,
    TemplateDefinitionError,
    _Errors,
)
from services.scripts.engine.values import _check_rules, _coerce, _is_empty
from shared.vocabulary import REDACTION_MARKER


class ScriptTemplateEngine:
    """Validates PowerShell templates and renders them with injection-safe parameter values."""

    # -- schema ------------------------------------------------------------------------------
    def parse_parameters(self, parameters_schema: dict[str, Any] | None) -> list[ParameterSpec]:
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
        parameters_schema: dict[str, Any] | None,
        default_values: dict[str, Any] | None = None,
        validation_rules: dict[str, Any] | None = None,
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
        parameters_schema: dict[str, Any] | None,
        default_values: dict[str, Any] | None = None,
        validation_rules: dict[str, Any] | None = None,
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
        parameters_schema: dict[str, Any] | None,
        values: dict[str, Any],
        default_values: dict[str, Any] | None = None,
        validation_rules: dict[str, Any] | None = None,
        *,
        secret_delivery: str = "inline",
    ) -> RenderedScript:
        compiled = self.compile(script_body, parameters_schema, default_values, validation_rules)
        return compiled.render(values, secret_delivery=secret_delivery)

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
    def sensitive_keys(parameters_schema: dict[str, Any] | None) -> set[str]:
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
