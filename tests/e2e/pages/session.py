"""A session's page (`/#/sessions/<id>`): facts, the note preview, chat, the suggested fix,
Resolve and the final note."""

from __future__ import annotations

import re
from dataclasses import dataclass

from playwright.sync_api import Locator, Page, expect

# A preview waits for a generation on a busy machine.
PREVIEW_TIMEOUT_MS = 45_000


@dataclass
class SessionPage:
    page: Page

    def open(self, session_id: str) -> SessionPage:
        self.page.goto(f"/#/sessions/{session_id}")
        return self

    @property
    def session_id(self) -> str:
        return self.page.url.rsplit("/", 1)[-1]

    @property
    def title(self) -> Locator:
        return self.page.locator("#session-title-heading")

    @property
    def status(self) -> Locator:
        return self.page.locator("#session-status")

    def state_version(self) -> int:
        return int(self.page.locator("#state-version").inner_text().removeprefix("state v"))

    # ── Facts ──

    @property
    def fact_field(self) -> Locator:
        return self.page.get_by_label("Fact", exact=True)

    def add_fact(self, kind: str, text: str) -> None:
        self.page.get_by_label("Kind", exact=True).select_option(kind)
        self.fact_field.fill(text)
        self.fact_field.press("Enter")
        expect(self.facts_of(kind)).to_contain_text(text)

    def facts_of(self, kind: str) -> Locator:
        return self.page.locator(f'.fact-group[data-kind="{kind}"]')

    def fact_items(self, kind: str) -> Locator:
        return self.page.locator(f".fact-group[data-kind='{kind}'] li")

    def edit_fact(self, fact: Locator) -> Locator:
        """Open a fact's editor; the editor's input."""
        fact.get_by_role("button", name=re.compile("^Edit fact")).click()
        return self.page.locator(".fact-edit-input")

    # ── Preview ──

    @property
    def preview_panel(self) -> Locator:
        return self.page.locator("#preview-panel")

    @property
    def preview_body(self) -> Locator:
        return self.page.locator("#preview-body")

    @property
    def preview_cache(self) -> Locator:
        return self.page.locator("#preview-cache")

    def expect_preview(self, version: int, cache: str | None = None) -> None:
        """The preview shows the note of `version` (and says it came `cache`: fresh, cached)."""
        expect(self.page.locator("#preview-version")).to_have_attribute(
            "data-version", str(version), timeout=PREVIEW_TIMEOUT_MS
        )
        if cache:
            expect(self.preview_cache).to_have_attribute("data-cache", cache)
        expect(self.page.locator("#preview-body h3").first).to_have_text("Problem")

    def refresh_preview(self) -> None:
        self.page.get_by_role("button", name="Refresh").click()

    # ── Chat and the suggested fix ──

    def send_message_button(self) -> Locator:
        return self.page.get_by_role("button", name="Send")

    def type_message(self, text: str) -> None:
        self.page.get_by_label("Message", exact=True).fill(text)

    @property
    def chat_log(self) -> Locator:
        return self.page.locator("#chat-log")

    @property
    def fix_card(self) -> Locator:
        return self.page.locator("#fix-card")

    # ── Resolve ──

    @property
    def ticket_reference(self) -> Locator:
        return self.page.get_by_label("Ticket reference")

    def resolve(self) -> None:
        self.page.get_by_role("button", name="Resolve session").click()
        expect(self.status).to_have_text("resolved")

    @property
    def final_note(self) -> Locator:
        return self.page.locator(".final-note")

    # ── Escalation handoff and KB article ──

    @property
    def handoff_panel(self) -> Locator:
        return self.page.locator("#handoff-panel")

    @property
    def escalation_body(self) -> Locator:
        return self.page.locator("#escalation-body")

    def preview_escalation(self) -> None:
        self.page.get_by_role("button", name="Preview escalation").click()

    @property
    def kb_article_body(self) -> Locator:
        return self.page.locator("#kb_article-body")

    def keep_as_kb_article(self) -> None:
        self.page.get_by_role("button", name="Keep as KB article").click()

    @property
    def kept_link(self) -> Locator:
        return self.page.locator("#kb-kept-link")
