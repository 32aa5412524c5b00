"""Parse the assistant's ``[SUGGEST_FIX]{json}[/SUGGEST_FIX]`` proposals out of its replies.

Pure functions, no Flask and no database. The assistant ends a reply with at most one block
like::

    [SUGGEST_FIX]
    {"title": "Re-register the print spooler", "summary": "...", "steps": ["...", "..."],
     "script": "Restart-Service Spooler -WhatIf", "template_id": "tpl-spooler",
     "confidence": 80}
    [/SUGGEST_FIX]

:func:`parse_suggest_fix` returns the reply text with every block removed (well-formed or
not) and the proposal of the *last* well-formed block. :class:`SuggestFixStreamFilter` does
the text half of that incrementally, for streamed replies: nothing of a block ever reaches
the user, even when the tags arrive split across deltas.

Rules:

* Tags are case-sensitive. A block runs from ``[SUGGEST_FIX]`` to the first
  ``[/SUGGEST_FIX]`` after it; an unterminated block (or an opening tag cut off at the very
  end, ``[SUGGEST_FIX``) is removed to the end of the reply; a stray closing tag is removed.
  When a second opening tag comes before the closing tag, the first block counts as
  abandoned (malformed) and the body starts after the last opening tag.
* The body may be surrounded by whitespace and wrapped in a Markdown code fence
  (```` ```json ... ``` ````).
* A block is malformed, and ignored (only the count is logged), when its body is not JSON,
  not an object, has no non-blank string ``title``, or has a field of the wrong type
  (``summary``/``script``/``template_id`` not a string or null, ``steps`` not a list, a
  string or null). ``template_id`` may be an integer (it is turned into a string; whether
  it names a real template is for the caller to check).
* ``steps``: non-string items and blank steps are dropped; a single string becomes a
  one-step list. ``confidence``: a number or numeric string (``"85"``, ``"85%"``) rounded
  half-up and clamped to 0..100; missing, boolean, non-numeric or non-finite -> None.
* Strings are trimmed and bounded (see the ``MAX_*`` constants); blank optional strings
  become None.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

OPEN_TAG = "[SUGGEST_FIX]"
CLOSE_TAG = "[/SUGGEST_FIX]"

MAX_TITLE = 200
MAX_SUMMARY = 4000
MAX_STEP = 1000
MAX_STEPS = 50
MAX_SCRIPT = 20000

# The opening/closing tag cut off just before its "]" at the very end of a reply
# (max_tokens reached mid-tag) is removed like an unterminated block.
_DANGLING = (OPEN_TAG[:-1], CLOSE_TAG[:-1])

_FENCE_RE = re.compile(r"^```[A-Za-z0-9_-]*[ \t]*\n?(?P<body>.*?)\n?[ \t]*```$", re.DOTALL)
_MANY_NEWLINES_RE = re.compile(r"\n{3,}")
_TRAILING_SPACE_RE = re.compile(r"[ \t]+(?=\n)")


@dataclass(frozen=True)
class SuggestedFixProposal:
    title: str
    summary: str | None
    steps: list[str]
    script: str | None
    template_id: str | None
    confidence: int | None


@dataclass(frozen=True)
class ParsedReply:
    text: str
    fix: SuggestedFixProposal | None
    malformed_blocks: int


class _Malformed(ValueError):
    pass


def _scan(reply: str) -> tuple[list[str], list[str | None]]:
    """Split a reply into the text outside blocks and the block bodies (None: unterminated)."""
    outside: list[str] = []
    bodies: list[str | None] = []
    pos = 0
    while True:
        open_at = reply.find(OPEN_TAG, pos)
        close_at = reply.find(CLOSE_TAG, pos)
        if open_at == -1 and close_at == -1:
            tail = reply[pos:]
            for dangling in _DANGLING:
                if tail.endswith(dangling):
                    tail = tail[: -len(dangling)]
                    if dangling == _DANGLING[0]:
                        bodies.append(None)
                    break
            outside.append(tail)
            return outside, bodies
        if close_at != -1 and (open_at == -1 or close_at < open_at):  # stray closing tag
            outside.append(reply[pos:close_at])
            pos = close_at + len(CLOSE_TAG)
            continue
        outside.append(reply[pos:open_at])
        start = open_at + len(OPEN_TAG)
        end = reply.find(CLOSE_TAG, start)
        if end == -1:
            bodies.append(None)
            return outside, bodies
        # An opening tag inside the body abandons the block before it: each abandoned one
        # counts as unterminated, and the body starts after the last opening tag.
        *abandoned, body = reply[start:end].split(OPEN_TAG)
        bodies.extend([None] * len(abandoned))
        bodies.append(body)
        pos = end + len(CLOSE_TAG)


def tidy_text(text: str) -> str:
    """Trailing spaces off each line, at most one blank line in a row, no outer blank space."""
    text = _TRAILING_SPACE_RE.sub("", text.replace("\r\n", "\n"))
    return _MANY_NEWLINES_RE.sub("\n\n", text).strip()


def _unfence(body: str) -> str:
    body = body.strip()
    match = _FENCE_RE.match(body)
    return match.group("body").strip() if match else body


def _optional_str(data: dict[str, Any], key: str, limit: int) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Malformed(key)
    value = value.strip()
    return value[:limit] if value else None


def _steps(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise _Malformed("steps")
    steps = [item.strip()[:MAX_STEP] for item in value if isinstance(item, str) and item.strip()]
    return steps[:MAX_STEPS]


def _template_id(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise _Malformed("template_id")
    return value.strip() or None


def clamp_confidence(value: Any) -> int | None:
    """0..100, rounded half-up, or None when the value is not a usable number."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        raw = value.strip().removesuffix("%").strip()
        try:
            value = float(raw)
        except ValueError:
            return None
    if not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return max(0, min(100, math.floor(value + 0.5)))


