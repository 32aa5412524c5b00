"""The account's settings (`/#/settings`): the ticketing integration."""

from __future__ import annotations

from dataclasses import dataclass

from playwright.sync_api import Locator, Page


@dataclass
class SettingsPage:
    page: Page

    def open_from_nav(self) -> SettingsPage:
        self.page.get_by_role("link", name="Settings").click()
        return self

    @property
    def current(self) -> Locator:
        return self.page.locator("#ticketing-current")

    def save_webhook(self, url: str) -> str:
        """Point the account's notes at a webhook; the signing secret shown once."""
        self.page.get_by_label("Endpoint URL").fill(url)
        self.page.get_by_role("button", name="Save webhook").click()
        return self.page.locator("#ticketing-secret-value").inner_text()
