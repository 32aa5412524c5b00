"""A template's page (`/#/templates/<id>`): the form built from its parameters, the rendered
script and what can be done with it."""

from __future__ import annotations

from dataclasses import dataclass

from playwright.sync_api import Download, Locator, Page, Response


@dataclass
class TemplatePage:
    page: Page

    def open(self, template_id: str, *, session_id: str | None = None) -> TemplatePage:
        linked = f"?session={session_id}" if session_id else ""
        self.page.goto(f"/#/templates/{template_id}{linked}")
        return self

    def heading(self, name: str) -> Locator:
        return self.page.get_by_role("heading", name=name, level=1)

    @property
    def form(self) -> Locator:
        return self.page.locator("#generate-form")

    def field(self, label: str) -> Locator:
        return self.form.get_by_label(label)

    def field_error(self, key: str) -> Locator:
        return self.page.locator(f"#param-{key}-error")

    @property
    def errors(self) -> Locator:
        return self.page.locator("#generate-errors")

    def fill(self, **values: str) -> None:
        """Fill fields by label: `fill(**{"Account name": "kiosk01"})`."""
        for label, value in values.items():
            self.field(label).fill(value)

    def generate(self) -> Response:
        """Press Generate script; the API's answer."""
        with self.page.expect_response("**/api/v1/scripts/generate") as generated:
            self.form.get_by_role("button", name="Generate script").click()
        return generated.value

    def press_generate(self) -> None:
        self.form.get_by_role("button", name="Generate script").click()

    @property
    def output(self) -> Locator:
        return self.page.locator("#script-output")

    @property
    def script(self) -> Locator:
        return self.page.locator("#rendered-script")

    @property
    def warnings(self) -> Locator:
        return self.page.locator("#script-output .warnings")

    def copy(self) -> Locator:
        """Press Copy; the status line it updates."""
        self.page.get_by_role("button", name="Copy").click()
        return self.page.locator("#script-output .copy-status")

    def download(self) -> Download:
        with self.page.expect_download() as download_info:
            self.page.get_by_role("button", name="Download .ps1").click()
        return download_info.value

    def go_to_linked_session(self) -> None:
        self.output.get_by_role("link", name="the session").click()
