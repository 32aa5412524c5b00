"""Structured parameter types, cross-field rules, custom choices and the 422 messages.

Every type is also driven with hypothesis over the full Unicode range: a value is either
refused with a message, or rendered as one quoted literal that the PowerShell grammar parses.
"""

from __future__ import annotations

from typing import Any

import pytest
import tree_sitter_powershell as tsp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tree_sitter import Language, Parser

from services.scripts import param_types
from services.scripts.engine import ScriptRenderError, ScriptTemplateEngine, quote_ps_string
from tests.support.examples import examples

ENGINE = ScriptTemplateEngine()
PARSER = Parser(Language(tsp.language()))
BODY = "Write-Output {{v}}\n"


def schema(ptype: str, **extra: Any) -> dict[str, Any]:
    return {"parameters": [{"key": "v", "type": ptype, "required": True, **extra}]}


def errors_for(ptype: str, value: Any, **extra: Any) -> list[str]:
    with pytest.raises(ScriptRenderError) as info:
        ENGINE.render(BODY, schema(ptype, **extra), {"v": value})
    return info.value.errors["v"]


def rendered(ptype: str, value: Any, **extra: Any) -> Any:
    return ENGINE.render(BODY, schema(ptype, **extra), {"v": value}).values["v"]


ACCEPTED = {
    "date": [("2024-02-29", "2024-02-29"), ("2025-01-31", "2025-01-31")],
    "datetime": [
        ("2025-01-31T17:30", "2025-01-31T17:30:00"),
        ("2025-01-31T17:30:00Z", "2025-01-31T17:30:00+00:00"),
        ("2025-01-31 08:00:00.5+01:00", "2025-01-31T08:00:00.500000+01:00"),
    ],
    "guid": [
        ("3F2504E0-4F89-41D3-9A0C-0305E82C3301", "3f2504e0-4f89-41d3-9a0c-0305e82c3301"),
        ("{3f2504e0-4f89-41d3-9a0c-0305e82c3301}", "3f2504e0-4f89-41d3-9a0c-0305e82c3301"),
    ],
    "sid": [
        ("S-1-5-32-544", "S-1-5-32-544"),
        (
            "s-1-5-21-3623811015-3361044348-30300820-1013",
            "S-1-5-21-3623811015-3361044348-30300820-1013",
        ),
    ],
    "cidr": [("10.20.0.0/16", "10.20.0.0/16"), ("2001:db8::/48", "2001:db8::/48")],
    "url": [
        ("https://intranet.contoso.com/it/help?x=1", "https://intranet.contoso.com/it/help?x=1"),
        ("http://192.0.2.10:8080/", "http://192.0.2.10:8080/"),
    ],
    "upn": [("jane.o'neil@contoso.com", "jane.o'neil@contoso.com"), ("a+b@x.co.uk", "a+b@x.co.uk")],
    "mac": [
        ("00:1a:2b:3c:4d:5e", "00-1A-2B-3C-4D-5E"),
        ("001A2B3C4D5E", "00-1A-2B-3C-4D-5E"),
        ("001a.2b3c.4d5e", "00-1A-2B-3C-4D-5E"),
    ],
    "registry_path": [
        ("HKLM:\\SOFTWARE\\Contoso", "HKLM:\\SOFTWARE\\Contoso"),
        ("HKEY_CURRENT_USER\\Software\\Microsoft\\Office", "HKCU:\\Software\\Microsoft\\Office"),
        ("HKU\\.DEFAULT\\Control Panel", "Registry::HKEY_USERS\\.DEFAULT\\Control Panel"),
    ],
}
REFUSED = {
    "date": [
        ("2024-99-99", "not a calendar date"),
        ("2023-02-29", "not a calendar date"),
        ("31/01/2025", "YYYY-MM-DD"),
    ],
    "datetime": [("2025-01-31T25:00", "not a real date"), ("2025-01-31", "ISO 8601")],
    "guid": [
        ("3f2504e0-4f89-41d3-9a0c", "GUID"),
        ("{3f2504e0-4f89-41d3-9a0c-0305e82c3301", "GUID"),
    ],
    "sid": [("S-1-5-21-4294967296-1", "out of range"), ("S-1", "security identifier")],
    "cidr": [
        ("10.0.0.1/24", "host bits set: the network is 10.0.0.0/24"),
        ("10.0.0.0", "CIDR"),
        ("fe80::%eth0/64", "CIDR"),
    ],
    "url": [
        ("ftp://x.example.com/", "http or https"),
        ("https://exa mple.com", "no spaces"),
        ("javascript:alert(1)", "http or https"),
    ],
    "upn": [("jane doe@contoso.com", "before @"), ("jane@localhost", "domain name")],
    "mac": [("00:1a:2b:3c:4d", "MAC address"), ("00:1a-2b:3c:4d:5e", "MAC address")],
    "registry_path": [
        ("C:\\Windows", "not a registry hive"),
        ("HKLM:\\SOFTWARE\\\\x", "doubled"),
        ("HKLM:\\SOFTWARE\\*", "wildcards"),
    ],
}


@pytest.mark.parametrize(
    ("ptype", "value", "expected"),
    [(t, v, e) for t, cases in ACCEPTED.items() for v, e in cases],
)
def test_real_world_values_are_accepted_and_normalised(
    ptype: str, value: str, expected: str
) -> None:
    assert rendered(ptype, value) == expected
    assert rendered(ptype, expected) == expected, "normalising twice changes nothing"


@pytest.mark.parametrize(
    ("ptype", "value", "says"), [(t, v, s) for t, cases in REFUSED.items() for v, s in cases]
)
def test_wrong_values_say_what_would_be_accepted(ptype: str, value: str, says: str) -> None:
    [message] = errors_for(ptype, value)
    assert says in message


