"""Unit tests for the PowerShell template engine."""

from __future__ import annotations

from typing import Any

import pytest

from services.scripts.engine import (
    PARAM_TYPES,
    REDACTION_MARKER,
    ParameterSpec,
    RenderedScript,
    ScriptRenderError,
    ScriptTemplateEngine,
    TemplateDefinitionError,
    quote_ps_string,
)

ENGINE = ScriptTemplateEngine()


def params(*entries: Any) -> dict[str, Any]:
    return {"parameters": list(entries)}


def p(key: str, ptype: str = "string", **extra: Any) -> dict[str, Any]:
    return {"key": key, "type": ptype, **extra}


def template_errors(
    body: str = "Write-Output 'ok'",
    schema: Any = None,
    default_values: Any = None,
    validation_rules: Any = None,
) -> dict[str, list[str]]:
    with pytest.raises(TemplateDefinitionError) as info:
        ENGINE.validate_template(body, schema, default_values, validation_rules)
    assert info.value.errors, "a TemplateDefinitionError must say what is wrong"
    return info.value.errors


def render_errors(
    body: str, schema: dict[str, Any], values: Any, **kwargs: Any
) -> dict[str, list[str]]:
    with pytest.raises(ScriptRenderError) as info:
        ENGINE.render(body, schema, values, **kwargs)
    assert info.value.errors
    return info.value.errors


def assignment(rendered: str, key: str) -> str:
    prefix = f"$rfp_{key} = "
    lines = [line for line in rendered.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, rendered
    return lines[0][len(prefix) :]


# --------------------------------------------------------------------------------------------
# parse_parameters
# --------------------------------------------------------------------------------------------


def test_param_types_are_the_documented_set() -> None:
    assert PARAM_TYPES == {
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
        "date",
        "datetime",
        "guid",
        "sid",
        "cidr",
        "url",
        "upn",
        "mac",
        "registry_path",
    }


@pytest.mark.parametrize("schema", [None, {}, {"parameters": []}])
def test_empty_schema_has_no_parameters(schema: dict[str, Any] | None) -> None:
    assert ENGINE.parse_parameters(schema) == []


def test_parse_full_parameter() -> None:
    [spec] = ENGINE.parse_parameters(
        params(
            {
                "key": "days",
                "label": "Days",
                "type": "integer",
                "required": True,
                "sensitive": False,
                "default": "30",
                "help": "How far back",
                "options": None,
                "validation": {"min": 1, "max": 365},
            }
        )
    )
    assert spec == ParameterSpec(
        key="days",
        label="Days",
        type="integer",
        required=True,
        sensitive=False,
        default=30,
        help="How far back",
        options=(),
        validation={"min": 1, "max": 365},
    )
    assert spec.variable_name == "rfp_days"


def test_label_defaults_to_key_and_flags_default_false() -> None:
    [spec] = ENGINE.parse_parameters(params(p("user")))
    assert (spec.label, spec.required, spec.sensitive, spec.default) == ("user", False, False, None)


def test_password_is_always_sensitive() -> None:
    [spec] = ENGINE.parse_parameters(params(p("pw", "password", sensitive=False)))
    assert spec.sensitive is True


def test_options_accept_strings_and_value_objects() -> None:
    [spec] = ENGINE.parse_parameters(
        params(p("mode", "choice", options=["a", {"value": "b", "label": "Bee"}]))
    )
    assert spec.options == ("a", "b")


@pytest.mark.parametrize("bad_key", ["1abc", "a-b", "", "a" * 65, "sp ace", 5, None, "é"])
def test_bad_key_names(bad_key: Any) -> None:
    errors = template_errors(schema=params({"key": bad_key, "type": "string"}))
    assert "parameters_schema.parameters[0].key" in errors


def test_unknown_type() -> None:
    errors = template_errors(schema=params(p("ok"), p("x", "foo")))
    assert "unknown type 'foo'" in errors["parameters_schema.parameters[1].type"][0]


def test_duplicate_keys_are_case_insensitive() -> None:
    errors = template_errors(schema=params(p("user"), p("User"), p("user")))
    assert "parameters_schema.parameters[1].key" in errors
    assert "parameters_schema.parameters[2].key" in errors
    assert "duplicate" in errors["parameters_schema.parameters[1].key"][0]


@pytest.mark.parametrize("ptype", ["choice", "multichoice"])
@pytest.mark.parametrize("options", [None, [], "a,b"])
def test_choice_needs_options(ptype: str, options: Any) -> None:
    errors = template_errors(schema=params(p("c", ptype, options=options)))
    assert "parameters_schema.parameters[0].options" in errors


def test_duplicate_and_bad_options() -> None:
    errors = template_errors(schema=params(p("c", "choice", options=["a", "a", "", "x\ny", 3])))
    for index in (1, 2, 3, 4):
        assert f"parameters_schema.parameters[0].options[{index}]" in errors


def test_options_on_non_choice_type() -> None:
    errors = template_errors(schema=params(p("c", "string", options=["a"])))
    assert "parameters_schema.parameters[0].options" in errors


def test_choice_default_outside_options() -> None:
    errors = template_errors(schema=params(p("c", "choice", options=["a", "b"], default="z")))
    assert errors == {
        "parameters_schema.parameters[0].default": [
            "'z' is not one of the allowed options: 'a', 'b'"
        ]
    }


def test_multichoice_default_outside_options() -> None:
    errors = template_errors(
        schema=params(p("c", "multichoice", options=["a", "b"], default=["a", "z"]))
    )
    assert "parameters_schema.parameters[0].default" in errors


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        (p("n", "integer", default="abc"), "default"),
        (p("n", "integer", default=True), "default"),
        (p("n", "number", default="1.2.3"), "default"),
        (p("b", "boolean", default="yes"), "default"),
        (p("e", "email", default="not-an-email"), "default"),
        (p("h", "hostname", default="bad_host"), "default"),
        (p("i", "ip", default="300.1.1.1"), "default"),
        (p("s", "string", default="ab", validation={"min_length": 3}), "default"),
        (p("s", "string", default="abc", validation={"pattern": "[0-9]+"}), "default"),
        (p("n", "integer", default=500, validation={"max": 10}), "default"),
    ],
)
def test_default_must_satisfy_type_and_rules(entry: dict[str, Any], field: str) -> None:
    errors = template_errors(schema=params(entry))
    assert f"parameters_schema.parameters[0].{field}" in errors


