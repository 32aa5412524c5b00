"""Lifting a fix script's ticket-specific literals into template parameters, on the syntax tree."""

from __future__ import annotations

import pytest
import tree_sitter_powershell as tsp
from tree_sitter import Language, Node, Parser

from services.scripts.engine import ScriptTemplateEngine
from services.scripts.library import read_library
from shared import powershell_check
from shared.powershell_generated import normalised_tree, strip_generated_block
from shared.powershell_literals import lift_literals
from tests.services.scripts.test_builtin_library import realistic_value

ENGINE = ScriptTemplateEngine()
PARSER = Parser(Language(tsp.language()))
TEMPLATES = read_library().templates
SPOOLER_FIX = (
    "Invoke-Command -ComputerName PRN-SRV01 -ScriptBlock {\n"
    "    Restart-Service -Name Spooler -Force\n"
    "}\n"
    "Get-Service -ComputerName 'PRN-SRV01' -Name Spooler | Select-Object Status, Name\n"
)


def _walk(node: Node) -> list[Node]:
    found, stack = [], [node]
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(current.children)
    return found


def _in_string(node: Node) -> bool:
    current = node.parent
    while current is not None:
        if current.type in ("expandable_string_literal", "expandable_here_string_literal"):
            return True
        current = current.parent
    return False


def script_as_written(rendered: str) -> str:
    """What an engineer would have typed for the ticket: the rendered script with each
    generated variable written out where it is used, and no generated block."""
    body, assignments = strip_generated_block(rendered)
    source = body.encode("utf-8")
    edits: list[tuple[int, int, bytes]] = []
    for node in _walk(PARSER.parse(source).root_node):
        text = (node.text or b"").decode()
        if node.type != "variable" or not text.lstrip("${").startswith("rfp_"):
            continue
        key = text.strip("${}")[len("rfp_") :]
        literal = assignments[key]
        written = f"$({literal})" if _in_string(node) else literal
        edits.append((node.start_byte, node.end_byte, written.encode()))
    for start, end, written in sorted(edits, reverse=True):
        source = source[:start] + written + source[end:]
    return source.decode("utf-8")


def render_with_defaults(body: str, schema: dict) -> str:
    return ENGINE.render(body, schema, {}).script


def test_the_spooler_fix_lifts_the_computer_and_renders_back() -> None:
    lifted = lift_literals(SPOOLER_FIX)

    by_key = {p.key: p for p in lifted.parameters}
    assert by_key["computer"].type == "hostname"
    assert by_key["computer"].default == "PRN-SRV01"
    assert by_key["computer"].label == "Computer"
    assert "PRN-SRV01" in by_key["computer"].help
    assert by_key["service"].default == "Spooler"
    # One parameter for a value used twice, however it was quoted.
    assert lifted.body.count("{{computer}}") == 2
    assert "PRN-SRV01" not in lifted.body
    # The rest of the script is unchanged, byte for byte.
    assert lifted.body.startswith("Invoke-Command -ComputerName {{computer}} -ScriptBlock {\n")
    assert "Select-Object Status, Name\n" in lifted.body

    rendered = render_with_defaults(lifted.body, lifted.parameters_schema)
    body, assignments = strip_generated_block(rendered)
    assert assignments["computer"] == "'PRN-SRV01'"
    assert normalised_tree(body, assignments) == normalised_tree(SPOOLER_FIX)


def test_a_different_value_is_a_different_tree() -> None:
    lifted = lift_literals(SPOOLER_FIX)
    rendered = ENGINE.render(lifted.body, lifted.parameters_schema, {"computer": "PRN-SRV02"})
    body, assignments = strip_generated_block(rendered.script)
    assert normalised_tree(body, assignments) != normalised_tree(SPOOLER_FIX)


