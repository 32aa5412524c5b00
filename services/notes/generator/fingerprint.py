"""The note fingerprint: what a note is made from, the prompt version and the model, hashed, so a
note is reused across versions whose inputs did not change."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from services.notes.bundle import NoteBundle
from services.notes.generator.prompt import prompt_version
from services.notes.generator.sources import source_document


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


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
        "prompt_version": prompt_version(bundle.kind),
        "model": model,
        "sources": source_document(bundle),
    }
    return hashlib.sha256(_canonical(document).encode("utf-8")).hexdigest()