def test_invalid_regex() -> None:
    errors = template_errors(schema=params(p("s", validation={"pattern": "(unclosed"})))
    assert (
        "invalid regular expression"
        in errors["parameters_schema.parameters[0].validation.pattern"][0]
    )


@pytest.mark.parametrize(
    ("ptype", "rules"),
    [("string", {"min_length": 5, "max_length": 2}), ("integer", {"min": 10, "max": 1})],
)
def test_min_greater_than_max(ptype: str, rules: dict[str, Any]) -> None:
    errors = template_errors(schema=params(p("x", ptype, validation=rules)))
    assert "is greater than" in errors["parameters_schema.parameters[0].validation"][0]


@pytest.mark.parametrize(
    ("ptype", "rules", "field"),
    [
        ("string", {"min": 1}, "min"),
        ("integer", {"pattern": "x"}, "pattern"),
        ("boolean", {"max_length": 3}, "max_length"),
        ("string", {"maxlength": 3}, "maxlength"),
        ("string", {"min_length": -1}, "min_length"),
        ("string", {"max_length": 2.5}, "max_length"),
        ("integer", {"min": "1"}, "min"),
        ("integer", {"max": True}, "max"),
        ("string", {"pattern": 5}, "pattern"),
    ],
)
def test_bad_validation_rules(ptype: str, rules: dict[str, Any], field: str) -> None:
    errors = template_errors(schema=params(p("x", ptype, validation=rules)))
    assert f"parameters_schema.parameters[0].validation.{field}" in errors


def test_unknown_parameter_field_is_refused() -> None:
    # A typo in "sensitive" must not silently leave a secret unredacted.
    errors = template_errors(schema=params(p("pw", sensitve=True)))
    assert "parameters_schema.parameters[0].sensitve" in errors


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        (p("x", required="yes"), "required"),
        (p("x", sensitive=1), "sensitive"),
        (p("x", label=3), "label"),
        (p("x", help=["h"]), "help"),
        (p("x", validation="min=1"), "validation"),
    ],
)
def test_bad_field_types(entry: dict[str, Any], field: str) -> None:
    errors = template_errors(schema=params(entry))
    assert f"parameters_schema.parameters[0].{field}" in errors


