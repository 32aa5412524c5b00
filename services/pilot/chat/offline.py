"""The offline assistant: without an LLM, an answer built from the session and the script
library.

With no API key the chat still answers, and says so. It answers the question asked when the
facts can (what was ruled out, what is confirmed, the root cause, the symptoms, the
environment, which templates fit), otherwise it summarises the facts with a next step. When a
library template matches the session well (services.pilot.library_match, the library's own
ranked search documents), the answer ends with a ``[SUGGEST_FIX]`` block naming it — the
template's id, steps taken from its description, a confidence from the match score — so the
fix card, its decisions and the note's resolution work offline exactly as they do online.

With a key, :func:`context_templates` puts the matching templates first in the LLM's context
so its ``[SUGGEST_FIX]`` blocks can name a real ``template_id``. No Flask.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from services.pilot import library_match
from services.pilot.library_match import TemplateMatch
from services.pilot.suggest_fix import CLOSE_TAG, OPEN_TAG

OFFLINE_NOTICE = (
    "The AI assistant is offline (no LLM is configured), so this answer is built only from "
    "the facts recorded in this session and the script library."
)
CONTEXT_MATCHES = 5
SHOWN_MATCHES = 3
# Listed when asked which templates fit; proposing one takes library_match.PROPOSE_SCORE.
LIST_SCORE = 0.3

_SECTIONS = (
    ("symptom", "Symptoms"),
    ("confirmed", "Confirmed"),
    ("ruled_out", "Ruled out"),
    ("observation", "Observations"),
    ("environment", "Environment"),
    ("root_cause", "Root cause"),
    ("resolution", "Resolution"),
)
_HEADINGS = dict(_SECTIONS)


@dataclass(frozen=True)
class _Intent:
    name: str
    pattern: re.Pattern[str]


# Checked in order: the first that matches the question decides what it asks for.
_INTENTS = (
    _Intent("ruled_out", re.compile(r"rul\w* out|excluded|eliminat|already (?:tried|checked)")),
    _Intent("root_cause", re.compile(r"root cause|\bcause|\bwhy\b")),
    _Intent("confirmed", re.compile(r"confirm|what do we know|\bknown\b")),
    _Intent("symptom", re.compile(r"symptom|what(?:'s| is) (?:wrong|happening)|reported")),
    _Intent("environment", re.compile(r"environment|version|\bos\b|which (?:machine|server)")),
    _Intent("templates", re.compile(r"template|script|\bfix\b|how (?:do|can|to) (?:i|we)")),
    _Intent("summary", re.compile(r"summar|recap|overview|so far")),
)


def question_intent(question: str | None) -> str | None:
    lowered = " ".join((question or "").lower().split())
    for intent in _INTENTS:
        if intent.pattern.search(lowered):
            return intent.name
    return None


def _bullets(items: Sequence[str], limit: int = 8) -> list[str]:
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


def steps_from_description(match: TemplateMatch) -> list[str]:
    """The template's description as steps ("Stops the spooler, deletes stuck spool files and
    starts it again." -> three steps), then running and verifying it."""
    description = " ".join((match.description or "").split()).rstrip(".")
    clauses = [
        c.strip(" .")
        for c in re.split(
            r",\s*(?:and\s+|then\s+)?|;\s*|\.\s+|\s+and then\s+|\s+and\s+(?=[a-z]+s\b)", description
        )
        if c.strip(" .")
    ]
    steps = [c[:1].upper() + c[1:] for c in clauses]
    return [
        f"Generate the '{match.name}' template from the library for the affected machine",
        *steps,
        "Verify with the user and record the result as a confirmed fact",
    ]


def suggest_fix_block(match: TemplateMatch) -> str:
    body = {
        "title": match.name,
        "summary": match.use_case or match.description or match.name,
        "steps": steps_from_description(match),
        "template_id": str(match.template_id),
        "confidence": match.confidence,
    }
    return f"{OPEN_TAG}\n{json.dumps(body, ensure_ascii=False)}\n{CLOSE_TAG}"


