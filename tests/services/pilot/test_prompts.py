"""services.pilot.prompts: the cacheable system prompt and the per-turn context block."""

from __future__ import annotations

from services.pilot.prompts import (
    ASSISTANT_SYSTEM_PROMPT,
    PROMPT_VERSION,
    format_context_block,
)
from services.pilot.suggest_fix import CLOSE_TAG, OPEN_TAG, parse_suggest_fix
from shared.llm import estimate_tokens

# Sonnet 4.6 caches only prompts of at least 2,048 tokens; keep a margin above it.
CACHE_MINIMUM_TOKENS = 2048


def test_prompt_is_long_enough_to_be_cached() -> None:
    assert estimate_tokens(ASSISTANT_SYSTEM_PROMPT) >= 2100
    assert len(ASSISTANT_SYSTEM_PROMPT.split()) * 1.3 >= 2100
    assert estimate_tokens(ASSISTANT_SYSTEM_PROMPT) >= CACHE_MINIMUM_TOKENS


def test_prompt_is_stable_and_versioned() -> None:
    assert PROMPT_VERSION
    # Nothing per-session may leak into the cached prompt.
    assert "{" not in ASSISTANT_SYSTEM_PROMPT.split(OPEN_TAG)[0]
    assert ASSISTANT_SYSTEM_PROMPT == ASSISTANT_SYSTEM_PROMPT.strip() + "\n"


def test_prompt_documents_the_suggest_fix_protocol() -> None:
    prompt = ASSISTANT_SYSTEM_PROMPT
    for needle in (
        OPEN_TAG,
        CLOSE_TAG,
        "title (required)",
        "summary",
        "steps",
        "script (optional)",
        "template_id (optional)",
        "confidence",
        "0 to 100",
        "supersedes",
        "Do not emit a block when",
        "[REDACTED]",
        "-WhatIf",
        "escalate",
    ):
        assert needle in prompt, needle


def test_prompt_examples_parse_as_the_product_parses_replies() -> None:
    # The tags appear only around the format template and the good example, and both are
    # well-formed: the prompt teaches exactly what parse_suggest_fix accepts.
    parsed = parse_suggest_fix(ASSISTANT_SYSTEM_PROMPT)
    assert parsed.malformed_blocks == 0
    assert parsed.fix is not None
    assert parsed.fix.title == "Point Autodiscover at Exchange Online"
    assert parsed.fix.confidence == 80
    assert parsed.fix.script is not None and "-WhatIf" in parsed.fix.script
    assert ASSISTANT_SYSTEM_PROMPT.count(OPEN_TAG) == 2


def test_context_block_empty_session() -> None:
    text = format_context_block({}, None, [], [])
    assert text.startswith("<session_context>\n") and text.endswith("\n</session_context>")
    assert "(No facts recorded yet.)" in text
    assert "## Active fix\n(None" in text
    assert "(No scripts run in this session.)" in text
    assert "do not set template_id" in text


def test_context_block_full_session() -> None:
    text = format_context_block(
        {
            "environment": ["Windows 11 23H2, Intune managed"],
            "symptom": ["Outlook prompts for a password", "Started Monday"],
            "ruled_out": ["Expired password"],
            "confirmed": ["Modern auth disabled on the tenant"],
            "custom_kind": ["Something else"],
            "observation": [],
        },
        {
            "title": "Enable modern authentication",
            "summary": "Legacy auth prompts loop.",
            "steps": ["Open the admin centre", "Enable modern auth"],
            "script": "Set-OrganizationConfig -OAuth2ClientProfileEnabled $true -WhatIf",
            "confidence": 75,
            "status": "proposed",
        },
        [
            {
                "script_name": "Get-MailboxAuth",
                "status": "succeeded",
                "exit_code": 0,
                "ran_at": "2026-11-28T10:00:00Z",
                "parameters": {"Mailbox": "user@example.com", "AdminPassword": "hunter2"},
                "output": "OAuth2ClientProfileEnabled : False",
            },
            {"name": "Test-Connection", "status": "failed", "error": "Access denied"},
        ],
        [
            {"id": "tpl-modern-auth", "title": "Enable modern auth", "description": "M365"},
            {"title": "no id, skipped"},
        ],
    )
    # Fact kinds in the documented order, unknown kinds after, empty kinds left out.
    order = [
        "### Symptoms",
        "### Confirmed",
        "### Ruled out",
        "### Environment",
        "### Custom kind",
    ]
    positions = [text.index(heading) for heading in order]
    assert positions == sorted(positions)
    assert "### Observations" not in text
    assert "- Outlook prompts for a password\n- Started Monday" in text
    assert "Title: Enable modern authentication" in text
    assert "Confidence: 75" in text and "Status: proposed" in text
    assert "1. Open the admin centre\n2. Enable modern auth" in text
    assert "```powershell\nSet-OrganizationConfig" in text
    assert "1. Get-MailboxAuth (succeeded, exit code 0) at 2026-11-28T10:00:00Z" in text
    assert "Mailbox=user@example.com" in text
    assert "hunter2" not in text and "AdminPassword=[REDACTED]" in text
    assert "OAuth2ClientProfileEnabled : False" in text
    assert "2. Test-Connection (failed)" in text and "Error: Access denied" in text
    assert "- tpl-modern-auth: Enable modern auth - M365" in text
    assert "no id, skipped" not in text


def test_context_block_is_pure_and_clips_long_text() -> None:
    facts = {"observation": ["x" * 5000]}
    runs = [{"name": "dump", "output": "y" * 10_000}]
    first = format_context_block(facts, None, runs, [])
    assert first == format_context_block(facts, None, runs, [])
    assert facts == {"observation": ["x" * 5000]}
    assert "[truncated]" in first
    assert len(first) < 5000
