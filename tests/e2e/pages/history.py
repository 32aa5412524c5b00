"""Generation history (`/#/history`)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from playwright.sync_api import Locator, Page


@dataclass
class HistoryPage:
    page: Page

    def open(self) -> HistoryPage:
        self.page.goto("/#/history")
        return self

    def open_from_nav(self) -> HistoryPage:
        self.page.get_by_role("link", name="History").click()
        return self

    @property
    def heading(self) -> Locator:
        return self.page.get_by_role("heading", name="Generation history")

    @property
    def rows(self) -> Locator:
        return self.page.locator("#history-table tbody tr")

    def generate_again(self) -> None:
        self.page.get_by_role(
            "link", name=re.compile("^Generate .* again with these values")
        ).click()
