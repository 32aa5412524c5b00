"""Property tests: no parameter value can change the structure of a rendered script.

The rendered scripts are parsed with the PowerShell grammar from tree-sitter-powershell. That
grammar does not treat the typographic quotes U+2018..U+201B as single quotes (PowerShell
does), so the quoting is also checked against a small reference implementation of
PowerShell's own rule for where a single-quoted literal ends.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import tree_sitter_powershell as tsp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tree_sitter import Language, Node, Parser

from services.scripts.engine import (
    REDACTION_MARKER,
    ScriptRenderError,
    ScriptTemplateEngine,
    TemplateDefinitionError,
    quote_ps_string,
)
from services.scripts.engine.spec import INT64_MAX, INT64_MIN, SINGLE_QUOTE_CHARS
from tests.support.examples import examples

PARSER = Parser(Language(tsp.language()))
ENGINE = ScriptTemplateEngine()
SETTINGS = settings(
    max_examples=examples(200), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

# Characters and fragments that matter to PowerShell's tokenizer.
DANGEROUS = [
    "'",
    "\u2018",
    "\u2019",
    "\u201a",
    "\u201b",
    '"',
    "\u201c",
    "\u201d",
    "\u201e",
    "$",
    "$(",
    "$(Remove-Item C:\\ -Recurse)",
    "${env:PATH}",
    "`",
    "`n",
    ";",
    "\n",
    "\r\n",
    "\r",
    "\t",
    "@'",
    "'@",
    '@"',
    '"@',
    "\n'@\n",
    '\n"@\n',
    "#",
    "<#",
    "#>",
    "|",
    "&",
    "&&",
    "||",
    "{",
    "}",
    "{{name}}",
    "(",
    ")",
    "[",
    "]",
    ",",
    "--%",
    "\u2013",  # en dash: PowerShell reads it as '-'
    "\u00a0",
    "''",
    "'; Stop-Computer -Force; '",
    "\u2019; iex $x; \u2018",
]
FORBIDDEN_CONTROLS = [chr(c) for c in range(0x20) if chr(c) not in "\t\n\r"]

_safe_chars = st.characters(codec="utf-8", exclude_characters="".join(FORBIDDEN_CONTROLS))
# Lists of fragments, dangerous ones drawn about two times in three.
TEXT_VALUES = st.lists(
    st.one_of(
        st.sampled_from(DANGEROUS),
        st.sampled_from(DANGEROUS),
        st.text(_safe_chars, max_size=4),
    ),
    max_size=12,
).map("".join)
SINGLE_LINE_VALUES = TEXT_VALUES.map(lambda s: s.replace("\r", "").replace("\n", ""))

TEMPLATES = {
    "command-argument": "Get-Service -Name {{name}} -ErrorAction SilentlyContinue\n",
    "double-quoted": (
        "Write-Output \"Hello {{name}}, today is $(Get-Date -Format 'yyyy-MM-dd')\"\n"
    ),
    "if-condition": (
        "if ({{name}} -eq 'admin') {\n"
        '    Write-Warning "admin account"\n'
        "} else {\n"
        "    Write-Output {{name}}\n"
        "}\n"
    ),
    "pipeline": (
        "{{name}} | ForEach-Object { $_.ToUpper() } | Out-String\n"
        'Get-ChildItem -Path "C:\\Users\\{{name}}\\AppData" |\n'
        "    Measure-Object | Select-Object Count\n"
    ),
    "here-string": ('$report = @"\nUser: {{name}}\nHost: $env:COMPUTERNAME\n"@\n$report\n'),
}


def schema(ptype: str, **extra: Any) -> dict[str, Any]:
    return {"parameters": [{"key": "name", "type": ptype, **extra}]}


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def parse(script: str) -> Node:
    return PARSER.parse(script.encode("utf-8")).root_node


def walk(node: Node) -> Iterator[Node]:
    yield node
    for child in node.children:
        yield from walk(child)


def assert_clean(root: Node) -> None:
    bad = [n for n in walk(root) if n.type == "ERROR" or n.is_missing or n.is_error]
    assert not root.has_error and not bad, [(n.type, n.text) for n in bad]


def shape(node: Node) -> tuple[Any, ...]:
    """The syntax tree with the contents of verbatim string literals abstracted away."""
    if node.type in ("verbatim_string_characters", "verbatim_here_string_characters"):
        return (node.type,)
    if node.child_count == 0:
        text = node.text.decode("utf-8") if node.text is not None else ""
        return (node.type, text)
    return (node.type, tuple(shape(child) for child in node.children))


def assignment_value(root: Node, variable: str) -> Node:
    """The value node of the single top-level assignment to ``$variable``."""
    found = []
    for node in walk(root):
        if node.type != "assignment_expression":
            continue
        left = node.children[0]
        if left.text is not None and left.text.decode() == f"${variable}":
            value = node.child_by_field_name("value")
            assert value is not None
            found.append(value)
    assert len(found) == 1, f"expected one assignment to ${variable}, found {len(found)}"
    return found[0]


def unescape_single_quoted(literal: str) -> str:
    """PowerShell's reading of a single-quoted literal: any pair of single-quote characters
    stands for the first of them."""
    assert literal[0] in SINGLE_QUOTE_CHARS and literal[-1] in SINGLE_QUOTE_CHARS
    quotes = re.escape(SINGLE_QUOTE_CHARS)
    return re.sub(f"([{quotes}])[{quotes}]", r"\1", literal[1:-1])


def powershell_literal_end(text: str, start: int) -> int:
    """Where PowerShell's tokenizer ends a single-quoted literal opened at ``start``
    (Tokenizer.ScanStringLiteral: every one of U+0027, U+2018..U+201B is a quote)."""
    assert text[start] in SINGLE_QUOTE_CHARS
    i = start + 1
    while i < len(text):
        if text[i] in SINGLE_QUOTE_CHARS:
            if i + 1 < len(text) and text[i + 1] in SINGLE_QUOTE_CHARS:
                i += 2
                continue
            return i + 1
        i += 1
    raise AssertionError("unterminated literal")


def single_string_literal(value_node: Node) -> Node:
    literals = [n for n in walk(value_node) if n.type == "string_literal"]
    assert len(literals) == 1, [n.text for n in literals]
    literal = literals[0]
    assert literal.text == value_node.text, "the value is more than one string literal"
    assert [c.type for c in literal.children] == ["verbatim_string_characters"]
    disallowed = {"command", "expandable_string_literal", "sub_expression", "variable"}
    assert not [n for n in walk(value_node) if n.type in disallowed]
    return literal


def check_powershell_rule(script: str, value: str) -> None:
    line_start = script.index("$rfp_name = ")
    literal_start = line_start + len("$rfp_name = ")
    end = powershell_literal_end(script, literal_start)
    literal = script[literal_start:end]
    assert literal == quote_ps_string(value)
    assert unescape_single_quoted(literal) == value
    # The literal is the whole right-hand side: the line ends right after it.
    assert script[end] in "\r\n"


# --------------------------------------------------------------------------------------------
# string values
# --------------------------------------------------------------------------------------------


def test_grammar_does_not_treat_typographic_quotes_as_quotes() -> None:
    """Documents the grammar's gap that the reference check above covers: PowerShell would
    end this literal at U+2019; tree-sitter-powershell reads it as one literal."""
    root = parse("$a = 'x\u2019 ; Stop-Computer'\n")
    literal = single_string_literal(assignment_value(root, "a"))
    assert literal.text is not None and literal.text.decode() == "'x\u2019 ; Stop-Computer'"
    assert powershell_literal_end("'x\u2019 ; Stop-Computer'", 0) == 3


@pytest.mark.parametrize("template", sorted(TEMPLATES))
@SETTINGS
@given(value=TEXT_VALUES)
def test_text_value_cannot_change_script_structure(template: str, value: str) -> None:
    body = TEMPLATES[template]
    rendered = ENGINE.render(body, schema("text", required=False), {"name": value})
    benign = ENGINE.render(body, schema("text", required=False), {"name": "x"})
    root = parse(rendered.script)
    assert_clean(root)
    if value:
        assert shape(root) == shape(parse(benign.script))
        literal = single_string_literal(assignment_value(root, "rfp_name"))
        assert literal.text is not None
        assert unescape_single_quoted(literal.text.decode("utf-8")) == value
        check_powershell_rule(rendered.script, value)
        assert rendered.values["name"] == value
    else:
        assert "$rfp_name = $null" in rendered.script


@pytest.mark.parametrize("ptype", ["string", "password", "path"])
@SETTINGS
@given(value=SINGLE_LINE_VALUES.filter(bool))
def test_single_line_value_is_one_literal(ptype: str, value: str) -> None:
    body = TEMPLATES["command-argument"] + TEMPLATES["double-quoted"]
    rendered = ENGINE.render(body, schema(ptype, required=True), {"name": value})
    root = parse(rendered.script)
    assert_clean(root)
    benign = ENGINE.render(body, schema(ptype, required=True), {"name": "x"})
    assert shape(root) == shape(parse(benign.script))
    literal = single_string_literal(assignment_value(root, "rfp_name"))
    assert literal.text is not None
    assert unescape_single_quoted(literal.text.decode("utf-8")) == value
    check_powershell_rule(rendered.script, value)


@SETTINGS
@given(value=SINGLE_LINE_VALUES.filter(bool))
def test_sensitive_value_never_reaches_stored_script(value: str) -> None:
    body = TEMPLATES["pipeline"]
    rendered = ENGINE.render(body, schema("password", required=True), {"name": value})
    stored_root = parse(rendered.stored_script)
    assert_clean(stored_root)
    literal = single_string_literal(assignment_value(stored_root, "rfp_name"))
    assert literal.text is not None
    assert unescape_single_quoted(literal.text.decode()) == REDACTION_MARKER
    assert quote_ps_string(value) not in rendered.stored_script
    # Apart from that one line the two scripts are the same.
    real_lines = rendered.script.split("\n")
    stored_lines = rendered.stored_script.split("\n")
    diff = [i for i, (a, b) in enumerate(zip(real_lines, stored_lines, strict=True)) if a != b]
    assert len(diff) == 1 and stored_lines[diff[0]].startswith("$rfp_name = ")
    assert rendered.redacted_values == {"name": REDACTION_MARKER}


@SETTINGS
@given(
    prefix=TEXT_VALUES,
    control=st.sampled_from(FORBIDDEN_CONTROLS),
    suffix=TEXT_VALUES,
    ptype=st.sampled_from(["string", "text", "password", "path"]),
)
def test_nul_and_control_characters_are_refused(
    prefix: str, control: str, suffix: str, ptype: str
) -> None:
    with pytest.raises(ScriptRenderError) as info:
        ENGINE.render(TEMPLATES["pipeline"], schema(ptype), {"name": prefix + control + suffix})
    assert "name" in info.value.errors


# --------------------------------------------------------------------------------------------
# other types
# --------------------------------------------------------------------------------------------


def _literal_number(value_node: Node) -> str:
    assert value_node.text is not None
    text = value_node.text.decode()
    kinds = {n.type for n in walk(value_node)}
    assert kinds & {"integer_literal", "real_literal"}
    assert not kinds & {"string_literal", "command", "variable"}
    return text


@SETTINGS
@given(value=st.integers(min_value=INT64_MIN, max_value=INT64_MAX))
def test_integer_values_are_numeric_literals(value: int) -> None:
    body = "if ({{name}} -gt 0) { Write-Output {{name}} }\n"
    for given_value in (value, str(value)):
        rendered = ENGINE.render(body, schema("integer"), {"name": given_value})
        root = parse(rendered.script)
        assert_clean(root)
        text = _literal_number(assignment_value(root, "rfp_name"))
        assert int(text) == value
        assert rendered.values["name"] == value


@SETTINGS
@given(value=st.floats(allow_nan=False, allow_infinity=False))
def test_number_values_are_numeric_literals(value: float) -> None:
    body = '$total = {{name}} * 2\nWrite-Output "{{name}}"\n'
    rendered = ENGINE.render(body, schema("number"), {"name": value})
    root = parse(rendered.script)
    assert_clean(root)
    text = _literal_number(assignment_value(root, "rfp_name"))
    assert float(text) == value


@SETTINGS
@given(value=st.one_of(st.text(max_size=12), st.integers(), st.floats()).filter(bool))
def test_non_numeric_input_is_refused_for_integer(value: Any) -> None:
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?[0-9]{1,19}\s*", value):
        return  # a valid integer string
    if isinstance(value, int) and INT64_MIN <= value <= INT64_MAX:
        return
    if isinstance(value, float) and value.is_integer() and INT64_MIN <= value <= INT64_MAX:
        return
    with pytest.raises(ScriptRenderError) as info:
        ENGINE.render("Write-Output {{name}}", schema("integer"), {"name": value})
    assert list(info.value.errors) == ["name"]


@SETTINGS
@given(value=st.sampled_from([True, False, "true", "false", "TRUE", "False"]))
def test_boolean_values_are_automatic_variables(value: Any) -> None:
    rendered = ENGINE.render("if ({{name}}) { 'on' }", schema("boolean"), {"name": value})
    root = parse(rendered.script)
    assert_clean(root)
    node = assignment_value(root, "rfp_name")
    expected = value if isinstance(value, bool) else value.lower() == "true"
    assert node.text == (b"$true" if expected else b"$false")
    assert [n.type for n in walk(node) if n.type == "variable"] == ["variable"]


OPTION_VALUES = st.lists(SINGLE_LINE_VALUES.filter(bool), min_size=1, max_size=6, unique=True)


@SETTINGS
@given(options=OPTION_VALUES, data=st.data())
def test_multichoice_values_are_arrays_of_literals(options: list[str], data: st.DataObject) -> None:
    chosen = data.draw(st.lists(st.sampled_from(options), unique=True, max_size=len(options)))
    body = 'foreach ($item in {{name}}) { Write-Output "item: $item" }\n'
    rendered = ENGINE.render(body, schema("multichoice", options=options), {"name": chosen})
    root = parse(rendered.script)
    assert_clean(root)
    node = assignment_value(root, "rfp_name")
    literals = [n for n in walk(node) if n.type == "string_literal"]
    decoded = [unescape_single_quoted(n.text.decode()) for n in literals if n.text is not None]
    assert decoded == chosen
    assert not [n for n in walk(node) if n.type in ("command", "expandable_string_literal")]
    assert any(n.type == "array_expression" for n in walk(node))
    assert rendered.values["name"] == chosen


@SETTINGS
@given(options=OPTION_VALUES, data=st.data())
def test_choice_value_is_one_literal(options: list[str], data: st.DataObject) -> None:
    chosen = data.draw(st.sampled_from(options))
    body = TEMPLATES["if-condition"]
    rendered = ENGINE.render(body, schema("choice", options=options), {"name": chosen})
    root = parse(rendered.script)
    assert_clean(root)
    literal = single_string_literal(assignment_value(root, "rfp_name"))
    assert literal.text is not None
    assert unescape_single_quoted(literal.text.decode()) == chosen
    check_powershell_rule(rendered.script, chosen)


# --------------------------------------------------------------------------------------------
# the insertion point: whatever preamble the validator accepts, the generated lines are plain
# assignments (a `using` line ending in `<#` or `@"` once put them inside a comment or string)
# --------------------------------------------------------------------------------------------

USING_NAMES = [
    "System.IO",
    "PSReadLine",
    ".\\Tools\\x.psm1",
    "'C:\\Program Files\\x.dll'",
    '"System.Windows.Forms"',
    "@{ModuleName='PSReadLine'; ModuleVersion='2.0'}",
    "@{ModuleName='x}",
    "'x\u2019",
    '"a$(Stop-Computer)"',
]
LINE_ENDINGS = [
    "",
    " ",
    " <#",
    ' @"',
    " @'",
    " #>",
    ' "',
    " '",
    " \u2018",
    " \u201c",
    " $(",
    " {",
    " (",
    " `",
    " # a comment <#",
    " <# closed #>",
    " <# closed #> # and a comment",
    " <# open",
    "<#",
    "; Write-Output pwned",
    ", System.Text",
]
PREAMBLE_LINES = st.one_of(
    st.sampled_from(["#Requires -Version 5.1", "#requires -RunAsAdministrator <#", ""]),
    st.builds(
        lambda kind, name, ending: f"using {kind} {name}{ending}",
        st.sampled_from(["namespace", "module", "assembly"]),
        st.sampled_from(USING_NAMES),
        st.sampled_from(LINE_ENDINGS),
    ),
)
# What an attacker appends after the placeholder line to close what the preamble opened.
CLOSERS = ["", "#>\n", '"@\n', "'@\n", ")\n", "}\n"]


def generated_lines_are_plain_assignments(script: str) -> None:
    lines = script.split("\n")
    start = lines.index("# >>> ResolutionFlow parameters (generated)")
    end = lines.index("# <<< ResolutionFlow parameters")
    root = parse(script)
    by_line: dict[int, list[Node]] = {}
    for node in walk(root):
        if node.type in ("comment", "assignment_expression"):
            by_line.setdefault(node.start_point[0], []).append(node)
    for number in (start, end):
        comments = [n for n in by_line.get(number, []) if n.type == "comment"]
        assert comments and comments[0].start_point == (number, 0), lines[number]
        assert comments[0].end_point[0] == number  # a line comment, not an open block
    for number in range(start + 1, end):
        assignments = [n for n in by_line.get(number, []) if n.type == "assignment_expression"]
        assert assignments, f"generated line {number} is not code: {lines[number]!r}"
        node = assignments[0]
        assert node.start_point == (number, 0) and node.end_point[0] == number
        assert node.children[0].text is not None
        assert node.children[0].text.decode().startswith("$rfp_")
        single_string_literal(node.child_by_field_name("value"))  # type: ignore[arg-type]


@SETTINGS
@given(
    preamble=st.lists(PREAMBLE_LINES, min_size=1, max_size=3),
    closer=st.sampled_from(CLOSERS),
    value=SINGLE_LINE_VALUES.filter(bool),
)
def test_generated_lines_are_plain_code_for_every_accepted_preamble(
    preamble: list[str], closer: str, value: str
) -> None:
    body = "\n".join(preamble) + "\nWrite-Output {{name}}\n" + closer
    try:
        ENGINE.validate_template(body, schema("string"), None, None)
    except TemplateDefinitionError:
        return  # refused: nothing is ever rendered from it
    rendered = ENGINE.render(body, schema("string"), {"name": value})
    generated_lines_are_plain_assignments(rendered.script)
    generated_lines_are_plain_assignments(rendered.stored_script)
    check_powershell_rule(rendered.script, value)


@pytest.mark.parametrize(
    "preamble",
    [
        "using namespace System.IO <#",
        'using namespace System.IO @"',
        "using namespace System.IO @'",
        "using module @{ModuleName='x}",
        "using assembly 'x",
        "using assembly \u2018x",
        "using assembly 'x\u2019",  # a complete string to PowerShell, but not ASCII-quoted
        'using module "a$(Stop-Computer)"',
        "using namespace System.IO <# open",
        "using namespace System.IO; Write-Output x",
    ],
)
def test_preamble_that_opens_a_comment_or_string_is_refused(preamble: str) -> None:
    body = preamble + "\nWrite-Output {{name}}\n#>\n"
    with pytest.raises(TemplateDefinitionError) as info:
        ENGINE.validate_template(body, schema("string"), None, None)
    assert "script_body" in info.value.errors


def test_typographic_quotes_after_a_using_preamble_are_doubled() -> None:
    # The tree-sitter grammar does not end a string at U+2018..U+201B; PowerShell does.
    value = "\u2019; Stop-Computer -Force; \u2018#>"
    body = "using namespace System.IO <# note #>\nWrite-Output {{name}}\n"
    rendered = ENGINE.render(body, schema("string"), {"name": value})
    assert "$rfp_name = '\u2019\u2019; Stop-Computer -Force; \u2018\u2018#>'" in rendered.script
    check_powershell_rule(rendered.script, value)
