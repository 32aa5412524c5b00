"""The generator that ties the pieces together: Claude with one corrective retry, the offline
note as its fallback, usage summed over the calls."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from services.notes.bundle import NoteBundle
from services.notes.generator.draft import (
    NoteDraft,
    citations,
    render_markdown,
)
from services.notes.generator.fingerprint import bundle_fingerprint
from services.notes.generator.kind_sources import answer_schema
from services.notes.generator.offline import offline_draft
from services.notes.generator.prompt import (
    _correction_message,
    build_prompt,
)
from services.notes.generator.scrub import scrub_text
from services.notes.generator.validation import (
    NoteValidationError,
    validate_note,
)
from services.notes.kinds import preview_kinds, section_titles
from services.notes.vocabulary import (
    DEFAULT_MAX_CHARS,
    GENERATOR_ANTHROPIC,
    GENERATOR_OFFLINE,
    GENERATOR_OFFLINE_FALLBACK,
    NOTE_KINDS,
)
from shared.llm import OFFLINE_MODEL, LLMClient, LLMResult, LLMUsage

MAX_TOKENS = 2000


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
        if bundle.kind not in preview_kinds():
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
            result: LLMResult = self._call(system, messages, offline_json, bundle.kind)
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
                        "content": _correction_message(
                            exc.problems, result.stop_reason, section_titles(bundle.kind)
                        ),
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
        self,
        system: str,
        messages: list[dict[str, Any]],
        offline: Callable[[], str],
        kind: str = NOTE_KINDS[0],
    ) -> LLMResult:
        return self.llm.complete_json(
            system=system,
            messages=messages,
            max_tokens=MAX_TOKENS,
            schema=answer_schema(kind),
            offline=offline,
            cache_system=True,
        )
