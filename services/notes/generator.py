"""Resolution notes: the bundle a note is made from, its fingerprint, the prompt, validation,
citations, the offline (extractive) note and the generator that ties them together.

No Flask, no database: the caller builds a :class:`NoteBundle` (facts, active fix, redacted
script runs) and hands it to :class:`ResolutionNoteGenerator`.

A note is made of four sections, in this order: ``Problem``, ``What we confirmed``,
``Root cause``, ``Resolution``. Each section is a list of items (a sentence, a bullet or a
numbered step), and each item cites the ids of what it rests on: facts ``F1``..,
script runs ``S1``.. and the suggested fix ``X1``. The model answers that structure as JSON
(structured outputs); the offline generator builds the same structure from exactly the
section sources below. :func:`validate_note` checks it, :func:`render_markdown` turns it into
the markdown delivered to the ticket (no citation markers), and :func:`citations` into the
stored ``citations`` list.

Section sources:

* Problem: the session's problem statement (else its title) and its ``symptom`` facts.
* What we confirmed: ``confirmed``, ``ruled_out`` and ``environment`` facts, and the script
  runs linked to the session (template name and redacted parameters).
* Root cause: ``root_cause`` facts; else the active fix's stated cause (its summary); else a
  plain statement that no cause was confirmed.
* Resolution: ``resolution`` facts, the decided fix (a decision other than ``dismissed``) and
  the scripts run for it; else a plain statement that no resolution was recorded.

Redaction: script-run parameters arrive with sensitive values already replaced by
``[REDACTED]``; ``NoteBundle.forbidden_values`` holds the original sensitive values (or other
canaries) that must never appear in a note. Everything sent to the model and everything the
offline note copies from the bundle is passed through :func:`scrub_text` first.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import Any

from shared.llm import OFFLINE_MODEL, LLMClient, LLMResult, LLMUsage

NOTE_KINDS = ("resolution_note",)
SECTIONS = ("Problem", "What we confirmed", "Root cause", "Resolution")
FACT_KINDS = (
    "symptom",
    "observation",
    "confirmed",
    "ruled_out",
    "environment",
    "root_cause",
    "resolution",
)
CONFIRMED_KINDS = ("confirmed", "ruled_out", "environment")
ITEM_FORMATS = ("sentence", "bullet", "step")
REDACTED = "[REDACTED]"
# Decisions on a suggested fix that mean it was not applied.
REJECTED_DECISIONS = frozenset({"dismissed"})
FIX_REF = "X1"

DEFAULT_MAX_CHARS = 8000
MAX_TOKENS = 2000
# Forbidden values shorter than this are not searched for: they would match ordinary words.
MIN_FORBIDDEN_LEN = 4

GENERATOR_ANTHROPIC = "anthropic"
GENERATOR_OFFLINE = "offline"
GENERATOR_OFFLINE_FALLBACK = "offline-fallback"

NO_CONFIRMED_FACTS = "No facts were confirmed during this session."
NO_ROOT_CAUSE = "No root cause was confirmed during this session."
NO_RESOLUTION = "No resolution was recorded for this session."
NO_PROBLEM = "No problem description was recorded."

# Offline note limits (per item, and items per list), so one huge fact cannot crowd out the
# rest; the whole note is then fitted to max_chars.
_OFFLINE_ITEM_CHARS = 600
_OFFLINE_MAX_BULLETS = 25

PROMPT_FILE = Path(__file__).with_name("note_prompt.txt")


# -- prompt file -----------------------------------------------------------------------------


@dataclass(frozen=True)
class NotePrompt:
    """The system prompt, read once from :data:`PROMPT_FILE`. ``version`` is the file's
    declared ``prompt-version`` plus a hash of its text, so any edit to the prompt changes
    every note fingerprint (and no stored note is reused across prompts)."""

    text: str
    version: str


@cache
def note_prompt() -> NotePrompt:
    raw = PROMPT_FILE.read_text(encoding="utf-8")
    header, _, body = raw.partition("\n")
    key, _, declared = header.partition(":")
    if key.strip() != "prompt-version" or not declared.strip():
        raise RuntimeError(f"{PROMPT_FILE.name} must start with 'prompt-version: NAME'")
    text = body.strip() + "\n"
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
    return NotePrompt(text=text, version=f"{declared.strip()}+{digest}")


PROMPT_VERSION = note_prompt().version
SYSTEM_PROMPT = note_prompt().text


# -- bundle ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BundleFact:
    kind: str
    text: str
    created_at: str
    id: str = ""


@dataclass(frozen=True)
class BundleFix:
    title: str
    summary: str | None
    steps: tuple[str, ...]
    script: str | None
    confidence: int | None
    decision: str | None
    template_id: str | None = None
    created_at: str = ""

    @property
    def applied(self) -> bool:
        """False when the fix was dismissed (it then explains nothing and fixed nothing)."""
        return self.decision not in REJECTED_DECISIONS

    @property
    def decided(self) -> bool:
        """A decision other than ``dismissed`` was recorded: the fix was carried out."""
        return self.decision is not None and self.applied


@dataclass(frozen=True)
class BundleScriptRun:
    template_name: str
    parameters: Mapping[str, Any]
    created_at: str
    template_id: str | None = None

    def redacted_keys(self) -> tuple[str, ...]:
        return tuple(str(k) for k, v in self.parameters.items() if v == REDACTED)


@dataclass(frozen=True)
class NoteBundle:
    kind: str
    session_id: str
    account_id: str
    state_version: int
    problem: str | None
    facts: tuple[BundleFact, ...]
    active_fix: BundleFix | None
    script_runs: tuple[BundleScriptRun, ...]
    forbidden_values: frozenset[str] = field(default_factory=frozenset)
    title: str | None = None

    def facts_by_kind(self) -> dict[str, list[BundleFact]]:
        """Facts grouped by kind, in bundle order: every known kind (possibly empty) in
        :data:`FACT_KINDS` order, then any unknown kind in order of first appearance."""
        grouped: dict[str, list[BundleFact]] = {kind: [] for kind in FACT_KINDS}
        for fact in self.facts:
            grouped.setdefault(fact.kind, []).append(fact)
        return grouped

    def fact_refs(self) -> dict[str, BundleFact]:
        """``F1``.. for the facts, in bundle order (the order they were recorded)."""
        return {f"F{n}": fact for n, fact in enumerate(self.facts, start=1)}

    def run_refs(self) -> dict[str, BundleScriptRun]:
        return {f"S{n}": run for n, run in enumerate(self.script_runs, start=1)}

    def ref_of(self, fact: BundleFact) -> str:
        return next(f"F{n}" for n, f in enumerate(self.facts, start=1) if f is fact)

    def known_refs(self) -> frozenset[str]:
        refs = set(self.fact_refs()) | set(self.run_refs())
        if self.active_fix is not None and self.active_fix.applied:
            refs.add(FIX_REF)
        return frozenset(refs)

    def sensitive_keys(self) -> frozenset[str]:
        """Script-run parameter names whose value was redacted."""
        return frozenset(key for run in self.script_runs for key in run.redacted_keys())

    def problem_statement(self) -> str:
        return (self.problem or "").strip() or (self.title or "").strip()

    def fix_for_cause(self) -> BundleFix | None:
        """The active fix, unless dismissed: its summary is the stated cause."""
        fix = self.active_fix
        return fix if fix is not None and fix.applied else None

    def decided_fix(self) -> BundleFix | None:
        fix = self.active_fix
        return fix if fix is not None and fix.decided else None

    def runs_for_fix(self) -> list[BundleScriptRun]:
        """The script runs made for the decided fix: runs of its template, or (a fix with no
        template) runs made once it had been proposed."""
        fix = self.decided_fix()
        if fix is None:
            return []
        if fix.template_id:
            return [run for run in self.script_runs if run.template_id == fix.template_id]
        return [
            run for run in self.script_runs if fix.created_at and run.created_at >= fix.created_at
        ]

    def has_resolution(self) -> bool:
        """Whether the note can say what fixed it: a ``resolution`` fact, or a fix with a
        recorded decision other than ``dismissed``."""
        return bool(self.facts_by_kind()["resolution"]) or self.decided_fix() is not None


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _fix_dict(fix: BundleFix | None) -> dict[str, Any] | None:
    if fix is None:
        return None
    return {
        "title": fix.title,
        "summary": fix.summary,
        "steps": list(fix.steps),
        "script": fix.script,
        "confidence": fix.confidence,
        "decision": fix.decision,
    }


def bundle_to_dict(bundle: NoteBundle) -> dict[str, Any]:
    """The bundle as JSON-able data (the Resolve snapshot); :func:`bundle_from_dict` reverses
    it. ``forbidden_values`` are never serialised."""
    fix = bundle.active_fix
    return {
        "kind": bundle.kind,
        "session_id": bundle.session_id,
        "account_id": bundle.account_id,
        "state_version": bundle.state_version,
        "title": bundle.title,
        "problem": bundle.problem,
        "facts": [
            {"id": f.id, "kind": f.kind, "text": f.text, "created_at": f.created_at}
            for f in bundle.facts
        ],
        "active_fix": None
        if fix is None
        else {
            **(_fix_dict(fix) or {}),
            "template_id": fix.template_id,
            "created_at": fix.created_at,
        },
        "script_runs": [
            {
                "template_name": r.template_name,
                "template_id": r.template_id,
                "parameters": dict(r.parameters),
                "created_at": r.created_at,
            }
            for r in bundle.script_runs
        ],
    }


def bundle_from_dict(data: Mapping[str, Any]) -> NoteBundle:
    fix = data.get("active_fix")
    return NoteBundle(
        kind=str(data["kind"]),
        session_id=str(data["session_id"]),
        account_id=str(data["account_id"]),
        state_version=int(data["state_version"]),
        title=data.get("title"),
        problem=data.get("problem"),
        facts=tuple(
            BundleFact(
                kind=str(f["kind"]),
                text=str(f["text"]),
                created_at=str(f.get("created_at") or ""),
                id=str(f.get("id") or ""),
            )
            for f in data.get("facts") or []
        ),
        active_fix=None
        if not fix
        else BundleFix(
            title=str(fix["title"]),
            summary=fix.get("summary"),
            steps=tuple(str(s) for s in fix.get("steps") or []),
            script=fix.get("script"),
            confidence=fix.get("confidence"),
            decision=fix.get("decision"),
            template_id=fix.get("template_id"),
            created_at=str(fix.get("created_at") or ""),
        ),
        script_runs=tuple(
            BundleScriptRun(
                template_name=str(r["template_name"]),
                parameters=dict(r.get("parameters") or {}),
                created_at=str(r.get("created_at") or ""),
                template_id=r.get("template_id"),
            )
            for r in data.get("script_runs") or []
        ),
    )


def _run_dict(run: BundleScriptRun) -> dict[str, Any]:
    return {"template_name": run.template_name, "parameters": dict(run.parameters)}


def source_document(bundle: NoteBundle) -> dict[str, Any]:
    """Exactly what a note is made from, section by section, each item with its id. The prompt
    carries it (scrubbed), and the fingerprint hashes it."""
    facts = bundle.facts_by_kind()
    refs = {id(fact): ref for ref, fact in bundle.fact_refs().items()}

    def listed(kinds: Iterable[str]) -> list[dict[str, str]]:
        return [
            {"id": refs[id(f)], "kind": f.kind, "text": f.text} for k in kinds for f in facts[k]
        ]

    run_ids = {id(run): ref for ref, run in bundle.run_refs().items()}
    cause_fix = bundle.fix_for_cause()
    decided = bundle.decided_fix()
    return {
        "note_kind": bundle.kind,
        "problem": {"statement": bundle.problem_statement() or None, "facts": listed(["symptom"])},
        "what_we_confirmed": {
            "facts": listed(CONFIRMED_KINDS),
            "script_runs": [{"id": run_ids[id(r)], **_run_dict(r)} for r in bundle.script_runs],
        },
        "root_cause": {
            "facts": listed(["root_cause"]),
            "suggested_fix_cause": None
            if cause_fix is None or not (cause_fix.summary or "").strip()
            else {"id": FIX_REF, "text": cause_fix.summary},
        },
        "resolution": {
            "facts": listed(["resolution"]),
            "decided_fix": None
            if decided is None
            else {
                "id": FIX_REF,
                "title": decided.title,
                "steps": list(decided.steps),
                "decision": decided.decision,
            },
            "scripts_run_for_fix": [run_ids[id(r)] for r in bundle.runs_for_fix()],
            "resolution_recorded": bundle.has_resolution(),
        },
    }


def bundle_fingerprint(bundle: NoteBundle, *, model: str) -> str:
    """sha256 (hex) of what a note is made from (:func:`source_document`), the prompt
    version and the model.

    Deliberately excluded: ``state_version``, ids, the ticket ref, observations (no section
    uses them) and every timestamp, so writes that bump the version without changing the
    note's inputs hash the same and the stored note is reused. ``forbidden_values`` are
    excluded too (they are not note input); a caller reusing a stored note for a bundle whose
    forbidden values may have grown can re-run :func:`validate_note` on it.
    """
    document = {
        "prompt_version": note_prompt().version,
        "model": model,
        "sources": source_document(bundle),
    }
    return hashlib.sha256(_canonical(document).encode("utf-8")).hexdigest()


# -- redaction -----------------------------------------------------------------------------------


def _forbidden(bundle: NoteBundle) -> list[str]:
    values = {
        v.strip() for v in bundle.forbidden_values if v and len(v.strip()) >= MIN_FORBIDDEN_LEN
    }
    return sorted(values, key=lambda v: (-len(v), v))  # longest first, deterministic


_KEY_MARKUP = r"[*_`'\"]*"
# A value after "Key:" / "Key =": optional markup or quote, then one non-space token.
_VALUE = r"[ \t]*[*_`'\"]*[ \t]*(?P<value>[^\s*_`'\",;]+)?"


def _sensitive_patterns(bundle: NoteBundle) -> list[tuple[str, re.Pattern[str]]]:
    """For each redacted parameter name: ``Name: value``/``Name = value`` (optionally with
    a leading ``-`` or ``$`` and markdown emphasis or code around the name), and the
    PowerShell form ``-Name 'value'`` / ``-Name "value"`` with a quoted value."""
    patterns = []
    for key in sorted(bundle.sensitive_keys()):
        name = re.escape(key)
        assignment = rf"(?<![\w-])[-$]?{_KEY_MARKUP}{name}{_KEY_MARKUP}[ \t]*[:=]{_VALUE}"
        powershell = rf"(?<![\w-])-{name}[ \t]+['\"](?P<value>[^'\"\s]+)"
        patterns.append((key, re.compile(assignment, re.IGNORECASE)))
        patterns.append((key, re.compile(powershell, re.IGNORECASE)))
    return patterns


def _value_ok(value: str | None) -> bool:
    return value is None or value.startswith(REDACTED) or value.startswith("[REDACTED")


def scrub_text(text: str, bundle: NoteBundle) -> str:
    """``text`` with every forbidden value, and any value written after a redacted parameter
    name (``NewPassword: x``), replaced by ``[REDACTED]``."""
    for value in _forbidden(bundle):
        text = re.sub(re.escape(value), REDACTED, text, flags=re.IGNORECASE)
    for _key, pattern in _sensitive_patterns(bundle):

        def replace(match: re.Match[str]) -> str:
            value = match.group("value")
            if _value_ok(value):
                return match.group(0)
            start, end = match.span("value")
            base = match.start(0)
            whole = match.group(0)
            return whole[: start - base] + REDACTED + whole[end - base :]

        text = pattern.sub(replace, text)
    return text


def _scrub_any(value: Any, bundle: NoteBundle) -> Any:
    if isinstance(value, str):
        return scrub_text(value, bundle)
    if isinstance(value, Mapping):
        return {str(k): _scrub_any(v, bundle) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub_any(v, bundle) for v in value]
    return value


# -- the note structure --------------------------------------------------------------------------


@dataclass(frozen=True)
class NoteItem:
    text: str
    format: str = "sentence"  # "sentence" | "bullet" | "step"
    cites: tuple[str, ...] = ()


@dataclass(frozen=True)
class NoteDraft:
    """A validated note: the four sections, in order, each a non-empty list of items."""

    sections: tuple[tuple[str, tuple[NoteItem, ...]], ...]

    def items(self) -> Iterable[tuple[str, NoteItem]]:
        for name, items in self.sections:
            for item in items:
                yield name, item

    def to_json(self) -> str:
        return json.dumps(
            {
                "sections": [
                    {
                        "title": name,
                        "items": [
                            {"text": i.text, "format": i.format, "cites": list(i.cites)}
                            for i in items
                        ],
                    }
                    for name, items in self.sections
                ]
            },
            ensure_ascii=False,
        )


NOTE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["sections"],
    "properties": {
        "sections": {
            "type": "array",
            "description": "exactly four sections: " + ", ".join(SECTIONS) + ", in this order",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["title", "items"],
                "properties": {
                    "title": {"type": "string", "enum": list(SECTIONS)},
                    "items": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["text", "format", "cites"],
                            "properties": {
                                "text": {"type": "string"},
                                "format": {"type": "string", "enum": list(ITEM_FORMATS)},
                                "cites": {"type": "array", "items": {"type": "string"}},
                            },
                        },
                    },
                },
            },
        }
    },
}


def _render_group(group: list[NoteItem]) -> str:
    fmt = group[0].format
    if fmt == "sentence":
        return " ".join(i.text for i in group)
    if fmt == "bullet":
        return "\n".join(f"- {i.text}" for i in group)
    return "\n".join(f"{n}. {i.text}" for n, i in enumerate(group, start=1))


def render_markdown(draft: NoteDraft) -> str:
    """The note as delivered: ``## Section`` headings; consecutive sentences make one
    paragraph, bullets ``- `` lines, steps ``1.`` lines; blocks apart by a blank line. No
    citation markers."""
    out: list[str] = []
    for name, items in draft.sections:
        groups: list[list[NoteItem]] = []
        for item in items:
            if groups and groups[-1][-1].format == item.format:
                groups[-1].append(item)
            else:
                groups.append([item])
        blocks = [_render_group(group) for group in groups]
        out.append(f"## {name}\n" + "\n\n".join(blocks))
    return "\n\n".join(out) + "\n"


def citations(draft: NoteDraft, bundle: NoteBundle) -> list[dict[str, Any]]:
    """One entry per sentence, bullet or step: its section, its text, the ids it cites and
    the fact ids (uuids) behind the ``F`` ones."""
    facts = bundle.fact_refs()
    return [
        {
            "section": name,
            "text": item.text,
            "cites": list(item.cites),
            "fact_ids": [facts[ref].id for ref in item.cites if ref in facts and facts[ref].id],
        }
        for name, item in draft.items()
    ]


# -- validation ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    reason: str  # a short machine-readable reason (metrics, the usage ledger)
    message: str  # what the corrective retry tells the model


class NoteValidationError(ValueError):
    """The answer breaks the format, cites something unknown, states something the session
    does not hold, or leaks a value; ``problems`` says how (never quoting a forbidden value)."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(p.message for p in problems))
        self.problems = problems

    @property
    def reasons(self) -> list[str]:
        return sorted({p.reason for p in self.problems})


