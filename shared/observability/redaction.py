"""Redaction: the `redact` log processor, which masks the value of every sensitive key and
every occurrence of a value registered for the current request or task."""

from __future__ import annotations

import contextvars
import json as _json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from structlog.types import EventDict, WrappedLogger

from shared.vocabulary import REDACTION_MARKER

REDACTED = REDACTION_MARKER


DEFAULT_SENSITIVE_KEYS: frozenset[str] = frozenset(
    {
        "password",
        "passwd",
        "secret",
        "token",
        "api_key",
        "apikey",
        "authorization",
        "cookie",
        "credentials",
        "private_key",
        "parameters",
        "values",
        "script",
        "scripts",
    }
)
# A key that contains a sensitive word but ends in one of these names metadata about the value,
# not the value itself: `script_id`, `token_type`, `parameter_names`, `secret_name`.
_METADATA_SUFFIXES = frozenset(
    {"id", "ids", "name", "names", "count", "len", "length", "type", "kind", "version", "ms"}
)
# Registered values shorter than this are not masked as substrings: masking "1" or "ab" would
# shred every log line. Key-based masking still covers them.
MIN_SENSITIVE_VALUE_LENGTH = 4
# Keys the logging chain itself writes; never rewritten.
_STRUCTURAL_KEYS = frozenset({"timestamp", "level", "logger"})

_sensitive_keys: frozenset[tuple[str, ...]] = frozenset()
_key_cache: dict[str, bool] = {}
_sensitive_values: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar(
    "rf_sensitive_values", default=frozenset()
)
_pattern_cache: dict[frozenset[str], re.Pattern[str]] = {}
_KEY_SPLIT = re.compile(r"[^a-z0-9]+")


def _segments(name: str) -> tuple[str, ...]:
    # camelCase -> camel_case, then split on anything that is not a letter or digit.
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()
    return tuple(part for part in _KEY_SPLIT.split(snake) if part)


def set_sensitive_keys(keys: Iterable[str]) -> None:
    """Replace the set of sensitive key words (each may span segments, e.g. `api_key`)."""
    global _sensitive_keys
    _sensitive_keys = frozenset(_segments(k) for k in keys if _segments(k))
    _key_cache.clear()


set_sensitive_keys(DEFAULT_SENSITIVE_KEYS)


def is_sensitive_key(key: str) -> bool:
    """Whether the value logged under `key` must be masked (cached per key name)."""
    cached = _key_cache.get(key)
    if cached is not None:
        return cached
    parts = _segments(key)
    # Singular and plural forms of a word match (`parameter` and `parameters`), but the token
    # *counts* an LLM reports (`input_tokens`) do not: only the listed spelling and the same
    # word without a trailing "s" match.
    sensitive = False
    for word in _sensitive_keys:
        candidates = {word}
        if len(word[-1]) > 1 and word[-1].endswith("s"):
            candidates.add((*word[:-1], word[-1][:-1]))
        for cand in candidates:
            n = len(cand)
            for i in range(len(parts) - n + 1):
                if parts[i : i + n] == cand:
                    sensitive = True
                    break
            if sensitive:
                break
        if sensitive:
            break
    if sensitive and len(parts) > 1 and parts[-1] in _METADATA_SUFFIXES:
        tail = parts[-1]
        if not any(tail in word for word in _sensitive_keys):
            sensitive = False
    if len(_key_cache) < 4096:
        _key_cache[key] = sensitive
    return sensitive


def register_sensitive_value(value: object) -> None:
    """Mask `value` wherever it appears in log output for the rest of this request or task.

    Context-local: a request (init_app) or task (init_celery) starts with an empty set, so one
    request's values neither leak into nor mask another's logs.
    """
    if value is None or isinstance(value, bool):
        return
    text = value if isinstance(value, str) else str(value)
    variants = {text, text.strip()}
    # The same value as it appears inside a JSON document or a Python repr.
    variants.add(_json.dumps(text)[1:-1])
    variants.add(_json.dumps(text, ensure_ascii=False)[1:-1])
    variants.add(repr(text)[1:-1])
    keep = {v for v in variants if len(v) >= MIN_SENSITIVE_VALUE_LENGTH}
    if not keep:
        return
    current = _sensitive_values.get()
    if keep <= current:
        return
    _sensitive_values.set(current | keep)


def clear_sensitive_values() -> None:
    _sensitive_values.set(frozenset())


def _value_pattern(values: frozenset[str]) -> re.Pattern[str]:
    pattern = _pattern_cache.get(values)
    if pattern is None:
        ordered = sorted(values, key=len, reverse=True)
        pattern = re.compile("|".join(re.escape(v) for v in ordered))
        if len(_pattern_cache) > 256:
            _pattern_cache.clear()
        _pattern_cache[values] = pattern
    return pattern


def _scrub(value: Any, pattern: re.Pattern[str] | None, depth: int = 0) -> Any:
    if isinstance(value, str):
        return pattern.sub(REDACTED, value) if pattern is not None else value
    if depth > 8:
        # Too deep to walk: keep only a masked string form.
        return _scrub(str(value), pattern, depth) if pattern is not None else value
    if isinstance(value, Mapping):
        return {
            k: (
                REDACTED
                if isinstance(k, str) and is_sensitive_key(k)
                else _scrub(v, pattern, depth + 1)
            )
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub(v, pattern, depth + 1) for v in value]
    if isinstance(value, bytes | bytearray):
        return _scrub(bytes(value).decode("utf-8", "replace"), pattern, depth)
    if pattern is not None and not isinstance(value, int | float | bool | type(None)):
        # Any other object is rendered by the JSON renderer through str()/repr(): do it here so
        # the rendering is scrubbed too.
        return pattern.sub(REDACTED, str(value))
    return value


def redact(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask sensitive keys and every registered sensitive value."""
    values = _sensitive_values.get()
    pattern = _value_pattern(values) if values else None
    for key in list(event_dict):
        if key in _STRUCTURAL_KEYS:
            continue
        if key != "event" and is_sensitive_key(key):
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _scrub(event_dict[key], pattern)
    return event_dict
