"""Token estimates and fitting a conversation's history into a token budget."""

from __future__ import annotations

import math
from typing import Any

# Rough per-message framing overhead used by fit_history, in tokens.
MESSAGE_OVERHEAD_TOKENS = 4


def estimate_tokens(text: str) -> int:
    """A rough token count: one token per four characters, rounded up (0 for "").

    Claude's tokenizer averages a little under four characters a token on English prose
    and fewer on code or non-Latin text, so treat this as an estimate for budgeting, not
    for billing.
    """
    return math.ceil(len(text) / 4) if text else 0


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(block.get("text", ""))
            for block in content
            if isinstance(block, dict) and block.get("type", "text") == "text"
        )
    return ""


def _message_tokens(message: dict[str, Any]) -> int:
    return estimate_tokens(_content_text(message.get("content"))) + MESSAGE_OVERHEAD_TOKENS


def _is_empty(content: Any) -> bool:
    if isinstance(content, str):
        return not content.strip()
    if isinstance(content, list):
        return not content
    return content is None


def _merge_content(first: Any, second: Any) -> Any:
    if isinstance(first, str) and isinstance(second, str):
        return f"{first}\n\n{second}"

    def as_blocks(content: Any) -> list[Any]:
        if isinstance(content, str):
            return [{"type": "text", "text": content}]
        return list(content)

    return as_blocks(first) + as_blocks(second)


def fit_history(messages: list[dict[str, Any]], budget_tokens: int) -> list[dict[str, Any]]:
    """The most recent conversation turns that fit ``budget_tokens`` (by :func:`estimate_tokens`
    plus a few tokens per message), shaped the way the Messages API wants them.

    * The newest user message (and anything after it) is always kept, even over budget.
    * Older messages are added newest-first while they fit; the first one that does not fit
      ends the walk, so the kept history is contiguous.
    * Messages with empty content or a role other than user/assistant are dropped.
    * The result starts with a user turn (leading assistant turns are dropped) and
      alternates roles (consecutive same-role turns are merged, their text joined by a blank
      line).

    The input list and its dicts are not modified.
    """
    cleaned = [
        dict(m)
        for m in messages
        if m.get("role") in ("user", "assistant") and not _is_empty(m.get("content"))
    ]
    newest_user = max((i for i, m in enumerate(cleaned) if m["role"] == "user"), default=None)
    if newest_user is None:
        return []

    kept = cleaned[newest_user:]
    used = sum(_message_tokens(m) for m in kept)
    for message in reversed(cleaned[:newest_user]):
        cost = _message_tokens(message)
        if used + cost > budget_tokens:
            break
        kept.insert(0, message)
        used += cost

    while kept and kept[0]["role"] != "user":
        kept.pop(0)

    shaped: list[dict[str, Any]] = []
    for message in kept:
        if shaped and shaped[-1]["role"] == message["role"]:
            shaped[-1] = {
                **shaped[-1],
                "content": _merge_content(shaped[-1]["content"], message["content"]),
            }
        else:
            shaped.append(message)
    return shaped