# Specific tokens: each must occur in the bundle (compared case-insensitively, whitespace
# ignored). Order matters: a span claimed by an earlier pattern is not matched again.
_SPECIFIC_TOKENS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("url", re.compile(r"\b(?:https?|ftp|smb|ldaps?|file)://[^\s<>\"')\]]+", re.IGNORECASE)),
    ("email", re.compile(r"\b[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+\b")),
    (
        "registry_path",
        re.compile(r"\b(?:HKLM|HKCU|HKCR|HKU|HKCC|HKEY_[A-Z_]+):?\\[^\s,;\"'()]+"),
    ),
    ("file_path", re.compile(r"(?:\b[A-Za-z]:\\|\\\\[\w.$-]+\\)[^\s,;\"'()]*")),
    ("file_path", re.compile(r"(?<![\w/])/(?:[\w.-]+/)+[\w.-]*")),
    ("kb_number", re.compile(r"\bKB\s?\d{6,8}\b", re.IGNORECASE)),
    ("cve_number", re.compile(r"\bCVE-\d{4}-\d{4,7}\b", re.IGNORECASE)),
    ("error_code", re.compile(r"\b0x[0-9A-Fa-f]{4,16}\b")),
    (
        "ip_address",
        re.compile(
            r"\b(?:\d{1,3}\.){3}\d{1,3}(?:/\d{1,2})?\b|\b(?:[0-9a-f]{1,4}:){3,7}[0-9a-f]{1,4}\b",
            re.IGNORECASE,
        ),
    ),
    (
        "host_name",
        re.compile(
            r"\b(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z][A-Za-z0-9-]{1,62}\b"
        ),
    ),
    ("host_name", re.compile(r"\b[A-Z][A-Z0-9]*-[A-Z0-9-]*\d[A-Z0-9-]*\b|\b[A-Z]{2,}\d{2,}\b")),
    ("version_number", re.compile(r"\bv?\d+(?:\.\d+){1,3}\b", re.IGNORECASE)),
    (
        "quantity",
        re.compile(
            r"\b\d+(?:[.,]\d+)?\s?(?:%|(?:[KMGTP]i?B|[KMG]bps|bytes?|ms|sec(?:onds?)?|s|"
            r"min(?:utes?)?|h(?:ours?)?|hrs?|days?|weeks?|[GM]Hz|dBm?|°C|users?|devices?|"
            r"attempts?|times)\b)",
            re.IGNORECASE,
        ),
    ),
)
# Words with a dot that look like domain names but are ordinary writing.
_NOT_HOSTS = frozenset({"e.g", "i.e", "etc"})
_CITE_MARKER = re.compile(r"\[(?:[FSX]\d+)(?:\s*,\s*[FSX]\d+)*\]")


