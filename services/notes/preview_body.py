"""The ready preview's JSON body, pre-rendered: the cache renders the note's own fields once,
when the note is stored, and a cache hit joins them with the request's fields as bytes.

A ready preview's body is PreviewResponseSchema's dump of (kind, session_id, state_version,
markdown, citations, from_cache, generator, model, generated_at, ticket_ref, fallback_reason).
Six of them come from the note itself and never change for a stored version; the other five
come from the request (the session's state read with the principal, and whether this request
started a generation). :func:`rendered_parts` renders the note's six once, as three JSON
fragments; :func:`hit_body` puts the request's five around them. The result is byte for byte
what `jsonify(preview_response_body(...))` sends (a test holds that), without parsing the
stored note or building any dict.

No Flask, no marshmallow: the cache (`services.notes.cache`) imports it.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

# Between the fragments of a stored entry. JSON text never holds a raw NUL (a string escapes
# it as \\u0000), nor does a hex entity tag.
PART_SEPARATOR = "\x00"


def citation_body(item: dict[str, Any]) -> dict[str, Any]:
    """One citation as CitationSchema dumps it: its fields only, ids as strings."""
    entry: dict[str, Any] = {}
    for name in ("section", "text"):
        if name in item:
            entry[name] = None if item[name] is None else str(item[name])
    if "cites" in item:
        cites = item["cites"]
        entry["cites"] = None if cites is None else [str(c) for c in cites]
    if "fact_ids" in item:
        ids = item["fact_ids"]
        entry["fact_ids"] = None if ids is None else [str(uuid.UUID(str(i))) for i in ids]
    return entry


# As Flask's jsonify renders outside debug: compact, keys sorted, ASCII only. One encoder, not
# one per json.dumps call with these options.
_json = json.JSONEncoder(separators=(",", ":"), sort_keys=True, ensure_ascii=True).encode


def rendered_parts(payload: dict[str, Any]) -> tuple[str, str, str]:
    """The note's own fields of the preview body, rendered as `"name":value` pairs in the
    order jsonify writes the body (keys sorted): (citations, fallback_reason; generated_at,
    generator; markdown, model)."""
    citations = [citation_body(item) for item in payload.get("citations") or []]
    return (
        f'"citations":{_json(citations)},"fallback_reason":{_json(payload.get("fallback_reason"))}',
        f'"generated_at":{_json(payload.get("generated_at"))},'
        f'"generator":{_json(payload.get("generator"))}',
        f'"markdown":{_json(payload.get("markdown"))},"model":{_json(payload.get("model"))}',
    )


def hit_body(
    parts: tuple[bytes, bytes, bytes],
    *,
    kind: str,
    session_id: str,
    state_version: int,
    ticket_ref: str | None,
    from_cache: bool = True,
) -> bytes:
    """The whole body of a ready preview from the stored `parts` and the request's fields:
    byte for byte what jsonify(preview_response_body(...)) sends (keys sorted, compact, one
    newline at the end)."""
    cited, generated, written = parts
    return b"".join(
        (
            b"{",
            cited,
            b',"from_cache":true,' if from_cache else b',"from_cache":false,',
            generated,
            f',"kind":{_json(kind)},'.encode(),
            written,
            f',"session_id":{_json(str(session_id))},"state_version":{int(state_version)},'
            f'"ticket_ref":{_json(ticket_ref)}}}\n'.encode(),
        )
    )


def pack_entry(tag: str, parts: tuple[str, str, str]) -> str:
    """The stored form of a version's ready body: its entity tag, then the three parts."""
    return PART_SEPARATOR.join((tag, *parts))


def unpack_entry(raw: bytes | str) -> tuple[str, tuple[bytes, bytes, bytes]] | None:
    """(tag, parts) of a stored entry; None for anything else (an entry of another layout)."""
    if isinstance(raw, str):
        raw = raw.encode()
    fields = raw.split(PART_SEPARATOR.encode())
    if len(fields) != 4:
        return None
    return fields[0].decode("ascii", "replace"), (fields[1], fields[2], fields[3])
