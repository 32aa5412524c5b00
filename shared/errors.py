"""Domain errors: raised by plain modules, turned into JSON HTTP errors by shared.web."""

from __future__ import annotations

from typing import Any

# One wording per kind of object for its 404, whichever service answers it.
AI_SESSION_NOT_FOUND = "AI session not found"
TEMPLATE_NOT_FOUND = "Template not found"
CATEGORY_NOT_FOUND = "Category not found"
FACT_NOT_FOUND = "Fact not found"
SUGGESTED_FIX_NOT_FOUND = "Suggested fix not found"


class DomainError(Exception):
    status_code = 400

    def __init__(self, message: str, errors: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors


class Unauthenticated(DomainError):
    status_code = 401


class NotFound(DomainError):
    status_code = 404


class PermissionDenied(DomainError):
    status_code = 403


class Conflict(DomainError):
    status_code = 409


class InvalidInput(DomainError):
    """422 with `errors` naming each offending field."""

    status_code = 422


class Unavailable(DomainError):
    status_code = 503