def specific_tokens(text: str) -> list[tuple[str, str]]:
    """``(category, token)`` for every specific token in ``text``: URLs, e-mail addresses,
    registry and file paths, KB and CVE numbers, hexadecimal error codes, IP addresses, host
    and domain names, version numbers and numbers with units."""
    found: list[tuple[str, str]] = []
    taken: list[tuple[int, int]] = []
    for category, pattern in _SPECIFIC_TOKENS:
        for match in pattern.finditer(text):
            start, end = match.span()
            if any(s < end and start < e for s, e in taken):
                continue
            token = match.group(0).rstrip(".,;:!?")
            if category == "host_name" and token.casefold() in _NOT_HOSTS:
                continue
            taken.append((start, end))
            found.append((category, token))
    return found


def _squash(text: str) -> str:
    return "".join(text.split()).casefold()


def bundle_text(bundle: NoteBundle) -> str:
    """Every string the note may draw on (scrubbed), for the groundedness checks."""
    parts: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str):
            parts.append(value)
        elif isinstance(value, Mapping):
            for k, v in value.items():
                parts.append(str(k))
                walk(v)
        elif isinstance(value, list | tuple):
            for v in value:
                walk(v)
        elif value is not None:
            parts.append(str(value))

    walk(_scrub_any(source_document(bundle), bundle))
    return "\n".join(parts)


