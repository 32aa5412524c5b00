"""Validation and grounding: four sections of prose, known citations, no specific token absent
from the bundle and no redacted value. Each problem is named, for the corrective retry."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from services.notes.bundle import NoteBundle
from services.notes.generator.draft import (
    NoteDraft,
    NoteItem,
    render_markdown,
)
from services.notes.generator.scrub import (
    forbidden_values,
    redacted_value_ok,
    scrub_any,
    scrub_text,
    sensitive_patterns,
)
from services.notes.generator.sources import source_document
from services.notes.kinds import section_titles
from services.notes.vocabulary import (
    DEFAULT_MAX_CHARS,
    ITEM_FORMATS,
    REDACTED,
)


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

    walk(scrub_any(source_document(bundle), bundle))
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


# An item may start with a placeholder ("[user]'s laptop", "[REDACTED] was ..."): not JSON.
_JSON_START = re.compile(r"^\s*(?:\{|\[(?![a-z][a-z-]*(?:-\d+)?\]|REDACTED\]))")
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


def mentions(text: str, value: str) -> bool:
    """Whether ``value`` appears in ``text`` as a word of its own; a one-word name only in
    its own case ("Mark" is a name, "mark" a word)."""
    flags = 0 if re.fullmatch(r"[A-Za-z]+", value) else re.IGNORECASE
    return re.search(rf"(?<![\w@.-]){re.escape(value)}(?![\w@-])", text, flags) is not None


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

    titles_wanted = section_titles(bundle.kind)
    known = bundle.known_refs()
    haystack = bundle_text(bundle)
    squashed = _squash(haystack)
    sections: list[tuple[str, tuple[NoteItem, ...]]] = []
    titles: list[str] = []
    for raw in raw_sections:
        title = str(raw.get("title", "")).strip() if isinstance(raw, Mapping) else ""
        canonical = next(
            (s for s in titles_wanted if s.casefold() == title.rstrip(":").casefold()), None
        )
        if canonical is None:
            problems.append(
                Problem(
                    "unknown_section",
                    f"unexpected section {title!r} (only: " + ", ".join(titles_wanted) + ")",
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

    for name in titles_wanted:
        count = titles.count(name)
        if count == 0:
            problems.append(Problem("missing_section", f"missing section '{name}'"))
        elif count > 1:
            problems.append(Problem("duplicate_section", f"section '{name}' appears {count} times"))
    if len(titles) == len(set(titles)) and titles != [s for s in titles_wanted if s in titles]:
        problems.append(
            Problem(
                "out_of_order",
                "sections are out of order: expected "
                + ", ".join(titles_wanted)
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
    for number, value in enumerate(forbidden_values(bundle), start=1):
        if re.search(re.escape(value), markdown, re.IGNORECASE):
            problems.append(
                Problem(
                    "forbidden_value",
                    f"note contains a sensitive value that must not be disclosed (forbidden "
                    f"value #{number}); remove it",
                )
            )
    flagged: set[str] = set()
    if any(mentions(markdown, value) for value in bundle.withheld):
        problems.append(
            Problem(
                "identifying_detail",
                "the article names a customer detail (a person, e-mail address, computer, "
                "domain, IP address or ticket) that the session data shows as a placeholder; "
                "keep the placeholder",
            )
        )
    for key, pattern in sensitive_patterns(bundle):
        if key in flagged:
            continue
        for match in pattern.finditer(markdown):
            if not redacted_value_ok(match.group("value")):
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
