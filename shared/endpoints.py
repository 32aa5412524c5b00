"""How every service declares its API endpoints: one blueprint class and one view base.

Every route of every service is a `MethodView` whose methods need a bearer token, take an
optional request schema, answer with one response schema and are documented with the bearer
security requirement. `ApiBlueprint.endpoint()` applies flask-smorest's `arguments`,
`response` and `doc(security=...)` together, in that order, so the OpenAPI document and the
validation are what the three separate decorators gave; `BearerView` runs `auth_required`
before every method. A public route (the token endpoint) uses `endpoint(..., public=True)` on a
plain `MethodView`. A list answers through `read_page` / `with_total` (the page and its
`X-Total-Count`).

The view owns the transaction (README, "Who owns a transaction"); a view whose whole work is
one domain call acting as the caller says so with `read_as_caller` (a read session) or
`write_as_caller` (`shared.events.write_transaction`: committed, then its outbox published).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Concatenate, ParamSpec, TypedDict, TypeVar

from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy.orm import Session

from shared.auth import auth_required, current_principal
from shared.db import db
from shared.events import write_transaction
from shared.principal import Principal
from shared.web import BEARER_SECURITY

F = TypeVar("F", bound=Callable[..., Any])
P = ParamSpec("P")
R = TypeVar("R")


class BearerView(MethodView):
    """A view every method of which needs a bearer token (`shared.auth.auth_required`)."""

    decorators = [auth_required]


class ApiBlueprint(Blueprint):  # type: ignore[misc]
    def endpoint(
        self,
        status: int,
        schema: Any = None,
        *,
        args: Any = None,
        location: str | None = None,
        unknown: str | None = None,
        public: bool = False,
        **response: Any,
    ) -> Callable[[F], F]:
        """`arguments(args, location=..., unknown=...)` when `args` is given, then
        `response(status, schema, **response)`, then `doc(security=BEARER_SECURITY)` unless
        `public`."""
        options: dict[str, Any] = {}
        if location is not None:
            options["location"] = location
        if unknown is not None:
            options["unknown"] = unknown

        def decorate(view: F) -> F:
            if not public:
                view = self.doc(security=BEARER_SECURITY)(view)
            view = self.response(status, schema, **response)(view)
            if args is not None:
                view = self.arguments(args, **options)(view)
            return view

        return decorate

    def list_endpoint(
        self, item_schema: type[Any], *, args: Any, unknown: str | None = None
    ) -> Callable[[F], F]:
        """A list: query arguments `args`, answered 200 with an array of `item_schema` (a paged
        list also sends `X-Total-Count`: `read_page`, `with_total`)."""
        return self.endpoint(
            200, item_schema(many=True), args=args, location="query", unknown=unknown
        )


# ── One domain call as the caller ────────────────────────────────────────────────────────────


def read_as_caller(
    read: Callable[Concatenate[Session, Principal, P], R], /, *args: P.args, **kwargs: P.kwargs
) -> R:
    """`read(session, caller, *args, **kwargs)` in a read session, the caller being the
    request's authenticated principal."""
    with db.session() as session:
        return read(session, current_principal(), *args, **kwargs)


def write_as_caller(
    write: Callable[Concatenate[Session, Principal, P], R], /, *args: P.args, **kwargs: P.kwargs
) -> R:
    """`write(session, caller, *args, **kwargs)` in one write transaction, committed (and its
    outbox events published) when it returns; rolled back if it raises."""
    with write_transaction() as session:
        return write(session, current_principal(), *args, **kwargs)


# ── Lists ────────────────────────────────────────────────────────────────────────────────────
# A list answers one page (`limit` / `offset`, `shared.api_schemas.page_fields`) and carries the
# unpaged total in a header, so the body stays the plain array the schema documents.

TOTAL_COUNT_HEADER = "X-Total-Count"


class Paging(TypedDict):
    limit: int
    offset: int


def paging(args: Mapping[str, Any]) -> Paging:
    """The `limit` and `offset` of validated query arguments, as a domain list function's
    keyword arguments."""
    return {"limit": args["limit"], "offset": args["offset"]}


def with_total(rows: Any, total: int) -> tuple[Any, dict[str, str]]:
    """A page of a list as a view's answer: the rows, and the unpaged total in its header."""
    return rows, {TOTAL_COUNT_HEADER: str(total)}


def read_page(
    list_rows: Callable[..., tuple[Any, int]], *args: Any, **kwargs: Any
) -> tuple[Any, dict[str, str]]:
    """`list_rows(session, *args, **kwargs)`, a domain function answering `(rows, total)`, run
    in a read session; answered with `with_total`."""
    with db.session() as session:
        rows, total = list_rows(session, *args, **kwargs)
    return with_total(rows, total)
