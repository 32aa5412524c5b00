"""Domain errors: raised by plain modules, turned into JSON HTTP errors by shared.web."""

from __future__ import annotations

from typing import Any


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
