"""The script library (`/#/library`): categories, search, tag filters, template cards."""

from __future__ import annotations

from dataclasses import dataclass

from playwright.sync_api import Locator, Page


@dataclass
class LibraryPage:
    page: Page

    def open(self) -> LibraryPage:
        self.page.goto("/#/library")
        return self

    @property
    def heading(self) -> Locator:
        return self.page.get_by_role("heading", name="Script library", level=1)

    @property
    def categories(self) -> Locator:
        return self.page.locator("#category-list .category-button")

    def category_counts(self) -> list[int]:
        return [int(c) for c in self.page.locator("#category-list .count-badge").all_inner_texts()]

    @property
    def results(self) -> Locator:
        return self.page.locator("#template-results")

    @property
    def cards(self) -> Locator:
        return self.page.locator("#template-results .template-card")

    @property
    def runtime_pills(self) -> Locator:
        return self.page.locator(".template-card .pill")

    @property
    def tag_options(self) -> Locator:
        return self.page.locator("#library-tag-options option")

    def search(self, text: str) -> None:
        self.page.get_by_label("Search").fill(text)

    def show_only_tag(self, tag: str) -> None:
        self.page.get_by_role("button", name=f"Show only tag {tag}").click()

    def tag_filter(self, tag: str) -> Locator:
        return self.page.get_by_role("button", name=f"Remove tag filter {tag}")

    def remove_tag_filter(self, tag: str) -> None:
        self.tag_filter(tag).click()

    def add_tag_filter(self, tag: str) -> None:
        self.page.get_by_label("Add a tag filter").fill(tag)
        self.page.get_by_label("Add a tag filter").press("Enter")

    def open_template(self, name: str) -> None:
        self.page.get_by_role("link", name=name).click()