def _proposal(body: str) -> SuggestedFixProposal:
    try:
        data = json.loads(_unfence(body))
    except ValueError as exc:
        raise _Malformed("json") from exc
    if not isinstance(data, dict):
        raise _Malformed("not an object")
    title = data.get("title")
    if not isinstance(title, str) or not title.strip():
        raise _Malformed("title")
    return SuggestedFixProposal(
        title=title.strip()[:MAX_TITLE],
        summary=_optional_str(data, "summary", MAX_SUMMARY),
        steps=_steps(data.get("steps")),
        script=_optional_str(data, "script", MAX_SCRIPT),
        template_id=_template_id(data.get("template_id")),
        confidence=clamp_confidence(data.get("confidence")),
    )


def parse_suggest_fix(reply: str) -> ParsedReply:
    """The reply without its ``[SUGGEST_FIX]`` blocks, and the last well-formed proposal."""
    outside, bodies = _scan(reply)
    fix: SuggestedFixProposal | None = None
    malformed = 0
    for body in bodies:
        if body is None:
            malformed += 1
            continue
        try:
            fix = _proposal(body)
        except _Malformed:
            malformed += 1
    if malformed:
        logger.warning(
            "suggest_fix.malformed_blocks",
            extra={"malformed_blocks": malformed, "blocks": len(bodies)},
        )
    return ParsedReply(text=tidy_text("".join(outside)), fix=fix, malformed_blocks=malformed)


def _held_suffix(buffer: str) -> int:
    """Length of the longest suffix of ``buffer`` that could start an opening or closing tag."""
    longest = 0
    for tag in (OPEN_TAG, CLOSE_TAG):
        for size in range(min(len(tag) - 1, len(buffer)), longest, -1):
            if buffer.endswith(tag[:size]):
                longest = size
                break
    return longest


class SuggestFixStreamFilter:
    """Remove ``[SUGGEST_FIX]`` blocks from a reply as it streams in.

    ``feed(delta)`` returns the text that is safe to show now: never any part of a block,
    and a possible partial tag at the end is held back until the next delta decides it.
    ``finish()`` returns what is left (an unterminated block is dropped). The concatenated
    output equals ``parse_suggest_fix(reply).text`` up to whitespace tidying.
    """

    def __init__(self) -> None:
        self._buffer = ""
        self._in_block = False
        self._finished = False

    @property
    def in_block(self) -> bool:
        """Whether the stream is inside a block right now (e.g. to show "preparing a fix")."""
        return self._in_block

    def feed(self, delta: str) -> str:
        if self._finished:
            raise RuntimeError("SuggestFixStreamFilter.feed() after finish()")
        self._buffer += delta
        out: list[str] = []
        while True:
            buffer = self._buffer
            if self._in_block:
                end = buffer.find(CLOSE_TAG)
                if end == -1:
                    # Keep only what could be the start of the closing tag.
                    keep = len(CLOSE_TAG) - 1
                    self._buffer = buffer[-keep:] if len(buffer) > keep else buffer
                    break
                self._buffer = buffer[end + len(CLOSE_TAG) :]
                self._in_block = False
                continue
            open_at = buffer.find(OPEN_TAG)
            close_at = buffer.find(CLOSE_TAG)
            if open_at == -1 and close_at == -1:
                held = _held_suffix(buffer)
                out.append(buffer[: len(buffer) - held])
                self._buffer = buffer[len(buffer) - held :]
                break
            if close_at != -1 and (open_at == -1 or close_at < open_at):  # stray closing tag
                out.append(buffer[:close_at])
                self._buffer = buffer[close_at + len(CLOSE_TAG) :]
                continue
            out.append(buffer[:open_at])
            self._buffer = buffer[open_at + len(OPEN_TAG) :]
            self._in_block = True
        return "".join(out)

    def finish(self) -> str:
        self._finished = True
        rest, self._buffer = self._buffer, ""
        if self._in_block:
            return ""
        for dangling in _DANGLING:
            if rest.endswith(dangling):
                return rest[: -len(dangling)]
        return rest
