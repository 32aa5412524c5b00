"""Inputs no route can store or parse, refused for every route before any view runs.

What answered 500: a NUL character (PostgreSQL text cannot hold one), a lone surrogate (not
encodable as UTF-8, so neither the database driver nor the log could write it) in a JSON body
or a query string, and JSON nested deeply enough to exhaust the parser's recursion. Each is
now a 422 naming where it was: ``errors.json.<path>``, ``errors.query.<name>``, or
``errors.parameters.<key>`` for the values of a script generation (the engine's own key).

Pure functions over decoded values; `shared.web` wires :func:`check_request` into every app.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

# The largest `offset` a list accepts: far past any table, well inside PostgreSQL's bigint.
MAX_OFFSET = 2**31 - 1
# Deeper than any body the API accepts (a parameters schema nests about five levels).
MAX_JSON_DEPTH = 32
MAX_PROBLEMS = 20

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
MESSAGE = "must not contain NUL characters or unpaired surrogates (invalid Unicode text)"


def unstorable(text: str) -> bool:
    return _UNSTORABLE.search(text) is not None


def _name(key: object) -> str:
    """A field name safe to put in the error body (the key itself may be the problem)."""
    text = str(key)
    return text if not unstorable(text) else text.encode("unicode_escape").decode("ascii")


def json_problems(payload: Any) -> tuple[dict[str, list[str]], bool]:
    """Problems by dotted path in a decoded JSON document, and whether it nests too deeply.
    Iterative, so depth costs no recursion."""
    problems: dict[str, list[str]] = {}
    stack: list[tuple[Any, str, int]] = [(payload, "", 0)]
    while stack and len(problems) < MAX_PROBLEMS:
        value, path, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return problems, True
        if isinstance(value, str):
            if unstorable(value):
                problems[path or "_schema"] = [MESSAGE]
        elif isinstance(value, Mapping):
            for key, item in value.items():
                child = f"{path}.{_name(key)}" if path else _name(key)
                if unstorable(str(key)):
                    problems[child] = ["the field name " + MESSAGE.removeprefix("must ")]
                stack.append((item, child, depth + 1))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                stack.append((item, f"{path}.{index}" if path else str(index), depth + 1))
    return problems, False


def query_may_be_unstorable(raw_query: str) -> bool:
    """False when the raw query string (WSGI's QUERY_STRING) cannot decode to an unstorable
    value: ASCII with no NUL and no percent-escape decodes to the same ASCII characters. The
    console's polls are such queries, and the hook then need not parse them."""
    return not raw_query.isascii() or "%" in raw_query or "\x00" in raw_query


def query_problems(args: Iterable[tuple[str, list[str]]]) -> dict[str, list[str]]:
    problems: dict[str, list[str]] = {}
    for key, values in args:
        if unstorable(key) or any(unstorable(value) for value in values):
            problems[_name(key)] = [MESSAGE]
    return problems


def decode_json(body: bytes) -> tuple[Any, str | None]:
    """(document, None), or (None, why) when it nests too deeply to parse; (None, None) when it
    is not JSON at all (the route's own parser answers that)."""
    try:
        return json.loads(body), None
    except RecursionError:
        return None, f"is nested more than {MAX_JSON_DEPTH} levels deep"
    except (ValueError, UnicodeDecodeError):
        return None, None


def body_errors(body: bytes, *, parameters_key: bool) -> dict[str, Any]:
    """The 422 `errors` for a JSON body, or {} when it is fine. With `parameters_key`, problems
    under the top-level `parameters` object are reported as `errors.parameters.<key>`."""
    document, why = decode_json(body)
    if why is not None:
        return {"json": {"_schema": [why]}}
    if document is None:
        return {}
    problems, too_deep = json_problems(document)
    errors: dict[str, Any] = {}
    if too_deep:
        errors["json"] = {"_schema": [f"is nested more than {MAX_JSON_DEPTH} levels deep"]}
    for path, messages in problems.items():
        head, _, rest = path.partition(".")
        if parameters_key and head == "parameters" and rest:
            errors.setdefault("parameters", {})[rest.split(".", 1)[0]] = messages
        else:
            errors.setdefault("json", {})[path] = messages
    return errors