def ungrounded_tokens(
    text: str, bundle: NoteBundle, *, haystack: str | None = None, squashed: str | None = None
) -> list[tuple[str, str]]:
    """The specific tokens of ``text`` that do not occur in the bundle (``haystack``: its
    :func:`bundle_text`, ``squashed``: that text without whitespace and case, when the caller
    already has them)."""
    if squashed is None:
        squashed = _squash(haystack if haystack is not None else bundle_text(bundle))
    return [(cat, tok) for cat, tok in specific_tokens(text) if _squash(tok) not in squashed]


_JSON_START = re.compile(r"^\s*[\[{]")
_JSON_PAIR = re.compile(r"[\"'][^\"']{1,60}[\"']\s*:\s*")
_KV_PAIR = re.compile(r"(?:^|[\s,;|])[\w.\-]{1,40}\s*(?:=|:)\s*[^\s,;|]+")
_TABLE = re.compile(r"\|.*\|")


def _item_problems(item_text: str, squashed_bundle: str = "") -> list[Problem]:
    text = item_text
    problems: list[Problem] = []
    # Words copied verbatim from the session (a distinguished name such as OU=Finance,DC=x, a
    # registry value such as EnableADAL=0) are the session's own; only the rest must be prose.
    novel = " ".join(
        word
        for word in text.split()
        if not squashed_bundle
        or not ("=" in word or ":" in word)
        or len(word) < 6
        or _squash(word.strip(".,;:()'\"")) not in squashed_bundle
    )
    if "```" in text or "~~~" in text:
        problems.append(Problem("not_prose", "an item holds a code block; write plain prose"))
    if (
        _JSON_START.match(text)
        or len(_JSON_PAIR.findall(text)) >= 2
        or ("{" in text and "}" in text and ":" in text)
    ):
        problems.append(
            Problem("not_prose", f"an item holds JSON ({text[:60]!r}); write plain prose")
        )
    elif len(_KV_PAIR.findall(novel)) >= 3 or novel.count("=") >= 2:
        problems.append(
            Problem("not_prose", f"an item is a key/value dump ({text[:60]!r}); write prose")
        )
    if _TABLE.search(text):
        problems.append(Problem("not_prose", "an item holds a table; write plain prose"))
    if text.lstrip().startswith("#"):
        problems.append(Problem("not_prose", "an item starts a heading; headings are not allowed"))
    if _CITE_MARKER.search(text):
        problems.append(
            Problem("citation_marker", "an item's text holds a citation marker; use 'cites'")
        )
    return problems