@pytest.mark.parametrize(
    ("schema", "key"),
    [
        ("params", "parameters_schema"),
        ({"parameters": {"key": "x"}}, "parameters_schema.parameters"),
        ({"parameters": ["x"]}, "parameters_schema.parameters[0]"),
        ({"parameters": [], "extra": 1}, "parameters_schema"),
    ],
)
def test_malformed_schema(schema: Any, key: str) -> None:
    assert key in template_errors(schema=schema)


def test_all_problems_are_collected() -> None:
    errors = template_errors(
        body="Write-Output {{missing}}",
        schema=params(p("1bad"), p("t", "foo"), p("c", "choice")),
        default_values={"nope": 1},
        validation_rules={"also_nope": {"min": 1}},
    )
    assert {
        "parameters_schema.parameters[0].key",
        "parameters_schema.parameters[1].type",
        "parameters_schema.parameters[2].options",
        "default_values.nope",
        "validation_rules.also_nope",
        "script_body",
    } <= set(errors)


def test_parse_parameters_raises_template_definition_error() -> None:
    with pytest.raises(TemplateDefinitionError) as info:
        ENGINE.parse_parameters(params(p("x", "nope")))
    assert isinstance(info.value, ValueError)
    assert "parameters_schema.parameters[0].type" in str(info.value)


# --------------------------------------------------------------------------------------------
# template-level default_values and validation_rules
# --------------------------------------------------------------------------------------------


def test_validation_rules_merge_over_parameter_rules() -> None:
    schema = params(p("n", "integer", validation={"min": 1, "max": 100}))
    [spec] = ENGINE.validate_template("Write-Output {{n}}", schema, None, {"n": {"max": 5}})
    assert spec.validation == {"min": 1, "max": 5}
    errors = render_errors(
        "Write-Output {{n}}", schema, {"n": 10}, validation_rules={"n": {"max": 5}}
    )
    assert errors == {"n": ["must be between 1 and 5 (got 10)"]}
    assert ENGINE.render("Write-Output {{n}}", schema, {"n": 10}).values == {"n": 10}


def test_validation_rules_problems() -> None:
    schema = params(p("n", "integer", validation={"max": 5}, default=4), p("s"))
    errors = template_errors(
        "Write-Output {{n}} {{s}}",
        schema,
        validation_rules={"n": {"min": 10}, "s": {"pattern": "("}, "zz": {}},
    )
    assert "greater than" in errors["validation_rules.n"][0]
    assert "validation_rules.s.pattern" in errors
    assert "validation_rules.zz" in errors
    # The parameter's default (4) breaks the merged min of 10.
    assert "parameters_schema.parameters[0].default" in errors


def test_validation_rules_must_be_an_object() -> None:
    assert "validation_rules" in template_errors(schema=params(p("x")), validation_rules=[1])


def test_default_values_problems() -> None:
    schema = params(p("n", "integer"), p("c", "choice", options=["a"]))
    errors = template_errors(
        "Write-Output {{n}} {{c}}", schema, default_values={"n": "ten", "c": "b", "zz": 1}
    )
    assert set(errors) == {"default_values.n", "default_values.c", "default_values.zz"}
    assert "default_values" in template_errors(schema=schema, default_values=["x"])


# --------------------------------------------------------------------------------------------
# script body checks
# --------------------------------------------------------------------------------------------

USER = params(p("user"))


@pytest.mark.parametrize(
    "body",
    [
        "Write-Output '{{user}}'",
        "Write-Output 'it''s {{user}}'",
        "Write-Output \u2018{{user}}\u2019",
        "$x = @'\nHello {{user}}\n'@\n$x",
        "$x = \"$(Get-Thing '{{user}}')\"",
        "$x = @\"\n$(Get-Thing '{{user}}')\n\"@",
        "${ {{user}} } = 1",
    ],
)
def test_placeholder_in_verbatim_context_is_refused(body: str) -> None:
    errors = template_errors(body, USER)
    assert "placeholder '{{user}}' is inside" in errors["script_body"][0]


@pytest.mark.parametrize(
    "body",
    [
        "Write-Output {{user}}",
        "Write-Output {{ user }}",
        'Write-Output "Hello {{user}}"',
        'Write-Output "He said ""hi"" to {{user}}"',
        "Write-Output 'it''s' {{user}}",
        "Write-Output `'{{user}}",
        '$x = @"\nHello {{user}}\n"@\n$x',
        "$x = \"$(Get-Date -Format 'yyyy') {{user}}\"",
        "# note: unlocks {{user}}\nWrite-Output {{user}}",
        "<# .SYNOPSIS\n Unlock '{{user}}\n#>\nWrite-Output {{user}}",
        "function Get-X { param($Name) $Name }\nGet-X -Name {{user}}",
        "$obj.{{user}}",
        "Get-Thing -Name:{{user}}",
        "Write-Output 'a' '{{' 'user}}'",
    ],
)
def test_placeholder_in_expanding_context_is_accepted(body: str) -> None:
    [spec] = ENGINE.validate_template(body, USER)
    assert spec.key == "user"


