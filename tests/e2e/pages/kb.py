"""The knowledge base (`/#/kb`): the account's kept KB articles, search, one article."""

from __future__ import annotations

from dataclasses import dataclass

from playwright.sync_api import Locator, Page


@dataclass
class KnowledgeBasePage:
    page: Page

    def open(self) -> KnowledgeBasePage:
        self.page.goto("/#/kb")
        return self

    def open_from_nav(self) -> KnowledgeBasePage:
        self.page.get_by_role("link", name="Knowledge base").click()
        return self

    def search(self, text: str) -> None:
        self.page.get_by_label("Search the knowledge base").fill(text)

    @property
    def status(self) -> Locator:
        return self.page.locator("#kb-status")

    @property
    def links(self) -> Locator:
        return self.page.locator("#kb-list .kb-link")

    def open_article(self, title: str) -> None:
        self.links.filter(has_text=title).first.click()

    @property
    def article_title(self) -> Locator:
        return self.page.locator("#kb-article-title")

    @property
    def article_body(self) -> Locator:
        return self.page.locator("#kb-article-body")