def parse_answer(text: str) -> Any:
    """The JSON document of an answer (an outer code fence is tolerated)."""
    body = text.strip()
    fenced = re.match(r"\A```[\w-]*[ \t]*\n(?P<body>.*)\n```[ \t]*\Z", body, re.DOTALL)
    if fenced:
        body = fenced.group("body").strip()
    return json.loads(body)


def validate_note(
    answer: str | Mapping[str, Any], bundle: NoteBundle, *, max_chars: int = DEFAULT_MAX_CHARS
) -> NoteDraft:
    """Check an answer (the JSON text, or the parsed document) and return it as a
    :class:`NoteDraft`, or raise :class:`NoteValidationError` with every problem found.

    Rules: a JSON object ``{"sections": [...]}`` with exactly the four sections, each once, in
    order, each with at least one item; every item a non-empty single line of prose (no JSON,
    key/value dump, code fence, table, heading or inline citation marker), in a known format;
    every cited id one the bundle has; every specific token (IP addresses, host and domain
    names, e-mail addresses, URLs, KB and CVE numbers, hexadecimal error codes, registry and
    file paths, version numbers, numbers with units) present in the bundle; the rendered
    markdown at most ``max_chars``; no forbidden value of the bundle; and no redacted
    parameter name followed by a value other than ``[REDACTED]``.
    """
    problems: list[Problem] = []
    if isinstance(answer, str):
        try:
            document: Any = parse_answer(answer)
        except ValueError:
            raise NoteValidationError(
                [Problem("not_json", "the answer is not the JSON object the schema requires")]
            ) from None
    else:
        document = answer
    raw_sections = document.get("sections") if isinstance(document, Mapping) else None
    if not isinstance(raw_sections, list):
        raise NoteValidationError(
            [Problem("not_json", "the answer must be an object with a 'sections' array")]
        )

    known = bundle.known_refs()
    haystack = bundle_text(bundle)
    squashed = _squash(haystack)
    sections: list[tuple[str, tuple[NoteItem, ...]]] = []
    titles: list[str] = []
    for raw in raw_sections:
        title = str(raw.get("title", "")).strip() if isinstance(raw, Mapping) else ""
        canonical = next(
            (s for s in SECTIONS if s.casefold() == title.rstrip(":").casefold()), None
        )
        if canonical is None:
            problems.append(
                Problem(
                    "unknown_section",
                    f"unexpected section {title!r} (only: " + ", ".join(SECTIONS) + ")",
                )
            )
            continue
        titles.append(canonical)
        raw_items = raw.get("items") if isinstance(raw, Mapping) else None
        items: list[NoteItem] = []
        for raw_item in raw_items if isinstance(raw_items, list) else []:
            if isinstance(raw_item, str):
                raw_item = {"text": raw_item}
            if not isinstance(raw_item, Mapping):
                problems.append(Problem("not_prose", f"an item of '{canonical}' is not an object"))
                continue
            text = " ".join(str(raw_item.get("text", "")).split())
            if not text:
                continue
            fmt = str(raw_item.get("format") or "sentence")
            if fmt not in ITEM_FORMATS:
                problems.append(Problem("bad_format", f"unknown item format {fmt!r}"))
                fmt = "sentence"
            cites_raw = raw_item.get("cites") or []
            cites = (
                tuple(dict.fromkeys(str(c).strip() for c in cites_raw if str(c).strip()))
                if isinstance(cites_raw, list)
                else ()
            )
            for ref in cites:
                if ref not in known:
                    problems.append(
                        Problem(
                            "unknown_citation",
                            f"'{canonical}' cites {ref!r}, which is not an id in the session "
                            "data; cite only the ids given",
                        )
                    )
            problems += _item_problems(text, squashed)
            for category, token in ungrounded_tokens(text, bundle, squashed=squashed):
                problems.append(
                    Problem(
                        "ungrounded_token",
                        f"'{canonical}' states {category.replace('_', ' ')} {token!r}, which "
                        "does not occur in the session data; remove it or copy the value "
                        "exactly as the session data gives it",
                    )
                )
            items.append(NoteItem(text=text, format=fmt, cites=cites))
        if not items:
            problems.append(Problem("empty_section", f"section '{canonical}' is empty"))
        sections.append((canonical, tuple(items)))

    for name in SECTIONS:
        count = titles.count(name)
        if count == 0:
            problems.append(Problem("missing_section", f"missing section '{name}'"))
        elif count > 1:
            problems.append(Problem("duplicate_section", f"section '{name}' appears {count} times"))
    if len(titles) == len(set(titles)) and titles != [s for s in SECTIONS if s in titles]:
        problems.append(
            Problem(
                "out_of_order",
                "sections are out of order: expected "
                + ", ".join(SECTIONS)
                + "; got "
                + ", ".join(titles),
            )
        )

    draft = NoteDraft(sections=tuple(sections))
    markdown = render_markdown(draft)
    if len(markdown) > max_chars:
        problems.append(
            Problem(
                "too_long", f"note is {len(markdown)} characters long; the limit is {max_chars}"
            )
        )
    for number, value in enumerate(_forbidden(bundle), start=1):
        if re.search(re.escape(value), markdown, re.IGNORECASE):
            problems.append(
                Problem(
                    "forbidden_value",
                    f"note contains a sensitive value that must not be disclosed (forbidden "
                    f"value #{number}); remove it",
                )
            )
    flagged: set[str] = set()
    for key, pattern in _sensitive_patterns(bundle):
        if key in flagged:
            continue
        for match in pattern.finditer(markdown):
            if not _value_ok(match.group("value")):
                flagged.add(key)
                problems.append(
                    Problem(
                        "forbidden_value",
                        f"sensitive parameter '{key}' is followed by a value; "
                        f"write {REDACTED} instead of the value",
                    )
                )
                break

    if problems:
        # A problem may quote the answer: never a forbidden or redacted value.
        raise NoteValidationError(
            [Problem(p.reason, scrub_text(p.message, bundle)) for p in problems]
        )
    return draft