def test_placeholder_without_parameter() -> None:
    errors = template_errors("Write-Output {{user}} {{other}}", USER)
    assert errors == {"script_body": ["placeholder '{{other}}' has no parameter of that key"]}


def test_placeholder_without_parameter_reported_once() -> None:
    errors = template_errors("{{other}} {{other}}", USER)
    assert len(errors["script_body"]) == 1


def test_placeholder_for_invalid_parameter_is_not_double_reported() -> None:
    errors = template_errors("Write-Output {{user}}", params(p("user", "bogus")))
    assert "script_body" not in errors


@pytest.mark.parametrize(
    "body",
    [
        "$rfp_user = 'evil'\nWrite-Output {{user}}",
        "${RFP_user} = 'evil'\nWrite-Output {{user}}",
        "Set-Variable -Name rfp_user -Value x\nWrite-Output {{user}}",
        "Write-Output $script:Rfp_thing",
    ],
)
def test_reserved_prefix_is_refused(body: str) -> None:
    errors = template_errors(body, USER)
    assert any("reserved" in message for message in errors["script_body"])


def test_reserved_prefix_inside_other_names_is_fine() -> None:
    ENGINE.validate_template("$myrfp_x = 1\nWrite-Output $myrfp_x {{user}}", USER)


@pytest.mark.parametrize(
    "body",
    [
        "param($Name)\nWrite-Output {{user}}",
        "[CmdletBinding()]\nparam (\n  [string]$Name\n)\nWrite-Output {{user}}",
        "#Requires -Version 5.1\nPARAM($x)\n{{user}}",
    ],
)
def test_script_level_param_block_is_refused(body: str) -> None:
    errors = template_errors(body, USER)
    assert any("param()" in message for message in errors["script_body"])


def test_placeholder_in_requires_line_is_refused() -> None:
    errors = template_errors("#Requires -Modules {{user}}\nWrite-Output 1", USER)
    assert "#Requires" in errors["script_body"][0]


@pytest.mark.parametrize("body", ["Write-Output ${{user}}", 'Write-Output "x ${{user}}"'])
def test_placeholder_directly_after_dollar_is_refused(body: str) -> None:
    errors = template_errors(body, USER)
    assert "directly after '$'" in errors["script_body"][0]


@pytest.mark.parametrize("body", ["", "   \n", None, 5])
def test_body_must_be_non_empty_text(body: Any) -> None:
    assert "script_body" in template_errors(body, USER)


def test_body_with_nul_is_refused() -> None:
    assert "script_body" in template_errors("Write-Output 1\x00", None)


def test_deep_nesting_is_refused_not_crashing() -> None:
    body = '"$(' * 150 + ')"' * 150
    assert "nested" in template_errors(body, None)["script_body"][0]


# --------------------------------------------------------------------------------------------
# render: values
# --------------------------------------------------------------------------------------------

VALID_VALUES: list[tuple[str, dict[str, Any], Any, Any, str | None]] = [
    ("string", {}, "jdoe", "jdoe", "'jdoe'"),
    ("text", {}, "line1\nline2", "line1\nline2", "'line1\nline2'"),
    ("integer", {}, 42, 42, "42"),
    ("integer", {}, "-7", -7, "-7"),
    ("integer", {}, 3.0, 3, "3"),
    ("number", {}, 2.5, 2.5, "2.5"),
    ("number", {}, "1e3", 1000.0, "1000.0"),
    ("number", {}, 7, 7, "7"),
    ("boolean", {}, True, True, "$true"),
    ("boolean", {}, False, False, "$false"),
    ("boolean", {}, "TRUE", True, "$true"),
    ("boolean", {}, "false", False, "$false"),
    ("choice", {"options": ["a", "b"]}, "b", "b", "'b'"),
    ("multichoice", {"options": ["a", "b", "c"]}, ["c", "a"], ["c", "a"], "@('c','a')"),
    ("email", {}, "o'brien@example.com", "o'brien@example.com", "'o''brien@example.com'"),
    ("hostname", {}, "srv-01.corp.example.com", "srv-01.corp.example.com", None),
    ("hostname", {}, "SRV01", "SRV01", "'SRV01'"),
    ("ip", {}, "10.0.0.1", "10.0.0.1", "'10.0.0.1'"),
    ("ip", {}, "fe80::1", "fe80::1", "'fe80::1'"),
    ("path", {}, "C:\\Program Files\\App", "C:\\Program Files\\App", None),
    ("path", {}, "\\\\fs01\\share$\\it", "\\\\fs01\\share$\\it", None),
    ("password", {}, "P@ss'w0rd$(x)", "P@ss'w0rd$(x)", "'P@ss''w0rd$(x)'"),
]