def test_each_kind_of_ticket_literal_becomes_a_typed_parameter() -> None:
    fix = (
        "$upn = 'jane.doe@contoso.com'\n"
        "Set-ADUser -Identity jdoe -Enabled $true\n"
        "Test-Connection -ComputerName 10.0.4.20 -Count 4\n"
        "Get-ChildItem -LiteralPath '\\\\FS01\\Shares\\Finance' -Recurse |\n"
        "    Where-Object { $_.Length -gt 5000000 }\n"
        "Get-Printer -Name 'HP LaserJet 4th Floor'\n"
    )
    lifted = lift_literals(fix)
    kinds = {p.key: (p.kind, p.type, p.default) for p in lifted.parameters}
    assert kinds["upn"] == ("email", "email", "jane.doe@contoso.com")
    assert kinds["user"] == ("user", "string", "jdoe")
    assert kinds["computer"] == ("ip", "ip", "10.0.4.20")
    assert kinds["count"] == ("threshold", "integer", 4)
    assert kinds["path"] == ("path", "path", "\\\\FS01\\Shares\\Finance")
    assert kinds["length_threshold"] == ("threshold", "integer", 5000000)
    assert kinds["printer"] == ("printer", "string", "HP LaserJet 4th Floor")
    ENGINE.validate_template(lifted.body, lifted.parameters_schema)
    body, assignments = strip_generated_block(
        render_with_defaults(lifted.body, lifted.parameters_schema)
    )
    assert normalised_tree(body, assignments) == normalised_tree(fix)


def test_expanded_strings_lists_and_hash_keys_are_left_alone() -> None:
    fix = (
        '$report = "PRN-SRV01 on $env:COMPUTERNAME"\n'
        "Get-Service -ComputerName 'PRN-SRV01', 'PRN-SRV02'\n"
        "$settings = @{ 'PRN-SRV03' = 'x' }\n"
        "function Test-Retry { param([ValidateRange(5, 50)] [int] $Retries) }\n"
    )
    lifted = lift_literals(fix)
    assert lifted.parameters == ()
    assert lifted.body == fix


@pytest.mark.parametrize("template", TEMPLATES, ids=[t["slug"] for t in TEMPLATES])
def test_every_builtin_used_as_a_fix_renders_back_to_the_same_tree(template: dict) -> None:
    specs = ENGINE.validate_template(
        template["script_body"],
        template["parameters_schema"],
        template["default_values"],
        template["validation_rules"],
    )
    rendered = ENGINE.render(
        template["script_body"],
        template["parameters_schema"],
        {spec.key: realistic_value(spec) for spec in specs},
        template["default_values"],
        template["validation_rules"],
    )
    fix = script_as_written(rendered.script)
    assert "rfp_" not in fix

    lifted = lift_literals(fix)
    # The draft is a template like any other: the engine accepts it and renders it.
    ENGINE.validate_template(lifted.body, lifted.parameters_schema)
    again = render_with_defaults(lifted.body, lifted.parameters_schema)
    body, assignments = strip_generated_block(again)

    assert normalised_tree(body, assignments) == normalised_tree(fix)
    assert set(assignments) == {p.key for p in lifted.parameters}
    # Lifting moves values, never commands: the static check sees the same rules.
    assert {f.rule for f in powershell_check.check_script(again)} == {
        f.rule for f in powershell_check.check_script(fix)
    }


def test_lifting_finds_parameters_in_the_library() -> None:
    """Across the library, the fixes carry ticket values the lifting recognises."""
    lifted_total = 0
    for template in TEMPLATES:
        specs = ENGINE.validate_template(template["script_body"], template["parameters_schema"])
        rendered = ENGINE.render(
            template["script_body"],
            template["parameters_schema"],
            {spec.key: realistic_value(spec) for spec in specs},
            template["default_values"],
            template["validation_rules"],
        )
        lifted_total += len(lift_literals(script_as_written(rendered.script)).parameters)
    assert lifted_total >= len(TEMPLATES) // 2