def _summary(grouped: dict[str, list[str]]) -> list[str]:
    lines: list[str] = []
    for kind, heading in _SECTIONS:
        items = grouped.get(kind) or []
        if items:
            lines += ["", f"{heading}:", *_bullets(items)]
    if not any(grouped.values()):
        lines += ["", "No facts are recorded yet."]
    return lines


def _answer(intent: str, grouped: dict[str, list[str]], matches: list[TemplateMatch]) -> list[str]:
    if intent == "templates":
        matches = [m for m in matches if m.score >= LIST_SCORE]
        if not matches:
            return ["", "No library template matches this session's facts yet."]
        return [
            "",
            "Library templates that match this session:",
            *(
                f"- {m.name} (match {m.confidence}%)"
                + (f": {m.description}" if m.description else "")
                for m in matches[:SHOWN_MATCHES]
            ),
        ]
    if intent == "summary":
        return _summary(grouped)
    items = grouped.get(intent) or []
    heading = _HEADINGS[intent]
    if not items and intent == "root_cause" and grouped.get("confirmed"):
        return [
            "",
            "No root cause is recorded yet; what is confirmed so far:",
            *_bullets(grouped["confirmed"]),
        ]
    if not items:
        return ["", f"{heading}: nothing is recorded yet."]
    return ["", f"{heading} so far:", *_bullets(items, limit=20)]


def offline_answer(
    grouped: dict[str, list[str]],
    active_fix: dict[str, Any] | None,
    question: str | None,
    matches: list[TemplateMatch],
    next_step: str,
) -> str:
    """The offline answer to ``question``, with a fix proposal when a template fits and the
    active fix does not already name it."""
    lines = [OFFLINE_NOTICE]
    intent = question_intent(question)
    if intent is None:
        lines += _summary(grouped)
    else:
        lines += _answer(intent, grouped, matches)
    active_title = active_fix.get("title") if active_fix else None
    if active_title:
        lines += ["", f"Active fix: {active_title}"]
    lines += ["", f"Suggested next step: {next_step}"]
    if intent is None and any(grouped.values()) and not grouped.get("environment"):
        lines.append(
            "Also record the environment (OS and client versions, network, tenant) as an "
            "environment fact."
        )
    proposal = _proposal(matches, active_fix)
    if proposal is not None:
        lines += [
            "",
            f"The library's '{proposal.name}' template matches these facts "
            f"({proposal.confidence}%): proposed as a fix.",
            suggest_fix_block(proposal),
        ]
    return "\n".join(lines)


def _proposal(
    matches: list[TemplateMatch], active_fix: dict[str, Any] | None
) -> TemplateMatch | None:
    best = next((m for m in matches if m.proposable), None)
    if best is None:
        return None
    if active_fix and active_fix.get("template_id") == str(best.template_id):
        return None  # already the fix on the card: proposing it again would supersede it
    return best


def session_matches(
    session: Session,
    account_id: uuid.UUID,
    *,
    title: str | None,
    problem: str | None,
    grouped: dict[str, list[str]],
) -> list[TemplateMatch]:
    """The library templates ranked against the session's problem and its facts (not the
    ruled-out ones: a cause ruled out is no reason to run its fix)."""
    facts = [text for kind, texts in grouped.items() if kind != "ruled_out" for text in texts]
    query = library_match.session_text(problem, title, facts)
    return library_match.rank_templates(session, account_id, query, limit=CONTEXT_MATCHES)


def context_templates(
    matches: list[TemplateMatch], usual: list[dict[str, Any]], limit: int
) -> list[dict[str, Any]]:
    """The LLM's fix templates: those matching the session first (with their match score),
    then the account's most used, without repeats."""
    listed: list[dict[str, Any]] = [
        {
            "id": str(m.template_id),
            "name": m.name,
            "description": m.description,
            "match": m.confidence,
        }
        for m in matches
    ]
    seen = {t["id"] for t in listed}
    listed += [t for t in usual if t["id"] not in seen]
    return listed[:limit]