@pytest.mark.parametrize(("ptype", "extra", "given", "normalised", "literal"), VALID_VALUES)
def test_valid_values(
    ptype: str, extra: dict[str, Any], given: Any, normalised: Any, literal: str | None
) -> None:
    rendered = ENGINE.render("Write-Output {{v}}", params(p("v", ptype, **extra)), {"v": given})
    assert rendered.values == {"v": normalised}
    if literal is not None:
        assert assignment(rendered.script.replace("\nline2", "\\nline2"), "v") == literal.replace(
            "\nline2", "\\nline2"
        )


INVALID_VALUES: list[tuple[str, dict[str, Any], Any]] = [
    ("string", {}, 5),
    ("string", {}, ["a"]),
    ("string", {}, "two\nlines"),
    ("string", {}, "carriage\rreturn"),
    ("string", {}, "nul\x00byte"),
    ("string", {}, "bell\x07"),
    ("string", {}, "esc\x1b[31m"),
    ("string", {}, "x" * 65_537),
    ("string", {}, "lone \ud800 surrogate"),
    ("text", {}, "nul\x00byte"),
    ("text", {}, "vertical\x0btab"),
    ("integer", {}, "abc"),
    ("integer", {}, "12abc"),
    ("integer", {}, "1.5"),
    ("integer", {}, 1.5),
    ("integer", {}, True),
    ("integer", {}, 2**63),
    ("integer", {}, "99999999999999999999"),
    ("integer", {}, [1]),
    ("number", {}, "abc"),
    ("number", {}, "1e5000"),
    ("number", {}, float("nan")),
    ("number", {}, float("inf")),
    ("number", {}, False),
    ("number", {}, "0x10"),
    ("boolean", {}, "yes"),
    ("boolean", {}, 1),
    ("boolean", {}, 0),
    ("choice", {"options": ["a", "b"]}, "c"),
    ("choice", {"options": ["a", "b"]}, "A"),
    ("choice", {"options": ["a", "b"]}, ["a"]),
    ("multichoice", {"options": ["a", "b"]}, "a"),
    ("multichoice", {"options": ["a", "b"]}, ["a", "z"]),
    ("multichoice", {"options": ["a", "b"]}, ["a", "a"]),
    ("multichoice", {"options": ["a", "b"]}, [1]),
    ("email", {}, "plainaddress"),
    ("email", {}, "a@b"),
    ("email", {}, "a b@example.com"),
    ("email", {}, "a..b@example.com"),
    ("email", {}, "a@exa_mple.com"),
    ("email", {}, "x" * 65 + "@example.com"),
    ("email", {}, "user@example.com\n"),
    ("hostname", {}, "bad_host"),
    ("hostname", {}, "-leading.example.com"),
    ("hostname", {}, "trailing-.example.com"),
    ("hostname", {}, "a" * 64 + ".example.com"),
    ("hostname", {}, ".".join(["abcdefghi"] * 26)),
    ("hostname", {}, "double..dot"),
    ("hostname", {}, "host name"),
    ("hostname", {}, "h\u00f6st"),
    ("hostname", {}, "host;Stop-Computer"),
    ("ip", {}, "300.1.1.1"),
    ("ip", {}, "10.0.0"),
    ("ip", {}, "010.0.0.1"),
    ("ip", {}, "10.0.0.1/24"),
    ("ip", {}, "::g"),
    ("ip", {}, 167772161),
    ("path", {}, "C:\\a\x00b"),
    ("path", {}, "C:\\" + "a" * 32_768),
    ("path", {}, "C:\\a\nb"),
    ("password", {}, "x\x00"),
]