# -- offline note ----------------------------------------------------------------------------------


def _one_line(text: str, bundle: NoteBundle, limit: int = _OFFLINE_ITEM_CHARS) -> str:
    """Scrubbed, single-line, length-capped text that cannot start a markdown heading."""
    flat = scrub_text(" ".join(_FENCES.sub(" ", text).split()), bundle)
    if len(flat) > limit:
        flat = flat[: limit - 1].rstrip() + "…"
    return _LINE_START.sub("", flat)


_LINE_START = re.compile(r"^(?:#|\s)+")
_FENCES = re.compile(r"```+|~~~+")


def _sentence(text: str) -> str:
    return text if not text or text[-1] in ".!?…:" else f"{text}."


def _params(run: BundleScriptRun, bundle: NoteBundle) -> str:
    shown = []
    for key, value in run.parameters.items():
        if isinstance(value, list | tuple):
            value = ", ".join(str(v) for v in value)
        shown.append(f"{key} {value}")
    return _one_line("; ".join(shown), bundle, 300)


def _offline_sections(bundle: NoteBundle, bullets: int) -> dict[str, list[NoteItem]]:
    facts = bundle.facts_by_kind()

    def fact_item(fact: BundleFact, fmt: str, prefix: str = "") -> NoteItem:
        return NoteItem(
            text=prefix + _sentence(_one_line(fact.text, bundle)),
            format=fmt,
            cites=(bundle.ref_of(fact),),
        )

    def capped(items: list[NoteItem]) -> list[NoteItem]:
        items = [i for i in items if i.text.strip(" .")]
        if len(items) <= bullets:
            return items
        rest = len(items) - bullets
        return [*items[:bullets], NoteItem(text=f"… and {rest} more.", format=items[0].format)]

    run_refs = {id(run): ref for ref, run in bundle.run_refs().items()}

    problem: list[NoteItem] = []
    statement = _one_line(bundle.problem_statement(), bundle, 2 * _OFFLINE_ITEM_CHARS)
    if statement:
        problem.append(NoteItem(text=_sentence(statement)))
    symptoms = capped([fact_item(f, "bullet") for f in facts["symptom"]])
    if symptoms:
        problem.append(NoteItem(text="Reported symptoms:"))
        problem += symptoms
    if not problem:
        problem.append(NoteItem(text=NO_PROBLEM))

    confirmed = capped(
        [fact_item(f, "bullet") for f in facts["confirmed"]]
        + [fact_item(f, "bullet", "Ruled out: ") for f in facts["ruled_out"]]
        + [fact_item(f, "bullet", "Environment: ") for f in facts["environment"]]
        + [
            NoteItem(
                text=_sentence(
                    f"Ran the script “{_one_line(run.template_name, bundle, 200)}”"
                    + (f" ({_params(run, bundle)})" if run.parameters else "")
                ),
                format="bullet",
                cites=(run_refs[id(run)],),
            )
            for run in bundle.script_runs
        ]
    )
    if not confirmed:
        confirmed = [NoteItem(text=NO_CONFIRMED_FACTS)]

    cause: list[NoteItem] = [fact_item(f, "sentence") for f in facts["root_cause"]]
    cause_fix = bundle.fix_for_cause()
    if not cause and cause_fix is not None and (cause_fix.summary or "").strip():
        cause.append(
            NoteItem(
                text=_sentence(_one_line(cause_fix.summary or "", bundle, 2 * _OFFLINE_ITEM_CHARS)),
                cites=(FIX_REF,),
            )
        )
    if not cause:
        cause.append(NoteItem(text=NO_ROOT_CAUSE))
    cause = capped(cause)

    resolution: list[NoteItem] = capped([fact_item(f, "sentence") for f in facts["resolution"]])
    fix = bundle.decided_fix()
    if fix is not None:
        title = _one_line(fix.title, bundle, 200)
        if title:
            lead = "Applied the suggested fix: " if not resolution else "Suggested fix applied: "
            resolution.append(NoteItem(text=_sentence(lead + title), cites=(FIX_REF,)))
        steps = [_one_line(step, bundle) for step in fix.steps]
        resolution += capped(
            [NoteItem(text=_sentence(s), format="step", cites=(FIX_REF,)) for s in steps if s]
        )
        runs = bundle.runs_for_fix()
        if runs:
            resolution.append(NoteItem(text="Scripts run for the fix:"))
            resolution += capped(
                [
                    NoteItem(
                        text=_sentence(_one_line(run.template_name, bundle, 200)),
                        format="bullet",
                        cites=(run_refs[id(run)],),
                    )
                    for run in runs
                ]
            )
    if not resolution:
        resolution.append(NoteItem(text=NO_RESOLUTION))

    return {
        "Problem": problem,
        "What we confirmed": confirmed,
        "Root cause": cause,
        "Resolution": resolution,
    }


