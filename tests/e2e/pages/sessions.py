"""The session list (`/#/sessions`): a new session, search, the list."""

from __future__ import annotations

from dataclasses import dataclass

from playwright.sync_api import Locator, Page


@dataclass
class SessionsPage:
    page: Page

    def open(self, status: str | None = None) -> SessionsPage:
        self.page.goto(f"/#/sessions?status={status}" if status else "/#/sessions")
        return self

    def open_from_nav(self) -> SessionsPage:
        self.page.get_by_role("link", name="Sessions").click()
        return self

    def open_new(self, title: str, ticket_ref: str | None = None) -> None:
        self.page.get_by_label("Title").fill(title)
        if ticket_ref is not None:
            self.page.get_by_label("Ticket reference").fill(ticket_ref)
        self.page.get_by_role("button", name="Open session").click()

    def search(self, text: str) -> None:
        self.page.get_by_label("Search sessions").fill(text)

    @property
    def links(self) -> Locator:
        return self.page.locator("#session-list .session-link")