@pytest.mark.parametrize(("ptype", "extra", "value"), INVALID_VALUES)
def test_invalid_values(ptype: str, extra: dict[str, Any], value: Any) -> None:
    errors = render_errors("Write-Output {{v}}", params(p("v", ptype, **extra)), {"v": value})
    assert list(errors) == ["v"]


def test_hostname_length_limit() -> None:
    host = ".".join(["a" * 63] * 3) + "." + "a" * 61  # 253 characters
    assert len(host) == 253
    schema = params(p("h", "hostname"))
    assert ENGINE.render("{{h}}", schema, {"h": host}).values["h"] == host
    assert ENGINE.render("{{h}}", schema, {"h": host + "."}).values["h"] == host + "."
    assert "h" in render_errors("{{h}}", schema, {"h": host + "a"})


@pytest.mark.parametrize(
    ("ptype", "rules", "good", "bad", "message"),
    [
        ("string", {"pattern": "[a-z]+"}, "abc", "abc1", "must match the pattern [a-z]+"),
        ("string", {"pattern": "ab"}, "ab", "abab", "must match the pattern ab"),
        ("string", {"min_length": 3}, "abc", "ab", "must be at least 3 characters"),
        ("string", {"max_length": 3}, "abc", "abcd", "must be at most 3 characters"),
        ("password", {"min_length": 12}, "x" * 12, "short", "must be at least 12 characters"),
        ("integer", {"min": 1}, 1, 0, "must be at least 1 (got 0)"),
        ("integer", {"max": 10}, 10, 11, "must be at most 10 (got 11)"),
        ("number", {"min": 0.5}, 0.5, 0.25, "must be at least 0.5 (got 0.25)"),
        ("number", {"max": 1}, 1.0, 1.5, "must be at most 1 (got 1.5)"),
    ],
)
def test_validation_rules_apply(
    ptype: str, rules: dict[str, Any], good: Any, bad: Any, message: str
) -> None:
    schema = params(p("v", ptype, validation=rules))
    assert ENGINE.render("Write-Output {{v}}", schema, {"v": good}).values["v"] == good
    assert render_errors("Write-Output {{v}}", schema, {"v": bad}) == {"v": [message]}


def test_multichoice_count_rules() -> None:
    schema = params(
        p(
            "v",
            "multichoice",
            options=["a", "b", "c"],
            validation={"min_length": 1, "max_length": 2},
        )
    )
    assert render_errors("{{v}}", schema, {"v": ["a", "b", "c"]}) == {
        "v": ["must have at most 2 options selected"]
    }
    assert ENGINE.render("{{v}}", schema, {"v": ["a"]}).values == {"v": ["a"]}


def test_missing_required_value() -> None:
    schema = params(p("user", required=True), p("n", "integer", required=True))
    errors = render_errors("Write-Output {{user}} {{n}}", schema, {"user": ""})
    assert errors == {"user": ["is required"], "n": ["is required"]}


def test_required_boolean_false_is_a_value() -> None:
    schema = params(p("b", "boolean", required=True))
    assert ENGINE.render("if ({{b}}) {}", schema, {"b": False}).values == {"b": False}


def test_required_multichoice_needs_a_selection() -> None:
    schema = params(p("m", "multichoice", options=["a"], required=True))
    assert render_errors("{{m}}", schema, {}) == {"m": ["is required"]}
    assert render_errors("{{m}}", schema, {"m": []}) == {
        "m": ["is required: choose at least one of 'a'"]
    }


def test_an_empty_required_list_is_not_replaced_by_its_default() -> None:
    schema = params(p("m", "multichoice", options=["a", "b"], required=True, default=["a"]))
    assert ENGINE.render("{{m}}", schema, {}).values == {"m": ["a"]}
    assert "m" in render_errors("{{m}}", schema, {"m": []})


def test_unknown_keys_are_reported_each_under_its_own_name() -> None:
    errors = render_errors("Write-Output {{user}}", USER, {"user": "x", "evil": "y", "zz": 1})
    assert errors == {
        "evil": ["is not a parameter of this template (it takes: user)"],
        "zz": ["is not a parameter of this template (it takes: user)"],
    }


def test_values_must_be_a_mapping() -> None:
    assert "parameters" in render_errors("Write-Output {{user}}", USER, ["x"])


def test_all_render_errors_are_collected() -> None:
    schema = params(p("a", "integer"), p("b", "email"), p("c", required=True))
    errors = render_errors("{{a}} {{b}} {{c}}", schema, {"a": "x", "b": "y", "bogus": 1})
    assert set(errors) == {"a", "b", "c", "bogus"}


