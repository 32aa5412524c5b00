"""The notes service's vocabulary: note kinds, the four sections, fact kinds, generator names
and the fixed sentences a note uses when a section has nothing to say. Read by the bundle,
the generator and the API alike, so it depends on nothing."""

from __future__ import annotations

from shared.vocabulary import REDACTION_MARKER

REDACTED = REDACTION_MARKER

NOTE_KINDS = ("resolution_note",)
SECTIONS = ("Problem", "What we confirmed", "Root cause", "Resolution")
CONFIRMED_KINDS = ("confirmed", "ruled_out", "environment")
ITEM_FORMATS = ("sentence", "bullet", "step")
# Decisions on a suggested fix that mean it was not applied.
REJECTED_DECISIONS = frozenset({"dismissed"})
FIX_REF = "X1"

DEFAULT_MAX_CHARS = 8000

GENERATOR_ANTHROPIC = "anthropic"
GENERATOR_OFFLINE = "offline"
GENERATOR_OFFLINE_FALLBACK = "offline-fallback"

NO_CONFIRMED_FACTS = "No facts were confirmed during this session."
NO_ROOT_CAUSE = "No root cause was confirmed during this session."
NO_RESOLUTION = "No resolution was recorded for this session."
NO_PROBLEM = "No problem description was recorded."
