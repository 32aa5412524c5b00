"""The offline assistant: the deterministic answer given when no LLM is configured."""

from __future__ import annotations


def _bullets(items: list[str], limit: int = 8) -> list[str]:
    shown = [f"- {' '.join(item.split())}" for item in items[:limit]]
    if len(items) > limit:
        shown.append(f"- ... and {len(items) - limit} more")
    return shown


def next_step(grouped: dict[str, list[str]], active_fix_title: str | None) -> str:
    """A next diagnostic step, from which kinds of fact the session has so far."""
    if not any(grouped.values()):
        return (
            "Record what the user reports as a symptom fact, then what you have already "
            "checked as observations, so the diagnosis starts from evidence."
        )
    if active_fix_title and grouped.get("confirmed"):
        return (
            f"Carry out the active fix ({active_fix_title}), verify it with the user, record "
            "the result as a confirmed fact, then resolve the session."
        )
    if grouped.get("confirmed"):
        return (
            "Apply a fix that addresses the confirmed cause, verify it with the user, record "
            "the verification as a confirmed fact, then resolve the session."
        )
    if grouped.get("observation"):
        return (
            "Test the most likely cause behind your observations with a read-only check, and "
            "record the result as confirmed or ruled_out."
        )
    if grouped.get("symptom"):
        return (
            "Gather evidence for the symptom: reproduce it, check the relevant event logs and "
            "service states on the affected machine, and record what you see as observations."
        )
    return "Record the symptom the user reports so the diagnosis has a starting point."


def offline_answer(grouped: dict[str, list[str]], active_fix_title: str | None) -> str:
    """The deterministic answer given when no LLM is configured: a summary of the recorded
    facts and a next step, saying plainly that it comes from the facts only."""
    lines = [
        "The AI assistant is offline (no LLM is configured), so this answer is built only "
        "from the facts recorded in this session."
    ]
    sections = (
        ("symptom", "Symptoms"),
        ("confirmed", "Confirmed"),
        ("ruled_out", "Ruled out"),
        ("observation", "Observations"),
        ("environment", "Environment"),
        ("root_cause", "Root cause"),
        ("resolution", "Resolution"),
    )
    for kind, heading in sections:
        items = grouped.get(kind) or []
        if items:
            lines += ["", f"{heading}:", *_bullets(items)]
    if not any(grouped.values()):
        lines += ["", "No facts are recorded yet."]
    if active_fix_title:
        lines += ["", f"Active fix: {active_fix_title}"]
    lines += ["", f"Suggested next step: {next_step(grouped, active_fix_title)}"]
    if any(grouped.values()) and not grouped.get("environment"):
        lines.append(
            "Also record the environment (OS and client versions, network, tenant) as an "
            "environment fact."
        )
    return "\n".join(lines)