def test_render_of_invalid_template_raises_definition_error() -> None:
    with pytest.raises(TemplateDefinitionError):
        ENGINE.render("Write-Output '{{user}}'", USER, {"user": "x"})


def test_error_messages_never_echo_values() -> None:
    secret = "hunter2-TOP-SECRET"
    schema = params(p("pw", "password", validation={"pattern": "[0-9]+"}), p("n", "integer"))
    with pytest.raises(ScriptRenderError) as info:
        ENGINE.render("{{pw}} {{n}}", schema, {"pw": secret, "n": secret})
    assert secret not in str(info.value)
    assert secret not in repr(info.value.errors)


# --------------------------------------------------------------------------------------------
# render: defaults
# --------------------------------------------------------------------------------------------


def test_defaults_order() -> None:
    schema = params(
        p("a", default="from-param"),
        p("b", default="from-param"),
        p("c"),
        p("d"),
    )
    default_values = {"b": "from-template", "c": "from-template"}
    rendered = ENGINE.render(
        "{{a}} {{b}} {{c}} {{d}}", schema, {"a": "explicit", "d": ""}, default_values=default_values
    )
    # explicit value > the parameter's own default > default_values[key] > $null
    assert rendered.values == {"a": "explicit", "b": "from-param", "c": "from-template", "d": None}
    assert assignment(rendered.script, "d") == "$null"


def test_default_satisfies_required() -> None:
    schema = params(p("n", "integer", required=True, default=5))
    assert ENGINE.render("{{n}}", schema, {}).values == {"n": 5}


def test_template_default_value_is_normalised() -> None:
    schema = params(p("n", "integer"))
    rendered = ENGINE.render("{{n}}", schema, {}, default_values={"n": "12"})
    assert rendered.values == {"n": 12}
    assert assignment(rendered.script, "n") == "12"


def test_optional_without_value_renders_null_or_empty_array() -> None:
    schema = params(p("s"), p("b", "boolean"), p("m", "multichoice", options=["a"]))
    rendered = ENGINE.render("{{s}} {{b}} {{m}}", schema, {})
    assert rendered.values == {"s": None, "b": None, "m": []}
    assert assignment(rendered.script, "s") == "$null"
    assert assignment(rendered.script, "b") == "$null"
    assert assignment(rendered.script, "m") == "@()"


def test_values_none_means_no_values() -> None:
    assert ENGINE.render("{{s}}", params(p("s")), None).values == {"s": None}  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# render: output shape
# --------------------------------------------------------------------------------------------


def test_placeholders_become_variable_references() -> None:
    body = 'Unlock-ADAccount -Identity {{user}}\nWrite-Output "Unlocked {{ user }}"\n'
    rendered = ENGINE.render(body, USER, {"user": "jdoe"})
    assert isinstance(rendered, RenderedScript)
    assert rendered.script.endswith(
        'Unlock-ADAccount -Identity ${rfp_user}\nWrite-Output "Unlocked ${rfp_user}"\n'
    )
    assert rendered.script.startswith(
        "# >>> ResolutionFlow parameters (generated)\n$rfp_user = 'jdoe'\n"
    )
    assert rendered.script.count("jdoe") == 1


def test_value_is_emitted_once_with_all_quote_characters_doubled() -> None:
    value = "a'b\u2018c\u2019d\u201ae\u201bf\"g$(h)`i;j"
    rendered = ENGINE.render("Write-Output {{user}}", USER, {"user": value})
    assert assignment(rendered.script, "user") == (
        "'a''b\u2018\u2018c\u2019\u2019d\u201a\u201ae\u201b\u201bf\"g$(h)`i;j'"
    )
    assert quote_ps_string("it's") == "'it''s'"


def test_requires_lines_stay_first() -> None:
    body = (
        "#Requires -Version 5.1\n"
        "#requires -Modules ActiveDirectory\n"
        "using namespace System.Text\n"
        "\n"
        "Get-ADUser -Identity {{user}}\n"
    )
    rendered = ENGINE.render(body, USER, {"user": "jdoe"})
    lines = rendered.script.splitlines()
    assert lines[:3] == [
        "#Requires -Version 5.1",
        "#requires -Modules ActiveDirectory",
        "using namespace System.Text",
    ]
    assert lines[3] == "# >>> ResolutionFlow parameters (generated)"
    assert lines[4] == "$rfp_user = 'jdoe'"
    assert rendered.stored_script.splitlines()[:3] == lines[:3]


