"""The one interface every ticketing adapter implements: its fields, how it renders a note, how
it posts one, and how it finds one it posted before (by the note's marker).

Adapters are plain classes with no Flask and no database; every HTTP call goes through the
:class:`Transport` they are handed, so the SSRF guard, the deadline and the no-redirect rule
live in one place and the tests can point an adapter at a fake or a real system.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol
from urllib.parse import quote

from services.notes.adapters.render import Rendered, render
from services.notes.delivery import sanitise_excerpt

MAX_ANSWER_CHARS = 500
# Response headers that carry the target's own request id, in the order we prefer them.
REQUEST_ID_HEADERS = (
    "x-request-id",
    "x-zendesk-request-id",
    "x-arequestid",
    "x-amzn-requestid",
    "x-correlation-id",
    "request-id",
    "x-runtime",
)


# ── HTTP ─────────────────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]  # lower-cased names
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body.decode("utf-8") or "null")
        except (UnicodeDecodeError, ValueError):
            return None

    @property
    def request_id(self) -> str | None:
        for name in REQUEST_ID_HEADERS:
            if self.headers.get(name):
                return str(self.headers[name])[:200]
        return None


class TransportError(Exception):
    """The request did not get an HTTP answer: refused address, DNS, connect, timeout or a
    dropped connection. ``retryable`` is False only for a refusal that cannot change."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class Transport(Protocol):
    """One outbound HTTP request on a tenant's behalf (vetted address, no redirects, deadline)."""

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None = None,
        timeout_s: float,
    ) -> HttpResponse: ...


# ── configuration ────────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class Field:
    """One configuration field, as the console's form and the API validation see it."""

    name: str
    label: str
    type: str = "string"  # string | url | boolean | choice
    required: bool = True
    secret: bool = False
    help: str = ""
    choices: tuple[str, ...] = ()
    default: Any = None

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "label": self.label,
            "type": self.type,
            "required": self.required,
            "secret": self.secret,
            "help": self.help,
        }
        if self.choices:
            out["choices"] = list(self.choices)
        if self.default is not None:
            out["default"] = self.default
        return out


@dataclass(frozen=True)
class Target:
    """Where and as whom an adapter posts: the decrypted configuration of one account."""

    base_url: str
    credentials: Mapping[str, Any]
    options: Mapping[str, Any] = field(default_factory=dict)
    timeout_s: float = 15.0

    def url(self, path: str) -> str:
        return self.base_url.rstrip("/") + path

    def option(self, name: str, default: Any = None) -> Any:
        value = self.options.get(name)
        return default if value is None else value


# ── results ──────────────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class Posted:
    """A note that is on the ticket: ``external_id`` is the target's id of the note (or the
    ticket), ``link`` a URL a person can open, when the target gives one."""

    ticket: str
    external_id: str | None = None
    link: str | None = None
    request_id: str | None = None
    answer: str | None = None
    found: bool = False


ALREADY_POSTED = "already on the ticket"


def already_posted(
    ticket: str,
    external_id: str,
    *,
    link: str | None = None,
    response: HttpResponse | None = None,
) -> Posted:
    """What :meth:`Adapter.find` returns for a note it found on the ticket by its marker."""
    return Posted(
        ticket=ticket,
        external_id=external_id,
        link=link,
        request_id=response.request_id if response is not None else None,
        answer=ALREADY_POSTED,
        found=True,
    )


