"""The sign-in page (`/`)."""

from __future__ import annotations

from dataclasses import dataclass

from playwright.sync_api import Locator, Page, expect

DEMO_PASSWORD = "demo-password"


@dataclass
class LoginPage:
    page: Page

    @property
    def heading(self) -> Locator:
        return self.page.get_by_role("heading", name="Sign in to ResolutionFlow")

    @property
    def email(self) -> Locator:
        return self.page.get_by_label("Email")

    @property
    def password(self) -> Locator:
        return self.page.get_by_label("Password")

    @property
    def alert(self) -> Locator:
        return self.page.get_by_role("alert")

    @property
    def signed_in_as(self) -> Locator:
        return self.page.locator("#user-email")

    def open(self) -> LoginPage:
        self.page.goto("/")
        return self

    def submit_with_enter(self, email: str | None, password: str) -> None:
        """Keyboard only: type, then Enter."""
        if email is not None:
            self.email.fill(email)
        self.password.fill(password)
        self.page.keyboard.press("Enter")

    def sign_in(self, email: str, password: str = DEMO_PASSWORD) -> None:
        self.open()
        self.email.fill(email)
        self.password.fill(password)
        self.page.get_by_role("button", name="Sign in").click()
        expect(self.signed_in_as).to_have_text(email)

    def use_token(self, token: str) -> None:
        """Signed in as the token's user without the form (as a reload after sign-in is)."""
        self.open()
        self.page.evaluate("([t]) => sessionStorage.setItem('rf.console.token', t)", [token])

    def stored_token(self) -> str | None:
        token: str | None = self.page.evaluate("sessionStorage.getItem('rf.console.token')")
        return token