def test_requires_only_line_without_newline() -> None:
    rendered = ENGINE.render("#Requires -Version 5.1", params(p("x")), {})
    assert rendered.script.startswith("#Requires -Version 5.1\n# >>> ResolutionFlow")


def test_block_goes_first_without_requires() -> None:
    rendered = ENGINE.render("# comment\nWrite-Output {{user}}", USER, {"user": "x"})
    assert rendered.script.startswith("# >>> ResolutionFlow parameters (generated)\n")


def test_crlf_bodies_get_crlf_block() -> None:
    rendered = ENGINE.render(
        "#Requires -Version 5.1\r\nWrite-Output {{user}}\r\n", USER, {"user": "x"}
    )
    assert rendered.script == (
        "#Requires -Version 5.1\r\n"
        "# >>> ResolutionFlow parameters (generated)\r\n"
        "$rfp_user = 'x'\r\n"
        "# <<< ResolutionFlow parameters\r\n"
        "\r\n"
        "Write-Output ${rfp_user}\r\n"
    )


def test_template_without_parameters_is_unchanged() -> None:
    body = "Get-Service Spooler | Restart-Service\n"
    rendered = ENGINE.render(body, None, {})
    assert rendered.script == rendered.stored_script == body
    assert rendered.values == rendered.redacted_values == {}


# --------------------------------------------------------------------------------------------
# sensitive values
# --------------------------------------------------------------------------------------------


def test_stored_script_redacts_sensitive_values() -> None:
    secret = "S3cr3t!'pass"
    schema = params(
        p("user"), p("pw", "password", required=True), p("psk", "string", sensitive=True)
    )
    body = "Set-Thing -User {{user}} -Password {{pw}} -Key {{psk}}"
    rendered = ENGINE.render(body, schema, {"user": "jdoe", "pw": secret, "psk": "wifi-key"})
    assert quote_ps_string(secret) in rendered.script
    assert "wifi-key" in rendered.script
    assert secret not in rendered.stored_script
    assert "S3cr3t" not in rendered.stored_script
    assert "wifi-key" not in rendered.stored_script
    assert assignment(rendered.stored_script, "pw") == f"'{REDACTION_MARKER}'"
    assert assignment(rendered.stored_script, "psk") == f"'{REDACTION_MARKER}'"
    assert assignment(rendered.stored_script, "user") == "'jdoe'"
    assert rendered.values["pw"] == secret
    assert rendered.redacted_values == {
        "user": "jdoe",
        "pw": REDACTION_MARKER,
        "psk": REDACTION_MARKER,
    }
    # Apart from the assignments, both scripts are identical.
    assert (
        rendered.script.replace(quote_ps_string(secret), "'[REDACTED]'").replace(
            "'wifi-key'", "'[REDACTED]'"
        )
        == rendered.stored_script
    )


def test_sensitive_default_is_redacted_too() -> None:
    schema = params(p("pw", "password", default="DefaultSecret1"))
    rendered = ENGINE.render("{{pw}}", schema, {})
    assert "DefaultSecret1" in rendered.script
    assert "DefaultSecret1" not in rendered.stored_script


def test_sensitive_optional_without_value_stays_null() -> None:
    rendered = ENGINE.render("{{pw}}", params(p("pw", "password")), {})
    assert assignment(rendered.stored_script, "pw") == "$null"
    assert rendered.redacted_values == {"pw": REDACTION_MARKER}


def test_sensitive_keys() -> None:
    schema = params(
        p("a", "password"),
        p("b", sensitive=True),
        p("c"),
        p("d", "integer", sensitive=True),
        {"type": "password"},
        "junk",
    )
    assert ScriptTemplateEngine.sensitive_keys(schema) == {"a", "b", "d"}
    assert ScriptTemplateEngine.sensitive_keys(None) == set()
    assert ScriptTemplateEngine.sensitive_keys({"parameters": "x"}) == set()


def test_redact_sensitive() -> None:
    original = {"user": "jdoe", "pw": "secret", "token": None, "n": 3}
    redacted = ScriptTemplateEngine.redact_sensitive(original, {"pw", "token", "absent"})
    assert redacted == {"user": "jdoe", "pw": REDACTION_MARKER, "token": REDACTION_MARKER, "n": 3}
    assert original["pw"] == "secret"  # input untouched
    assert redacted is not original
    assert ScriptTemplateEngine.redact_sensitive({}, {"pw"}) == {}