class TargetError(Exception):
    """The target refused or failed the call. ``status`` is its HTTP status (None: no answer)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: str | None = None,
        request_id: str | None = None,
        retryable: bool | None = None,
        disable: bool = False,
        detail: str | None = None,
    ) -> None:
        super().__init__(message[:MAX_ANSWER_CHARS])
        self.disable = disable
        # A bounded, sanitised excerpt of the target's answer (owners see it); the message is
        # always our own words.
        self.detail = detail
        self.status = status
        self.retry_after = retry_after
        self.request_id = request_id
        self._retryable = retryable

    @property
    def retryable(self) -> bool:
        if self._retryable is not None:
            return self._retryable
        status = self.status
        return status is None or status in (408, 409, 425, 429) or status >= 500


# ── the adapter ──────────────────────────────────────────────────────────────────────────────


class Adapter:
    """Subclasses set the class attributes and implement :meth:`post`, :meth:`find` and
    :meth:`check`; :meth:`call` does the HTTP and turns every non-2xx into a TargetError."""

    kind: ClassVar[str]
    label: ClassVar[str]
    dialect: ClassVar[str]
    fields: ClassVar[tuple[Field, ...]]
    options: ClassVar[tuple[Field, ...]] = ()
    needs_base_url: ClassVar[bool] = True
    base_url_help: ClassVar[str] = ""
    # False only for the webhook, whose receivers deduplicate on the webhook-id instead.
    can_find: ClassVar[bool] = True

    def __init__(self, http: Transport) -> None:
        self.http = http

    # -- the interface ------------------------------------------------------------------------

    def render(self, markdown: str, note_id: str) -> Rendered:
        return render(markdown, self.dialect, note_id)

    def post(self, target: Target, ticket_ref: str, rendered: Rendered) -> Posted:
        raise NotImplementedError

    def find(self, target: Target, ticket_ref: str, note_id: str) -> Posted | None:
        """The note bearing ``note_id``'s marker on the ticket, or None."""
        raise NotImplementedError

    def check(self, target: Target, ticket_ref: str | None) -> str:
        """One harmless authenticated call; returns what it saw, raises TargetError."""
        raise NotImplementedError

    def extra_urls(self, target: Target) -> Sequence[str]:
        """Other URLs the adapter calls (token, zone lookup), vetted at save like base_url."""
        return ()

    # -- helpers ------------------------------------------------------------------------------

    def not_found(self, ticket_ref: str) -> TargetError:
        return TargetError(
            f"ticket {ticket_ref} not found in {self.label}", status=404, retryable=False
        )

    def describe_ticket(
        self,
        target: Target,
        ticket_ref: str,
        url: Callable[[str], str],
        *,
        headers: Mapping[str, str],
        title: Callable[[Any], object],
    ) -> str:
        """:meth:`check`'s answer for a numbered ticket: GET ``url(number)`` and name the
        ticket by ``title(answer)``."""
        ticket = numeric_ref(ticket_ref, self.label)
        response = self.call(
            target, "GET", url(ticket), headers=headers, ticket_ref=ticket_ref, ok=(200,)
        )
        return f"ticket {ticket} found: {title(response.json() or {})}"[:300]

    def call(
        self,
        target: Target,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        json_body: Any = None,
        form: bytes | None = None,
        ticket_ref: str | None = None,
        ok: tuple[int, ...] = (200, 201, 204),
    ) -> HttpResponse:
        sent = {"accept": "application/json", "user-agent": "ResolutionFlow/1", **headers}
        body = form
        if json_body is not None:
            body = json.dumps(json_body, ensure_ascii=False).encode("utf-8")
            sent.setdefault("content-type", "application/json")
        try:
            response = self.http.request(
                method, url, headers=sent, body=body, timeout_s=target.timeout_s
            )
        except TransportError as exc:
            raise TargetError(
                f"{self.label} could not be reached: {exc}", retryable=exc.retryable
            ) from exc
        if response.status in ok:
            return response
        raise self.error_for(response, ticket_ref)

    def error_for(self, response: HttpResponse, ticket_ref: str | None) -> TargetError:
        status = response.status
        detail = None if 300 <= status < 400 else self.error_detail(response)
        request_id = response.request_id
        if status == 404 and ticket_ref is not None:
            return TargetError(
                f"ticket {ticket_ref} not found in {self.label}",
                status=404,
                request_id=request_id,
                retryable=False,
                detail=detail,
            )
        if status in (401, 403):
            return TargetError(
                f"{self.label} refused the credentials (HTTP {status})",
                status=status,
                request_id=request_id,
                retryable=False,
                detail=detail,
            )
        if 300 <= status < 400:
            return TargetError(
                f"{self.label} answered HTTP {status}, a redirect (not followed): check the "
                "base URL",
                status=status,
                request_id=request_id,
                retryable=False,
            )
        if status == 429:
            message = f"{self.label} asked to slow down (HTTP 429)"
        elif status >= 500:
            message = f"{self.label} failed (HTTP {status})"
        else:
            message = f"{self.label} refused the note (HTTP {status})"
        return TargetError(
            message,
            status=status,
            retry_after=response.headers.get("retry-after"),
            request_id=request_id,
            detail=detail,
        )

    def error_detail(self, response: HttpResponse) -> str | None:
        """The target's own error text, sanitised and bounded."""
        data = response.json()
        if isinstance(data, dict):
            for key in ("error", "errors", "message", "description", "details", "errorMessages"):
                if data.get(key):
                    value = data[key]
                    text = value if isinstance(value, str) else json.dumps(value)
                    return sanitise_excerpt(text.encode("utf-8"))
        return sanitise_excerpt(response.body)


def basic_auth(user: str, password: str) -> str:
    raw = f"{user}:{password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def path_part(value: str) -> str:
    """A ticket reference as one URL path segment (a ref cannot reach another path)."""
    return quote(value.strip(), safe="")


def numeric_ref(ticket_ref: str, label: str) -> str:
    """The ticket number in refs like ``4711``, ``#4711`` or ``RT-4711``."""
    stripped = ticket_ref.strip().lstrip("#")
    candidate = stripped.rsplit("-", 1)[-1]
    if not candidate.isascii() or not candidate.isdigit() or len(candidate) > 18:
        raise TargetError(
            f"ticket ref {ticket_ref!r} is not a {label} ticket number", retryable=False
        )
    return str(int(candidate))