def offline_draft(bundle: NoteBundle, *, max_chars: int = DEFAULT_MAX_CHARS) -> NoteDraft:
    """A deterministic, extractive note grounded only in the section sources (no model).

    Every copied text is scrubbed of forbidden and redacted values, flattened to one line and
    capped; each item cites what it copies; lists are shortened until the note fits
    ``max_chars``. The result passes :func:`validate_note`.
    """
    bullets = _OFFLINE_MAX_BULLETS
    while True:
        sections = _offline_sections(bundle, bullets)
        draft = NoteDraft(sections=tuple((name, tuple(sections[name])) for name in SECTIONS))
        if len(render_markdown(draft)) <= max_chars or bullets <= 1:
            break
        bullets = bullets // 2
    if len(render_markdown(draft)) > max_chars:  # only with a tiny max_chars: cut every item
        budget = max(20, (max_chars - 80) // (4 * 3))
        draft = NoteDraft(
            sections=tuple(
                (
                    name,
                    tuple(
                        NoteItem(_one_line(i.text, bundle, budget), i.format, i.cites)
                        for i in items[:2]
                    ),
                )
                for name, items in draft.sections
            )
        )
    return draft


def offline_note(bundle: NoteBundle, *, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """The offline note as markdown (see :func:`offline_draft`)."""
    return render_markdown(offline_draft(bundle, max_chars=max_chars))


# -- prompt ----------------------------------------------------------------------------------------


def build_prompt(bundle: NoteBundle) -> tuple[str, list[dict[str, Any]]]:
    """``(system, messages)`` for the Messages API.

    The system prompt is constant (from :data:`PROMPT_FILE`); the user message carries the
    section sources as JSON, each fact, script run and the fix with its short id, every string
    scrubbed of forbidden values first. Timestamps and database ids are not sent.
    """
    document = _scrub_any(source_document(bundle), bundle)
    body = json.dumps(document, indent=2, ensure_ascii=False, default=str)
    user = (
        "Write the resolution note for this troubleshooting session. The session data is "
        "between the <session> tags, grouped by the section that may use it.\n\n"
        f"<session>\n{body}\n</session>\n\n"
        "Answer with the JSON object only."
    )
    return note_prompt().text, [{"role": "user", "content": user}]


def _correction_message(problems: list[Problem], stop_reason: str | None) -> str:
    lines = ["Your note cannot be used as written. Problems:"]
    lines += [f"- {problem.message}" for problem in problems]
    if stop_reason == "max_tokens":
        lines.append("- the answer was cut off at the length limit; write a shorter note")
    lines.append("")
    lines.append(
        "Write the corrected note now, as the JSON object: exactly the four sections "
        + ", ".join(f"'{s}'" for s in SECTIONS)
        + ", in that order, each with at least one item of plain prose, citing only the ids "
        f"in the session data, stating only values the session data holds, and {REDACTED} in "
        "place of any redacted value."
    )
    return "\n".join(lines)


# -- generator -------------------------------------------------------------------------------------


def _add_usage(total: LLMUsage, more: LLMUsage) -> LLMUsage:
    return LLMUsage(
        **{f.name: getattr(total, f.name) + getattr(more, f.name) for f in fields(total)}
    )


@dataclass(frozen=True)
class GeneratedNote:
    markdown: str
    generator: str  # "anthropic" | "offline" | "offline-fallback"
    model: str
    usage: LLMUsage
    attempts: int
    fingerprint: str
    llm_calls: int
    citations: list[dict[str, Any]] = field(default_factory=list)
    # One entry per rejected answer: the reasons it was rejected for.
    rejections: list[list[str]] = field(default_factory=list)

    def cache_payload(self, *, state_version: int, generated_at: str) -> dict[str, Any]:
        """The payload :class:`services.notes.cache.NoteCache` stores."""
        return {
            "markdown": self.markdown,
            "citations": self.citations,
            "generator": self.generator,
            "model": self.model,
            "generated_at": generated_at,
            "state_version": int(state_version),
            "usage": {f.name: getattr(self.usage, f.name) for f in fields(self.usage)},
            "fingerprint": self.fingerprint,
            "rejections": self.rejections,
        }


class ResolutionNoteGenerator:
    """Turns a :class:`NoteBundle` into a validated note: Claude when the client is online
    (one corrective retry naming each problem of an invalid answer, then the offline note as
    a fallback), the offline note otherwise. :class:`shared.llm.LLMUnavailable` propagates."""

    def __init__(self, llm: LLMClient, *, max_chars: int = DEFAULT_MAX_CHARS) -> None:
        self.llm = llm
        self.max_chars = max_chars

    def fingerprint(self, bundle: NoteBundle) -> str:
        """The fingerprint :meth:`generate` will report for ``bundle`` with this client
        (an offline client fingerprints with model ``"offline"``)."""
        return bundle_fingerprint(
            bundle, model=self.llm.model if self.llm.online else OFFLINE_MODEL
        )

    def generate(self, bundle: NoteBundle) -> GeneratedNote:
        if bundle.kind not in NOTE_KINDS:
            raise ValueError(f"unknown note kind {bundle.kind!r}")
        fingerprint = self.fingerprint(bundle)

        def done(
            draft: NoteDraft,
            generator: str,
            model: str,
            usage: LLMUsage,
            attempts: int,
            llm_calls: int,
            rejections: list[list[str]],
        ) -> GeneratedNote:
            return GeneratedNote(
                markdown=render_markdown(draft),
                generator=generator,
                model=model,
                usage=usage,
                attempts=attempts,
                fingerprint=fingerprint,
                llm_calls=llm_calls,
                citations=citations(draft, bundle),
                rejections=rejections,
            )

        if not self.llm.online:
            offline = offline_draft(bundle, max_chars=self.max_chars)
            return done(offline, GENERATOR_OFFLINE, OFFLINE_MODEL, LLMUsage(), 0, 0, [])

        def offline_json() -> str:
            return offline_draft(bundle, max_chars=self.max_chars).to_json()

        system, messages = build_prompt(bundle)
        usage = LLMUsage()
        attempts = 0
        llm_calls = 0
        rejections: list[list[str]] = []
        model = self.llm.model
        for _ in range(2):
            result: LLMResult = self._call(system, messages, offline_json)
            attempts += 1
            usage = _add_usage(usage, result.usage)
            if result.generator != GENERATOR_ANTHROPIC:
                # The client answered from offline() itself (it went offline).
                return done(
                    offline_draft(bundle, max_chars=self.max_chars),
                    GENERATOR_OFFLINE,
                    result.model,
                    usage,
                    attempts,
                    llm_calls,
                    rejections,
                )
            llm_calls += 1
            model = result.model or model
            try:
                draft = validate_note(result.text, bundle, max_chars=self.max_chars)
            except NoteValidationError as exc:
                rejections.append(exc.reasons)
                bad = scrub_text(result.text, bundle).strip() or "(empty answer)"
                messages = [
                    *messages,
                    {"role": "assistant", "content": bad},
                    {
                        "role": "user",
                        "content": _correction_message(exc.problems, result.stop_reason),
                    },
                ]
                continue
            return done(draft, GENERATOR_ANTHROPIC, model, usage, attempts, llm_calls, rejections)

        return done(
            offline_draft(bundle, max_chars=self.max_chars),
            GENERATOR_OFFLINE_FALLBACK,
            self.llm.model,
            usage,
            attempts,
            llm_calls,
            rejections,
        )

    def _call(
        self, system: str, messages: list[dict[str, Any]], offline: Callable[[], str]
    ) -> LLMResult:
        return self.llm.complete_json(
            system=system,
            messages=messages,
            max_tokens=MAX_TOKENS,
            schema=NOTE_SCHEMA,
            offline=offline,
            cache_system=True,
        )
