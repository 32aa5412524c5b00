"""The built-in script library: its data files, template validity and parseable renders."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import tree_sitter_powershell as tsp
from hypothesis import find
from hypothesis import strategies as st
from tree_sitter import Language, Node, Parser

from services.scripts.engine import (
    REDACTION_MARKER,
    ParameterSpec,
    ScriptRenderError,
    ScriptTemplateEngine,
    quote_ps_string,
)
from services.scripts.library import LIBRARY_DIR, LibraryFileError, read_library

LIBRARY = read_library()
CATEGORIES = LIBRARY.categories
TEMPLATES = LIBRARY.templates
PARSER = Parser(Language(tsp.language()))
ENGINE = ScriptTemplateEngine()
TEMPLATE_IDS = [t["slug"] for t in TEMPLATES]
TEMPLATE_FIELDS = {
    "category_slug",
    "slug",
    "name",
    "description",
    "use_case",
    "script_body",
    "parameters_schema",
    "default_values",
    "validation_rules",
    "tags",
    "complexity",
    "estimated_runtime",
    "requires_elevation",
    "requires_modules",
    "acknowledged_findings",
    "secret_delivery",
}
SLUG_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")

# Values chosen to be awkward for PowerShell: quotes of every kind, subexpressions, backticks.
TRICKY_STRINGS = [
    'O\'Brien \u2019$(Stop-Computer)`; "x"',
    "jdoe",
    "Ethernet",
    "C:",
    "KB5034441, KB5001716",
    "2025-01-31",
    "3f2504e0-4f89-41d3-9a0c-0305e82c3301",
    "OU=Staff,DC=corp,DC=example,DC=com",
    "Spooler",
]


def walk(node: Node) -> Iterator[Node]:
    yield node
    for child in node.children:
        yield from walk(child)


def assert_parses(script: str) -> None:
    root = PARSER.parse(script.encode("utf-8")).root_node
    bad = [n for n in walk(root) if n.type == "ERROR" or n.is_missing]
    assert not root.has_error and not bad, [
        (n.type, n.start_point, (n.text or b"")[:80]) for n in bad
    ]


def _fits(value: str, rules: dict[str, Any]) -> bool:
    pattern = rules.get("pattern")
    if pattern is not None and re.fullmatch(pattern, value) is None:
        return False
    return rules.get("min_length", 0) <= len(value) <= rules.get("max_length", 10**6)


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def valid_value(spec: ParameterSpec) -> Any:
    """A valid (and, where the rules allow, awkward) value derived from the schema."""
    rules = dict(spec.validation)
    if spec.type == "choice":
        return spec.options[-1]
    if spec.type == "multichoice":
        return list(spec.options[: max(1, rules.get("min_length", 1))])
    if spec.type == "boolean":
        return not spec.default if isinstance(spec.default, bool) else True
    if spec.type in ("integer", "number"):
        return rules.get("max", rules.get("min", 1))
    candidates = {
        "email": ["o'brien@example.com"],
        "hostname": ["srv-01.corp.example.com"],
        "ip": ["192.0.2.10"],
        "path": ["C:\\Temp\\O'Brien $(x)"],
        "text": ['Line one\nIt\'s line two \u2018$(x)\u2019 `n "quoted"'],
        # Long where the rules allow it, else one that fits a WPA key's 8..63 characters.
        "password": ["Pa$$w0rd'\u2018(x)`;\"" * 4, "Pa$$w0rd'\u2018(x)`;\"" * 3],
        "string": TRICKY_STRINGS,
        # Cross-field rules: the later / differing value for the parameter that names another.
        "date": ["2025-12-31" if spec.after else "2025-01-31"],
        "guid": ["3F2504E0-4F89-41D3-9A0C-0305E82C3301"],
    }[spec.type]
    if spec.type == "ip" and spec.not_equal:
        candidates = ["192.0.2.11"]
    for candidate in candidates:
        if _fits(candidate, rules):
            return candidate
    # Fall back to any string the pattern and lengths accept, and the engine too (it refuses
    # control characters other than tab, CR and LF in any value).
    return find(
        st.from_regex(rules.get("pattern", ".+"), fullmatch=True),
        lambda v: _fits(v, rules) and not _CONTROL.search(v),
    )


def by_slug(slug: str) -> dict[str, Any]:
    return next(t for t in TEMPLATES if t["slug"] == slug)


def specs_of(template: dict[str, Any]) -> list[ParameterSpec]:
    return ENGINE.validate_template(
        template["script_body"],
        template["parameters_schema"],
        template["default_values"],
        template["validation_rules"],
    )


# --------------------------------------------------------------------------------------------
# shape of the data
# --------------------------------------------------------------------------------------------


def test_counts() -> None:
    assert len(CATEGORIES) >= 8
    assert len(TEMPLATES) >= 30
    with_secrets = [
        t for t in TEMPLATES if ScriptTemplateEngine.sensitive_keys(t["parameters_schema"])
    ]
    assert len(with_secrets) >= 5


def test_categories() -> None:
    slugs = [c["slug"] for c in CATEGORIES]
    assert len(slugs) == len(set(slugs))
    assert len({c["sort_order"] for c in CATEGORIES}) == len(CATEGORIES)
    for category in CATEGORIES:
        assert set(category) == {"slug", "name", "description", "icon", "sort_order"}
        assert SLUG_RE.fullmatch(category["slug"])
        assert category["name"] and category["description"] and category["icon"]
        assert isinstance(category["sort_order"], int)
    used = Counter(t["category_slug"] for t in TEMPLATES)
    assert all(used[slug] >= 2 for slug in slugs), used


def test_template_slugs_are_unique() -> None:
    duplicates = [s for s, n in Counter(TEMPLATE_IDS).items() if n > 1]
    assert not duplicates


@pytest.mark.parametrize("slug", TEMPLATE_IDS)
def test_template_fields(slug: str) -> None:
    template = by_slug(slug)
    assert set(template) == TEMPLATE_FIELDS
    assert SLUG_RE.fullmatch(template["slug"])
    assert template["category_slug"] in {c["slug"] for c in CATEGORIES}
    for text_field in ("name", "description", "use_case", "script_body", "estimated_runtime"):
        assert isinstance(template[text_field], str) and template[text_field].strip()
    assert template["complexity"] in {"basic", "intermediate", "advanced"}
    assert isinstance(template["requires_elevation"], bool)
    assert isinstance(template["default_values"], dict)
    assert isinstance(template["validation_rules"], dict)
    tags = template["tags"]
    assert tags and all(isinstance(t, str) and t == t.lower() and t.strip() == t for t in tags)
    assert len(tags) == len(set(tags))
    modules = template["requires_modules"]
    assert isinstance(modules, list) and all(isinstance(m, str) and m for m in modules)
    assert template["secret_delivery"] in (None, "inline", "env", "prompt")
    for acknowledged in template["acknowledged_findings"]:
        assert set(acknowledged) == {"rule", "reason"} and acknowledged["reason"].strip()


@pytest.mark.parametrize("slug", TEMPLATE_IDS)
def test_requires_lines_agree_with_metadata(slug: str) -> None:
    template = by_slug(slug)
    body = template["script_body"]
    if re.search(r"(?im)^#requires\s+-RunAsAdministrator\b", body):
        assert template["requires_elevation"] is True
    for line in re.findall(r"(?im)^#requires\s+-Modules\s+(.+)$", body):
        for module in (m.strip() for m in line.split(",")):
            assert module in template["requires_modules"]


# --------------------------------------------------------------------------------------------
# templates validate and render to parseable PowerShell
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("slug", TEMPLATE_IDS)
def test_template_validates(slug: str) -> None:
    template = by_slug(slug)
    specs = specs_of(template)
    declared = {spec.key for spec in specs}
    used = set(re.findall(r"\{\{\s*([A-Za-z_]\w*)\s*\}\}", template["script_body"]))
    assert used <= declared
    assert declared <= used, f"parameters never used in the body: {declared - used}"


@pytest.mark.parametrize("slug", TEMPLATE_IDS)
def test_template_renders_awkward_values_to_parseable_powershell(slug: str) -> None:
    template = by_slug(slug)
    specs = specs_of(template)
    values = {spec.key: valid_value(spec) for spec in specs}
    rendered = ENGINE.render(
        template["script_body"],
        template["parameters_schema"],
        values,
        template["default_values"],
        template["validation_rules"],
    )
    assert_parses(rendered.script)
    assert_parses(rendered.stored_script)
    assert "{{" not in rendered.script.replace(template["script_body"], "")
    for spec in specs:
        value = rendered.values[spec.key]
        if isinstance(value, str):
            assert quote_ps_string(value) in rendered.script
            if spec.sensitive:
                assert quote_ps_string(value) not in rendered.stored_script
                assert rendered.redacted_values[spec.key] == REDACTION_MARKER


@pytest.mark.parametrize("slug", TEMPLATE_IDS)
def test_template_renders_with_only_required_values(slug: str) -> None:
    template = by_slug(slug)
    specs = specs_of(template)
    defaults = template["default_values"]
    values = {
        spec.key: valid_value(spec)
        for spec in specs
        if spec.required and spec.default is None and spec.key not in defaults
    }
    rendered = ENGINE.render(
        template["script_body"], template["parameters_schema"], values, defaults
    )
    assert_parses(rendered.script)
    for spec in specs:
        if spec.key not in values and spec.default is not None:
            assert rendered.values[spec.key] == spec.default


@pytest.mark.parametrize("slug", TEMPLATE_IDS)
def test_missing_required_values_are_reported(slug: str) -> None:
    template = by_slug(slug)
    specs = specs_of(template)
    needed = {
        s.key
        for s in specs
        if s.required and s.default is None and s.key not in template["default_values"]
    }
    if not needed:
        ENGINE.render(template["script_body"], template["parameters_schema"], {})
        return
    with pytest.raises(ScriptRenderError) as info:
        ENGINE.render(
            template["script_body"],
            template["parameters_schema"],
            {},
            template["default_values"],
            template["validation_rules"],
        )
    assert set(info.value.errors) == needed


def test_known_sensitive_parameters() -> None:
    sensitive = {
        t["slug"]: ScriptTemplateEngine.sensitive_keys(t["parameters_schema"]) for t in TEMPLATES
    }
    assert sensitive["ad-reset-password"] == {"new_password"}
    assert sensitive["net-add-wifi-profile"] == {"pre_shared_key"}
    assert sensitive["svc-set-service-account"] == {"account_password"}
    assert sensitive["local-admin-reset-password"] == {"new_password"}
    assert sensitive["m365-graph-license-report"] == {"client_secret"}


def test_wifi_key_is_never_on_a_command_line() -> None:
    body = by_slug("net-add-wifi-profile")["script_body"]
    netsh_lines = [line for line in body.splitlines() if "netsh" in line]
    assert netsh_lines and not any("psk" in line.lower() or "{{" in line for line in netsh_lines)


# --------------------------------------------------------------------------------------------
# the data files themselves
# --------------------------------------------------------------------------------------------


def test_every_file_is_a_template_half() -> None:
    """Each category folder holds pairs of <slug>.ps1 and <slug>.yaml, nothing else."""
    for category in CATEGORIES:
        folder = LIBRARY_DIR / category["slug"]
        names = sorted(p.name for p in folder.iterdir())
        stems = {p.rsplit(".", 1)[0] for p in names}
        assert names == sorted([f"{s}.ps1" for s in stems] + [f"{s}.yaml" for s in stems])


def _copy_library(tmp_path: Any) -> Any:
    import shutil

    root = tmp_path / "library"
    shutil.copytree(LIBRARY_DIR, root)
    return root


def test_a_script_without_metadata_is_refused(tmp_path: Any) -> None:
    root = _copy_library(tmp_path)
    (root / "printing" / "orphan.ps1").write_text("Get-Printer\n", encoding="utf-8")
    with pytest.raises(LibraryFileError, match="orphan"):
        read_library(root)


def test_metadata_without_a_script_is_refused(tmp_path: Any) -> None:
    root = _copy_library(tmp_path)
    (root / "printing" / "print-clear-spooler.ps1").unlink()
    with pytest.raises(LibraryFileError, match="print-clear-spooler.yaml"):
        read_library(root)


def test_an_unknown_metadata_field_is_refused(tmp_path: Any) -> None:
    root = _copy_library(tmp_path)
    meta = root / "printing" / "print-clear-spooler.yaml"
    meta.write_text(meta.read_text(encoding="utf-8") + "colour: blue\n", encoding="utf-8")
    with pytest.raises(LibraryFileError, match="colour"):
        read_library(root)


def test_a_folder_outside_the_category_list_is_refused(tmp_path: Any) -> None:
    root = _copy_library(tmp_path)
    (root / "gardening").mkdir()
    with pytest.raises(LibraryFileError, match="gardening"):
        read_library(root)


def test_bodies_are_read_verbatim() -> None:
    body = (LIBRARY_DIR / "printing" / "print-clear-spooler.ps1").read_bytes().decode("utf-8")
    assert by_slug("print-clear-spooler")["script_body"] == body


# --------------------------------------------------------------------------------------------
# real-world values, and hostile ones, for every built-in template
# --------------------------------------------------------------------------------------------

# What engineers really type: apostrophes, accents, spaces, escaped commas in OUs, any group.
REALISTIC: dict[str, Any] = {
    "account": "CONTOSO\\svc-backup",
    "account_name": "Kiosk",
    "account_password": "Winter-2025!Sv\u00e9",
    "client_id": "{6A1B2C3D-4E5F-4A6B-8C7D-9E0F1A2B3C4D}",
    "client_secret": "Qx8~vT.3_kD-9pL0mN2bR5sW7yZ1aC4eF6gH8jK",
    "destination": "D:\\Exports\\Client O'Neil",
    "driver_name": "HP Universal Printing PCL 6 (v7.0.1)",
    "start_date": "2025-12-22",
    "end_date": "2026-01-02",
    "exclude_kbs": "KB5034441, KB5001716",
    "exclude_users": "Administrator, defaultuser0, svc-backup",
    "external_message": "Bonjour, je suis absente jusqu'au 2 janvier.\nMerci \u2014 Ren\u00e9e",
    "first_name": "Ren\u00e9e",
    "group_name": "Finance - Accounts Payable (EMEA)",
    "groups": ["All Staff", "SG-Finance Read", "M\u00fcnchen Office"],
    "initial_password": "Welcome-2025!Ren\u00e9e",
    "interface_alias": "Wi-Fi 2",
    "internal_message": "I'm out of the office until 2 January.",
    "last_name": "O'Connor-M\u00fcller",
    "log_names": None,  # a multichoice without custom entries: its own options
    "mailbox": "sales.emea@contoso.com",
    "mount_point": "C:",
    "new_password": "Correct-Horse-Battery-9",
    "ou": "OU=Sales\\, EMEA,OU=Staff,DC=corp,DC=contoso,DC=com",
    "pre_shared_key": "guest wifi 2025 'lobby'",
    "primary_dns": "10.0.0.53",
    "secondary_dns": "2001:db8::53",
    "printer_ip": "192.168.10.25",
    "printer_name": "Floor 2 - HP LaserJet M507",
    "process_name": "OUTLOOK",
    "root_path": "C:\\Users\\Public\\Documents",
    "search_base": "OU=Staff, DC=corp, DC=contoso, DC=com",
    "service_name": "MSSQL$SQLEXPRESS",
    "ssid": "Contoso Guest",
    "target": "fileserver01.corp.contoso.com",
    "tenant_id": "72f988bf-86f1-41af-91ab-2d7cd011db47",
    "user": "jane.o'neil@contoso.com",
    "user_principal_name": "renee.oconnor@contoso.com",
    "username": "jean-luc.o'b",
}
HOSTILE = "'; Stop-Computer -Force; '\u2019$(Remove-Item C:\\ -Recurse)`\"@"


def realistic_value(spec: ParameterSpec) -> Any:
    if spec.type in ("boolean", "integer", "number", "choice") or (
        spec.type == "multichoice" and not spec.allow_custom
    ):
        return valid_value(spec)
    assert spec.key in REALISTIC, f"add a real-world value for '{spec.key}'"
    return REALISTIC[spec.key]


@pytest.mark.parametrize("slug", TEMPLATE_IDS)
def test_template_takes_real_world_values(slug: str) -> None:
    template = by_slug(slug)
    specs = specs_of(template)
    values = {spec.key: realistic_value(spec) for spec in specs}
    rendered = ENGINE.render(
        template["script_body"],
        template["parameters_schema"],
        values,
        template["default_values"],
        template["validation_rules"],
    )
    assert_parses(rendered.script)
    for spec in specs:
        if spec.sensitive:
            assert rendered.redacted_values[spec.key] == REDACTION_MARKER


@pytest.mark.parametrize("slug", TEMPLATE_IDS)
def test_template_refuses_or_quotes_hostile_values(slug: str) -> None:
    template = by_slug(slug)
    specs = specs_of(template)
    for spec in specs:
        if spec.type in ("boolean", "integer", "number"):
            continue
        values = {s.key: realistic_value(s) for s in specs}
        values[spec.key] = [HOSTILE] if spec.type == "multichoice" else HOSTILE
        try:
            rendered = ENGINE.render(
                template["script_body"],
                template["parameters_schema"],
                values,
                template["default_values"],
                template["validation_rules"],
            )
        except ScriptRenderError as exc:
            assert spec.key in exc.errors and exc.errors[spec.key]
            continue
        assert_parses(rendered.script)
        assert "Stop-Computer -Force;" not in rendered.script.replace(quote_ps_string(HOSTILE), "")


def test_new_user_accepts_any_group_and_an_escaped_ou() -> None:
    template = by_slug("ad-new-user")
    values = {
        "first_name": "Ren\u00e9e",
        "last_name": "O'Connor",
        "username": "roconnor",
        "user_principal_name": "renee@contoso.com",
        "ou": "OU=R&D\\, Lab 2,OU=Staff,DC=corp,DC=contoso,DC=com",
        "initial_password": "Welcome-2025!",
        "groups": ["SG-Lab Users", "All Staff"],
    }
    rendered = ENGINE.render(
        template["script_body"], template["parameters_schema"], values, template["default_values"]
    )
    assert "@('SG-Lab Users','All Staff')" in rendered.script
    with pytest.raises(ScriptRenderError) as info:
        ENGINE.render(
            template["script_body"],
            template["parameters_schema"],
            {**values, "ou": "Sales"},
            template["default_values"],
        )
    assert info.value.errors["ou"] == [
        "must be a distinguished name such as OU=Sales,OU=Staff,DC=corp,DC=contoso,DC=com "
        "(write a comma inside a name as \\,)"
    ]


def test_out_of_office_end_must_follow_start() -> None:
    template = by_slug("m365-out-of-office")
    base = {"mailbox": "a@contoso.com", "internal_message": "Away"}
    with pytest.raises(ScriptRenderError) as info:
        ENGINE.render(
            template["script_body"],
            template["parameters_schema"],
            {**base, "start_date": "2024-99-99", "end_date": "2024-01-01"},
        )
    assert "not a calendar date" in info.value.errors["start_date"][0]
    with pytest.raises(ScriptRenderError) as info:
        ENGINE.render(
            template["script_body"],
            template["parameters_schema"],
            {**base, "start_date": "2025-02-01", "end_date": "2025-01-01"},
        )
    assert info.value.errors == {
        "end_date": ["must be after start_date (2025-02-01); got 2025-01-01"]
    }
