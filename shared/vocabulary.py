"""Words more than one service uses, defined once: what a fact can be, and what stands where a
sensitive value was removed (scripts' stored renders, logs, prompts, notes)."""

from __future__ import annotations

# What an engineer records about a session; the notes' sections are built from these kinds.
FACT_KINDS = (
    "symptom",
    "observation",
    "confirmed",
    "ruled_out",
    "environment",
    "root_cause",
    "resolution",
)

# The one marker every redaction writes, so a reader (or a test) can tell a removed value.
REDACTION_MARKER = "[REDACTED]"
