"""The FlowPilot assistant's system prompt and the per-turn session context block.

``ASSISTANT_SYSTEM_PROMPT`` is content, kept as data in ``assistant_system_prompt.txt`` beside
this module (its first line carries the version) and read once when the module is imported.
It is stable across sessions and turns so the API can cache it (prompt caching needs at least
2,048 tokens on Sonnet 4.6, the largest minimum of the models we support; keep it above that
when editing, a test checks). Everything that changes per session or per turn goes in
:func:`format_context_block`, which the pilot service sends after the cached prompt.
Bump the version line with every wording change so answers can be traced to a prompt.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from shared.vocabulary import FACT_KINDS, REDACTION_MARKER

PROMPT_FILE = Path(__file__).with_name("assistant_system_prompt.txt")


def load_prompt(path: Path) -> tuple[str, str]:
    """``(version, text)`` of a prompt file: a ``version: ...`` line, a ``---`` line, then the
    prompt itself, byte for byte (the text is what prompt caching keys on)."""
    raw = path.read_text(encoding="utf-8")
    header, sep, text = raw.partition("\n---\n")
    if not sep or not header.startswith("version:"):
        raise ValueError(f"{path.name}: expected a 'version: ...' line and a '---' line first")
    version = header.removeprefix("version:").strip()
    if not version or not text.strip():
        raise ValueError(f"{path.name}: empty version or prompt")
    return version, text


# Read once, at import: the file ships with the code and never changes while a process runs.
PROMPT_VERSION, ASSISTANT_SYSTEM_PROMPT = load_prompt(PROMPT_FILE)

# The order the prompt lists facts in: the vocabulary's own.
FACT_KIND_ORDER: tuple[str, ...] = FACT_KINDS
FACT_KIND_HEADINGS: dict[str, str] = {
    "symptom": "Symptoms",
    "observation": "Observations",
    "confirmed": "Confirmed",
    "ruled_out": "Ruled out",
    "environment": "Environment",
    "root_cause": "Root cause",
    "resolution": "Resolution",
}

MAX_FACT_CHARS = 1000
MAX_SCRIPT_CHARS = 4000
MAX_OUTPUT_CHARS = 2000
REDACTED = REDACTION_MARKER

# Parameter names whose values are withheld even if the caller forgot to redact them.
_SENSITIVE_NAME_RE = re.compile(
    r"pass(word|wd|phrase)?|secret|token|api[_-]?key|credential|private[_-]?key|"
    r"connection[_-]?string|pin\b|otp|mfa",
    re.IGNORECASE,
)


def _clip(text: str, limit: int) -> str:
    text = text.strip()
    if len(text) <= limit:
        return text
    return text[:limit].rstrip() + " ... [truncated]"


def _one_line(text: str, limit: int) -> str:
    return _clip(" ".join(text.split()), limit)


def _first(mapping: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        value = mapping.get(key)
        if value not in (None, ""):
            return value
    return None


def _render_facts(facts_by_kind: Mapping[str, Sequence[str]]) -> list[str]:
    lines = ["## Facts"]
    kinds = [k for k in FACT_KIND_ORDER if facts_by_kind.get(k)]
    kinds += sorted(k for k in facts_by_kind if k not in FACT_KIND_ORDER and facts_by_kind[k])
    if not kinds:
        return [*lines, "(No facts recorded yet.)"]
    for kind in kinds:
        heading = FACT_KIND_HEADINGS.get(kind, kind.replace("_", " ").capitalize())
        lines.append(f"### {heading}")
        lines.extend(f"- {_one_line(str(fact), MAX_FACT_CHARS)}" for fact in facts_by_kind[kind])
    return lines


def _render_active_fix(active_fix: Mapping[str, Any] | None) -> list[str]:
    lines = ["## Active fix"]
    if not active_fix:
        return [*lines, "(None: no fix has been proposed or accepted yet.)"]
    lines.append(f"Title: {_one_line(str(active_fix.get('title') or '(untitled)'), 300)}")
    for key, label in (
        ("status", "Status"),
        ("confidence", "Confidence"),
        ("template_id", "Template"),
    ):
        value = active_fix.get(key)
        if value not in (None, ""):
            lines.append(f"{label}: {value}")
    summary = active_fix.get("summary")
    if summary:
        lines.append(f"Summary: {_one_line(str(summary), 2000)}")
    steps = active_fix.get("steps") or []
    if steps:
        lines.append("Steps:")
        lines.extend(f"{n}. {_one_line(str(step), 1000)}" for n, step in enumerate(steps, 1))
    script = active_fix.get("script")
    if script:
        lines += ["Script:", "```powershell", _clip(str(script), MAX_SCRIPT_CHARS), "```"]
    return lines


def _render_parameters(parameters: Any) -> str:
    if not isinstance(parameters, Mapping) or not parameters:
        return ""
    parts = []
    for name, value in parameters.items():
        shown = REDACTED if _SENSITIVE_NAME_RE.search(str(name)) else value
        parts.append(f"{name}={_one_line(str(shown), 200)}")
    return ", ".join(parts)


def _render_script_runs(script_runs: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = ["## Script runs"]
    if not script_runs:
        return [*lines, "(No scripts run in this session.)"]
    for number, run in enumerate(script_runs, 1):
        name = _first(run, "script_name", "name", "title", "script") or "(unnamed script)"
        head = f"{number}. {_one_line(str(name), 200)}"
        status = _first(run, "status")
        exit_code = run.get("exit_code")
        if status is not None or exit_code is not None:
            details = [str(status)] if status is not None else []
            if exit_code is not None:
                details.append(f"exit code {exit_code}")
            head += f" ({', '.join(details)})"
        when = _first(run, "ran_at", "finished_at", "created_at")
        if when is not None:
            head += f" at {when}"
        lines.append(head)
        parameters = _render_parameters(run.get("parameters"))
        if parameters:
            lines.append(f"   Parameters: {parameters}")
        output = _first(run, "output", "output_excerpt", "stdout")
        if output:
            lines += ["   Output:", "```text", _clip(str(output), MAX_OUTPUT_CHARS), "```"]
        error = _first(run, "error", "stderr")
        if error:
            lines.append(f"   Error: {_one_line(str(error), 500)}")
    return lines


def _render_templates(templates: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = ["## Fix templates"]
    usable = [t for t in templates if _first(t, "id", "template_id") is not None]
    if not usable:
        return [*lines, "(No fix templates available: do not set template_id.)"]
    lines.append("Use only these ids for template_id:")
    for template in usable:
        template_id = _first(template, "id", "template_id")
        title = _first(template, "title", "name") or ""
        line = f"- {template_id}: {_one_line(str(title), 200)}"
        description = _first(template, "description", "summary")
        if description:
            line += f" - {_one_line(str(description), 300)}"
        match = template.get("match")
        if isinstance(match, int) and not isinstance(match, bool):
            line += f" (matches this session's facts: {match}%)"
        lines.append(line)
    return lines


def format_context_block(
    facts_by_kind: dict[str, list[str]],
    active_fix: dict[str, Any] | None,
    script_runs: list[dict[str, Any]],
    templates: list[dict[str, Any]],
) -> str:
    """Render the per-turn session context as text for the assistant.

    ``facts_by_kind`` maps a fact kind (symptom, observation, confirmed, ruled_out,
    environment; other kinds follow, alphabetically) to fact texts, oldest first.
    ``active_fix`` has title, summary, steps, script, confidence, status, template_id (all
    optional). Each script run may have script_name (or name), status, exit_code, ran_at,
    parameters (a dict, values already redacted; names that look sensitive are redacted
    here too), output and error. Each template has id, title (or name) and description.
    Long texts are clipped. Pure function: same input, same text.
    """
    sections = [
        _render_facts(facts_by_kind),
        _render_active_fix(active_fix),
        _render_script_runs(script_runs),
        _render_templates(templates),
    ]
    body = "\n\n".join("\n".join(section) for section in sections)
    return f"<session_context>\n{body}\n</session_context>"