ANY_TEXT = st.text(st.characters(codec="utf-8"), max_size=60)
HOSTILE = st.sampled_from(["'", "\u2019", "$(Stop-Computer)", "`", ";", "\n", "\u201c", "%"])


def near_valid(ptype: str) -> st.SearchStrategy[str]:
    """Accepted values with hostile or arbitrary text spliced in."""
    valid = st.sampled_from([value for value, _ in ACCEPTED[ptype]])
    return st.builds(
        lambda v, cut, extra: v[:cut] + extra + v[cut:],
        valid,
        st.integers(0, 60),
        st.one_of(HOSTILE, ANY_TEXT),
    )


@pytest.mark.parametrize("ptype", sorted(param_types.TYPES))
@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_unicode_text_is_refused_or_rendered_as_one_literal(ptype: str, data: Any) -> None:
    value = data.draw(st.one_of(ANY_TEXT, near_valid(ptype)))
    try:
        result = ENGINE.render(BODY, schema(ptype), {"v": value})
    except ScriptRenderError as exc:
        assert exc.errors["v"] and all(isinstance(m, str) and m for m in exc.errors["v"])
        return
    normalised = result.values["v"]
    assert isinstance(normalised, str) and normalised.isprintable()
    assert f"$rfp_v = {quote_ps_string(normalised)}" in result.script
    root = PARSER.parse(result.script.encode("utf-8")).root_node
    assert not root.has_error
    assert param_types.check(ptype, normalised) == (normalised, None)


def test_ip_refuses_a_zone_id_unless_allowed() -> None:
    [message] = errors_for("ip", "fe80::1%12")
    assert "zone id" in message and "12" in message
    assert rendered("ip", "fe80::1%12", validation={"allow_zone_id": True}) == "fe80::1%12"
    assert rendered("ip", "2001:db8::53") == "2001:db8::53"


def test_choice_message_names_the_value_and_the_options() -> None:
    [message] = errors_for("choice", "warp", options=["fast", "slow"])
    assert message == "'warp' is not one of the allowed options: 'fast', 'slow'"
    bad = errors_for("multichoice", ["fast", "warp", "x"], options=["fast", "slow"])
    assert bad == [
        "'warp' is not one of the allowed options: 'fast', 'slow'",
        "'x' is not one of the allowed options: 'fast', 'slow'",
    ]


def test_custom_choices_are_checked_like_strings() -> None:
    extra = {"options": ["Domain Users", "VPN Users"], "allow_custom": True}
    groups = ["VPN Users", "Finance - Accounts Payable", "O'Brien's team \u2019$(x)"]
    assert rendered("multichoice", groups, **extra) == groups
    assert rendered("choice", "Helpdesk Tier 2", **extra) == "Helpdesk Tier 2"
    [message] = errors_for("multichoice", ["a\nb"], **extra)
    assert "single line" in message
    hinted = {**extra, "validation": {"pattern": "[^@]+"}, "pattern_hint": "a group name without @"}
    assert errors_for("choice", "x@y", **hinted) == ["must be a group name without @"]


def test_pattern_hint_is_the_message() -> None:
    extra = {"validation": {"pattern": "[A-Z]{3}-[0-9]{4}"}, "pattern_hint": "like ABC-1234"}
    assert errors_for("string", "abc", **extra) == ["must be like ABC-1234"]
    assert errors_for("string", "abc", validation={"pattern": "[0-9]+"}) == [
        "must match the pattern [0-9]+"
    ]


def test_range_messages_name_the_range() -> None:
    assert errors_for("integer", 99, validation={"min": 1, "max": 10}) == [
        "must be between 1 and 10 (got 99)"
    ]


def test_sensitive_values_are_never_echoed() -> None:
    secret = "warp-SECRET-1"
    messages = errors_for("choice", secret, options=["a"], sensitive=True)
    assert secret not in str(messages) and "not one of the allowed options" in str(messages)


DATES = {
    "parameters": [
        {"key": "start_date", "type": "date", "required": True},
        {"key": "end_date", "type": "date", "required": True, "after": "start_date"},
        {"key": "source", "type": "hostname", "required": True},
        {"key": "target", "type": "hostname", "required": True, "not_equal": "source"},
    ]
}
DATES_BODY = "Write-Output {{start_date}} {{end_date}} {{source}} {{target}}\n"


def test_after_and_not_equal() -> None:
    ok = {"start_date": "2025-01-01", "end_date": "2025-01-31", "source": "a", "target": "b"}
    assert ENGINE.render(DATES_BODY, DATES, ok).values["end_date"] == "2025-01-31"
    with pytest.raises(ScriptRenderError) as info:
        ENGINE.render(DATES_BODY, DATES, {**ok, "end_date": "2024-12-31", "target": "A"})
    assert info.value.errors == {
        "end_date": ["must be after start_date (2025-01-01); got 2024-12-31"],
        "target": ["must differ from source"],
    }


def test_cross_field_rules_are_checked_in_the_definition() -> None:
    from services.scripts.engine import TemplateDefinitionError

    bad = {
        "parameters": [
            {"key": "a", "type": "date"},
            {"key": "b", "type": "string", "after": "a"},
            {"key": "c", "type": "date", "not_equal": "zz"},
        ]
    }
    with pytest.raises(TemplateDefinitionError) as info:
        ENGINE.validate_template("Write-Output {{a}} {{b}} {{c}}", bad)
    assert set(info.value.errors) == {
        "parameters_schema.parameters[1].after",
        "parameters_schema.parameters[2].not_equal",
    }
