"""Strict fakes of the SaaS ticketing APIs, written from each vendor's public API reference:
the paths, auth headers, payload fields, visibility defaults and error bodies the adapters
rely on. Each refuses what the real service refuses (bad credentials, unknown tickets, bodies
that are not what the endpoint takes) and stores the notes it accepted, so a test reads back
what a person would see.

Faults are programmed per fake for the next note-creating requests:

    fake.program(["drop_after_commit"])   # store the note, then cut the connection
    fake.program(["500_after_commit"])    # store the note, then answer 500
    fake.program(["429"])                 # refuse with 429 and Retry-After: 7
    fake.program(["401"])                 # refuse the credentials

    with ZendeskFake() as fake: fake.base_url, fake.credentials, fake.notes(ticket)
"""

from __future__ import annotations

import base64
import itertools
import json
import socket
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs

import jsonschema
from flask import Flask, Response, abort, jsonify, request
from werkzeug.serving import BaseWSGIServer, make_server

RETRY_AFTER_S = 7
_ADF = jsonschema.Draft4Validator(
    json.loads((Path(__file__).parent / "data" / "adf-full-schema.json").read_text())
)


class _Drop(Exception):
    pass


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class Fake:
    """A vendor's API on a loopback port (werkzeug, threaded), with notes per ticket.

    One guard runs before every route: a request without the vendor's credentials gets the
    vendor's own refusal (`unauthorised`), and a route whose URL names a ticket
    (`ticket_arg`) answers the vendor's not-found (`missing`) for a ticket it does not hold.
    A vendor's fake defines those three and lists the endpoints its API serves without
    credentials (`public_endpoints`: a token or zone lookup)."""

    label = ""
    ticket_arg = "ticket"
    public_endpoints: frozenset[str] = frozenset()
    tickets: Mapping[str, Any] = {}

    def __init__(self) -> None:
        self.app = Flask(type(self).__name__)
        self.lock = threading.Lock()
        self.faults: deque[str] = deque()
        self.notes_by_ticket: dict[str, list[dict[str, Any]]] = {}
        self.requests: list[tuple[str, str]] = []
        self.ids = itertools.count(1001)
        self.routes()
        self.app.before_request(self._guard)
        self._server: BaseWSGIServer = make_server("127.0.0.1", 0, self.app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Fake:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- programming and reading -------------------------------------------------------------

    def program(self, faults: Iterable[str]) -> None:
        with self.lock:
            self.faults = deque(faults)

    def notes(self, ticket: str) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.notes_by_ticket.get(str(ticket), []))

    def writes(self) -> int:
        """Requests that could have created a note (token requests are not)."""
        return sum(
            1
            for method, path in self.requests
            if method in ("POST", "PUT", "PATCH") and not path.startswith("/auth/")
        )

    # -- helpers for the vendor apps ----------------------------------------------------------

    def routes(self) -> None:
        raise NotImplementedError

    def authorised(self) -> bool:
        """The request carries the credentials the vendor's API reference asks for."""
        raise NotImplementedError

    def unauthorised(self) -> Response:
        """The vendor's answer to missing or wrong credentials."""
        raise NotImplementedError

    def missing(self, ticket: str) -> Response:
        """The vendor's answer for a ticket it does not hold."""
        raise NotImplementedError

    def known_tickets(self) -> Mapping[str, Any]:
        return self.tickets

    def _guard(self) -> Response | None:
        with self.lock:
            self.requests.append((request.method, request.full_path))
        # No route (404) or no such method (405): the server's own answer, as before routing.
        if request.endpoint is None or request.endpoint in self.public_endpoints:
            return None
        if not self.authorised():
            return self.unauthorised()
        ticket = (request.view_args or {}).get(self.ticket_arg)
        if ticket is not None and str(ticket) not in self.known_tickets():
            return self.missing(str(ticket))
        return None

    def next_fault(self) -> str | None:
        with self.lock:
            return self.faults.popleft() if self.faults else None

    def json_body(self, *, array: bool = False) -> Any:
        if request.mimetype != "application/json":
            abort(self.error(415, {"message": "Content-Type must be application/json"}))
        data = request.get_json(silent=True)
        if (
            data is None
            or (array and not isinstance(data, list))
            or (not array and not isinstance(data, dict))
        ):
            abort(self.error(400, {"message": "the body is not valid JSON of the right shape"}))
        return data

    @staticmethod
    def error(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
        response = jsonify(body)
        response.status_code = status
        response.headers["X-Request-Id"] = uuid.uuid4().hex
        for key, value in (headers or {}).items():
            response.headers[key] = value
        return response

    def ok(self, body: Any, status: int = 200) -> Response:
        response = jsonify(body)
        response.status_code = status
        response.headers["X-Request-Id"] = uuid.uuid4().hex
        return response

    def write(
        self,
        ticket: str,
        note: dict[str, Any],
        answer: Callable[[dict[str, Any]], Response],
    ) -> Response:
        """Apply the next fault around storing ``note`` on ``ticket``."""
        fault = self.next_fault()
        if fault == "429":
            return self.error(
                429, {"error": "TooManyRequests"}, {"Retry-After": str(RETRY_AFTER_S)}
            )
        if fault == "401":
            return self.unauthorised()
        note = {"id": next(self.ids), **note}
        with self.lock:
            self.notes_by_ticket.setdefault(str(ticket), []).append(note)
        if fault == "500_after_commit":
            return self.error(500, {"error": "InternalError"})
        if fault == "drop_after_commit":
            sock = request.environ.get("werkzeug.socket")
            if isinstance(sock, socket.socket):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            return Response(status=200)
        return answer(note)


# ── Zendesk ──────────────────────────────────────────────────────────────────────────────────


class ZendeskFake(Fake):
    """Zendesk Support API v2: token auth (``{email}/token:{token}``), comments public unless
    ``public: false``, ``PUT /api/v2/tickets/{id}.json`` answers the ticket and its audit."""

    label = "Zendesk"
    email = "agent@msp.example"
    token = "zd-token-123"
    tickets = {"4711": "Printer offline"}

    @property
    def credentials(self) -> dict[str, str]:
        return {"email": self.email, "api_token": self.token}

    def unauthorised(self) -> Response:
        return self.error(401, {"error": "Couldn't authenticate you"})

    def authorised(self) -> bool:
        return request.headers.get("Authorization") == _basic(f"{self.email}/token", self.token)

    def missing(self, ticket: str) -> Response:
        return self.error(404, {"error": "RecordNotFound", "description": "Not found"})

    def routes(self) -> None:
        app = self.app

        @app.put("/api/v2/tickets/<ticket>.json")
        def update(ticket: str) -> Response:
            data = self.json_body()
            comment = (data.get("ticket") or {}).get("comment")
            if not isinstance(comment, dict) or not (
                comment.get("body") or comment.get("html_body")
            ):
                return self.error(
                    422,
                    {
                        "error": "RecordInvalid",
                        "description": "Record validation errors",
                        "details": {"base": [{"description": "Comment: cannot be blank"}]},
                    },
                )
            public = comment.get("public", True)  # Zendesk's default
            if not isinstance(public, bool):
                return self.error(400, {"error": "InvalidValue", "description": "public"})
            note = {
                "html_body": comment.get("html_body"),
                "body": comment.get("body"),
                "public": public,
            }
            return self.write(
                ticket,
                note,
                lambda n: self.ok(
                    {
                        "ticket": {"id": int(ticket), "subject": self.tickets[ticket]},
                        "audit": {
                            "id": next(self.ids),
                            "events": [{"id": n["id"], "type": "Comment", **note}],
                        },
                    }
                ),
            )

        @app.get("/api/v2/tickets/<ticket>/comments.json")
        def comments(ticket: str) -> Response:
            return self.ok(
                {
                    "comments": self.notes(ticket),
                    "meta": {"has_more": False},
                    "links": {"next": None, "prev": None},
                }
            )

        @app.get("/api/v2/tickets/<ticket>.json")
        def show(ticket: str) -> Response:
            return self.ok({"ticket": {"id": int(ticket), "subject": self.tickets[ticket]}})

        @app.get("/api/v2/users/me.json")
        def me() -> Response:
            return self.ok({"user": {"id": 1, "email": self.email, "role": "agent"}})


# ── Freshservice ─────────────────────────────────────────────────────────────────────────────


class FreshserviceFake(Fake):
    """Freshservice API v2: Basic with the API key as the user; notes are private unless
    ``private: false``; unknown fields are refused (400 invalid_field)."""

    label = "Freshservice"
    api_key = "fs-key-abc"
    tickets = {"321": "VPN down"}

    @property
    def credentials(self) -> dict[str, str]:
        return {"api_key": self.api_key}

    def unauthorised(self) -> Response:
        return self.error(
            401,
            {
                "code": "invalid_credentials",
                "message": "You have to be logged in to perform this action.",
            },
        )

    def authorised(self) -> bool:
        return request.headers.get("Authorization") == _basic(self.api_key, "X")

    def missing(self, ticket: str) -> Response:
        return self.error(404, {"code": "access_denied", "message": "Record not found"})

    def routes(self) -> None:
        app = self.app

        @app.post("/api/v2/tickets/<ticket>/notes")
        def add_note(ticket: str) -> Response:
            data = self.json_body()
            allowed = {"body", "private", "incoming", "notify_emails", "user_id"}
            errors = [
                {
                    "field": k,
                    "message": "Unexpected/invalid field in request",
                    "code": "invalid_field",
                }
                for k in data
                if k not in allowed
            ]
            if not isinstance(data.get("body"), str) or not data["body"]:
                errors.append(
                    {
                        "field": "body",
                        "message": "It should be a/an String",
                        "code": "missing_field",
                    }
                )
            if "private" in data and not isinstance(data["private"], bool):
                errors.append(
                    {
                        "field": "private",
                        "message": "It should be a/an Boolean",
                        "code": "datatype_mismatch",
                    }
                )
            if errors:
                return self.error(400, {"description": "Validation failed", "errors": errors})
            note = {
                "body": data["body"],
                "private": data.get("private", True),
                "ticket_id": int(ticket),
            }
            return self.write(ticket, note, lambda n: self.ok({"conversation": n}, 201))

        @app.get("/api/v2/tickets/<ticket>/conversations")
        def conversations(ticket: str) -> Response:
            return self.ok({"conversations": self.notes(ticket), "meta": {"count": 0}})

        @app.get("/api/v2/tickets/<ticket>")
        def show(ticket: str) -> Response:
            return self.ok({"ticket": {"id": int(ticket), "subject": self.tickets[ticket]}})

        @app.get("/api/v2/agents/me")
        def me() -> Response:
            return self.ok({"agent": {"id": 7, "email": "agent@msp.example"}})


# ── Jira Service Management ─────────────────────────────────────────────────────────────────


class JiraFake(Fake):
    """Jira Cloud REST v3: e-mail + API token (Basic); comment bodies must be valid ADF; a
    comment is public to the customer unless the ``sd.public.comment`` property says
    ``internal: true`` (answered back as ``jsdPublic: false``)."""

    label = "Jira Service Management"
    email = "agent@msp.example"
    token = "jira-token-xyz"
    issues = {"HELP-42": "Laptop will not boot"}
    ticket_arg = "key"

    def known_tickets(self) -> Mapping[str, Any]:
        return self.issues

    @property
    def credentials(self) -> dict[str, str]:
        return {"email": self.email, "api_token": self.token}

    def unauthorised(self) -> Response:
        return Response("Client must be authenticated to access this resource.", 401)

    def authorised(self) -> bool:
        return request.headers.get("Authorization") == _basic(self.email, self.token)

    def missing(self, ticket: str) -> Response:
        return self.error(
            404,
            {
                "errorMessages": ["Issue does not exist or you do not have permission to see it."],
                "errors": {},
            },
        )

    def routes(self) -> None:
        app = self.app

        @app.post("/rest/api/3/issue/<key>/comment")
        def add(key: str) -> Response:
            data = self.json_body()
            body = data.get("body")
            if not isinstance(body, dict) or not _ADF.is_valid(body):
                return self.error(
                    400, {"errorMessages": [], "errors": {"comment": "Comment body is not valid!"}}
                )
            internal = False
            for prop in data.get("properties") or []:
                if prop.get("key") == "sd.public.comment":
                    internal = bool((prop.get("value") or {}).get("internal"))
            note = {"body": body, "jsdPublic": not internal}
            return self.write(key, note, lambda n: self.ok(n, 201))

        @app.get("/rest/api/3/issue/<key>/comment")
        def listing(key: str) -> Response:
            start = int(request.args.get("startAt", 0))
            size = int(request.args.get("maxResults", 50))
            notes = self.notes(key)
            return self.ok(
                {
                    "startAt": start,
                    "maxResults": size,
                    "total": len(notes),
                    "comments": notes[start : start + size],
                }
            )

        @app.get("/rest/api/3/issue/<key>")
        def show(key: str) -> Response:
            return self.ok({"key": key, "fields": {"summary": self.issues[key]}})

        @app.get("/rest/api/3/myself")
        def me() -> Response:
            return self.ok({"accountId": "abc", "emailAddress": self.email})


# ── ConnectWise Manage ──────────────────────────────────────────────────────────────────────


class ConnectWiseFake(Fake):
    """ConnectWise Manage REST 3.0: Basic ``company+public:private`` plus a ``clientId``
    header; a note needs text and at least one of its three flags."""

    label = "ConnectWise"
    company, public, private, client_id = "msp", "pubKEY", "privKEY", "client-uuid-1"
    tickets = {"5150": "Email bouncing"}
    prefix = "/v4_6_release/apis/3.0"

    @property
    def codebase_url(self) -> str:
        return self.base_url + "/v4_6_release"

    @property
    def credentials(self) -> dict[str, str]:
        return {
            "company_id": self.company,
            "public_key": self.public,
            "private_key": self.private,
            "client_id": self.client_id,
        }

    def unauthorised(self) -> Response:
        return self.error(401, {"code": "Unauthorized", "message": "Unauthorized"})

    def authorised(self) -> bool:
        return (
            request.headers.get("Authorization")
            == _basic(f"{self.company}+{self.public}", self.private)
            and request.headers.get("clientId") == self.client_id
        )

    def missing(self, ticket: str) -> Response:
        return self.error(
            404, {"code": "NotFound", "message": f"Ticket with id {ticket} not found"}
        )

    def routes(self) -> None:
        app = self.app

        @app.post(self.prefix + "/service/tickets/<ticket>/notes")
        def add(ticket: str) -> Response:
            data = self.json_body()
            flags = ("detailDescriptionFlag", "internalAnalysisFlag", "resolutionFlag")
            if not data.get("text") or not any(data.get(f) is True for f in flags):
                return self.error(
                    400,
                    {
                        "code": "InvalidObject",
                        "message": "ticketNote object is invalid",
                        "errors": [{"code": "MissingRequiredField", "field": "text"}],
                    },
                )
            note = {
                "text": data["text"],
                "ticketId": int(ticket),
                **{f: bool(data.get(f)) for f in flags},
            }
            return self.write(ticket, note, lambda n: self.ok(n, 201))

        @app.get(self.prefix + "/service/tickets/<ticket>/notes")
        def listing(ticket: str) -> Response:
            return self.ok(self.notes(ticket))

        @app.get(self.prefix + "/service/tickets/<ticket>")
        def show(ticket: str) -> Response:
            return self.ok({"id": int(ticket), "summary": self.tickets[ticket]})

        @app.get(self.prefix + "/system/info")
        def info() -> Response:
            return self.ok({"version": "v2024.1", "isCloud": True})


# ── Zammad ──────────────────────────────────────────────────────────────────────────────────


class ZammadFake(Fake):
    """Zammad REST: ``Authorization: Token token=…``; articles are public unless
    ``internal: true``; tickets are found by number through the search endpoint."""

    label = "Zammad"
    token = "zm-token-1"
    tickets = {"31001": {"id": 17, "title": "Shared drive missing"}}

    @property
    def credentials(self) -> dict[str, str]:
        return {"token": self.token}

    def _by_id(self, ticket_id: int) -> str | None:
        return next((n for n, t in self.tickets.items() if t["id"] == ticket_id), None)

    def unauthorised(self) -> Response:
        return self.error(401, {"error": "Invalid token!"})

    def authorised(self) -> bool:
        return request.headers.get("Authorization") == f"Token token={self.token}"

    def routes(self) -> None:
        app = self.app

        @app.get("/api/v1/tickets/search")
        def search() -> Response:
            query = request.args.get("query", "")
            number = query.removeprefix("number:")
            found = self.tickets.get(number)
            rows = [{"id": found["id"], "number": number, "title": found["title"]}] if found else []
            if request.args.get("expand") == "true":
                return self.ok(rows)
            return self.ok({"tickets": [r["id"] for r in rows], "assets": {}})

        @app.post("/api/v1/ticket_articles")
        def add() -> Response:
            data = self.json_body()
            number = (
                self._by_id(data.get("ticket_id"))
                if isinstance(data.get("ticket_id"), int)
                else None
            )
            if number is None:
                return self.error(
                    422,
                    {
                        "error": "No such ticket_id",
                        "error_human": "No lookup value found for 'ticket_id'",
                    },
                )
            if not data.get("body"):
                return self.error(422, {"error": "Need body"})
            note = {
                "ticket_id": data["ticket_id"],
                "body": data["body"],
                "content_type": data.get("content_type", "text/plain"),
                "type": data.get("type", "note"),
                "internal": data.get("internal", False),
            }
            return self.write(number, note, lambda n: self.ok(n, 201))

        @app.get("/api/v1/ticket_articles/by_ticket/<int:ticket_id>")
        def listing(ticket_id: int) -> Response:
            number = self._by_id(ticket_id)
            if number is None:
                return self.error(404, {"error": "Couldn't find Ticket"})
            return self.ok(self.notes(number))

        @app.get("/api/v1/users/me")
        def me() -> Response:
            return self.ok({"id": 3, "login": "agent@msp.example"})


# ── ServiceNow ──────────────────────────────────────────────────────────────────────────────


class ServiceNowFake(Fake):
    """ServiceNow Table API: Basic auth; work notes are journal entries; resolving (state 6)
    requires close_code and close_notes (the instance's data policy)."""

    label = "ServiceNow"
    user, password = "rf.integration", "sn-pass"
    incidents = {
        "INC0010042": {
            "sys_id": "a1b2c3d4e5f60718293a4b5c6d7e8f90",
            "short_description": "Outlook crashes",
        }
    }

    @property
    def credentials(self) -> dict[str, str]:
        return {"username": self.user, "password": self.password}

    def __init__(self) -> None:
        self.states: dict[str, dict[str, Any]] = {}
        super().__init__()

    def _number(self, sys_id: str) -> str | None:
        return next((n for n, i in self.incidents.items() if i["sys_id"] == sys_id), None)

    def unauthorised(self) -> Response:
        return self.error(
            401,
            {
                "error": {
                    "message": "User Not Authenticated",
                    "detail": "Required to provide Auth information",
                },
                "status": "failure",
            },
        )

    def authorised(self) -> bool:
        return request.headers.get("Authorization") == _basic(self.user, self.password)

    def routes(self) -> None:
        app = self.app

        def query() -> dict[str, str]:
            raw = request.args.get("sysparm_query", "")
            out: dict[str, str] = {}
            for part in raw.split("^"):
                if "LIKE" in part:
                    key, value = part.split("LIKE", 1)
                    out[key + "LIKE"] = value
                elif "=" in part:
                    key, value = part.split("=", 1)
                    out[key] = value
            return out

        @app.get("/api/now/table/incident")
        def find_incident() -> Response:
            number = query().get("number", "")
            row = self.incidents.get(number)
            return self.ok({"result": [{"number": number, **row}] if row else []})

        @app.patch("/api/now/table/incident/<sys_id>")
        def patch(sys_id: str) -> Response:
            number = self._number(sys_id)
            if number is None:
                return self.error(
                    404,
                    {
                        "error": {
                            "message": "No Record found",
                            "detail": "Record doesn't exist or ACL restricts the record retrieval",
                        },
                        "status": "failure",
                    },
                )
            data = self.json_body()
            if str(data.get("state", "")) == "6" and not (
                data.get("close_code") and data.get("close_notes")
            ):
                return self.error(
                    403,
                    {
                        "error": {
                            "message": "Operation Failed",
                            "detail": "Data Policy Exception: Resolution code, "
                            "Resolution notes are mandatory",
                        },
                        "status": "failure",
                    },
                )
            with self.lock:
                self.states.setdefault(number, {}).update(
                    {k: data[k] for k in ("state", "close_code", "close_notes") if k in data}
                )
            if not data.get("work_notes"):
                return self.ok({"result": {"sys_id": sys_id, "number": number}})
            note = {"element": "work_notes", "element_id": sys_id, "value": data["work_notes"]}
            return self.write(
                number,
                note,
                lambda n: self.ok({"result": {"sys_id": sys_id, "number": number}}),
            )

        @app.get("/api/now/table/sys_journal_field")
        def journal() -> Response:
            q = query()
            number = self._number(q.get("element_id", ""))
            rows = self.notes(number) if number else []
            like = q.get("valueLIKE", "")
            rows = [r for r in rows if r["element"] == q.get("element") and like in r["value"]]
            return self.ok(
                {"result": [{"sys_id": str(r["id"]), "value": r["value"]} for r in rows]}
            )

        @app.get("/api/now/table/sys_user")
        def users() -> Response:
            return self.ok({"result": [{"user_name": self.user}]})


# ── HaloPSA ─────────────────────────────────────────────────────────────────────────────────


class HaloFake(Fake):
    """HaloPSA: OAuth2 client credentials at ``/auth/token`` (form-encoded), then a Bearer
    token on ``/api``; ``POST /api/Actions`` takes a JSON *array*; actions are visible to the
    end user unless ``hiddenfromuser: true``."""

    label = "HaloPSA"
    client_id, client_secret = "halo-client", "halo-secret"
    tickets = {"880": "New starter laptop"}
    # The client-credentials grant is how a caller gets its token.
    public_endpoints = frozenset({"token"})

    def __init__(self) -> None:
        self.tokens: set[str] = set()
        super().__init__()

    @property
    def credentials(self) -> dict[str, str]:
        return {"client_id": self.client_id, "client_secret": self.client_secret}

    def unauthorised(self) -> Response:
        with self.lock:
            self.tokens.clear()
        return Response("", 401)

    def authorised(self) -> bool:
        header = request.headers.get("Authorization", "")
        return header.startswith("Bearer ") and header[7:] in self.tokens

    def missing(self, ticket: str) -> Response:
        return self.error(404, {"message": "Ticket not found"})

    def routes(self) -> None:
        app = self.app

        @app.post("/auth/token")
        def token() -> Response:
            if request.mimetype != "application/x-www-form-urlencoded":
                return self.error(400, {"error": "invalid_request"})
            form = {k: v[0] for k, v in parse_qs(request.get_data(as_text=True)).items()}
            if form.get("grant_type") != "client_credentials":
                return self.error(400, {"error": "unsupported_grant_type"})
            if (form.get("client_id"), form.get("client_secret")) != (
                self.client_id,
                self.client_secret,
            ):
                return self.error(400, {"error": "invalid_client"})
            issued = uuid.uuid4().hex
            with self.lock:
                self.tokens.add(issued)
            return self.ok({"access_token": issued, "token_type": "Bearer", "expires_in": 3600})

        @app.post("/api/Actions")
        def add() -> Response:
            data = self.json_body(array=True)
            if len(data) != 1 or not isinstance(data[0].get("ticket_id"), int):
                return self.error(400, {"message": "ticket_id is required"})
            action = data[0]
            ticket = str(action["ticket_id"])
            if ticket not in self.tickets:
                return self.error(404, {"message": f"Ticket {ticket} not found"})
            note = {
                "ticket_id": action["ticket_id"],
                "note_html": action.get("note_html", ""),
                "hiddenfromuser": bool(action.get("hiddenfromuser", False)),
                "outcome": action.get("outcome"),
            }
            return self.write(ticket, note, lambda n: self.ok(n, 201))

        @app.get("/api/Actions")
        def listing() -> Response:
            ticket = request.args.get("ticket_id", "")
            return self.ok({"record_count": len(self.notes(ticket)), "actions": self.notes(ticket)})

        @app.get("/api/Tickets/<ticket>")
        def show(ticket: str) -> Response:
            return self.ok({"id": int(ticket), "summary": self.tickets[ticket]})

        @app.get("/api/Agent/me")
        def me() -> Response:
            return self.ok({"id": 1, "name": "API agent"})


# ── Autotask ────────────────────────────────────────────────────────────────────────────────


class AutotaskFake(Fake):
    """Autotask REST: the zone lookup names the zone's API URL; requests carry
    ``ApiIntegrationCode``, ``UserName`` and ``Secret``; a ticket note needs its title,
    description, noteType and publish."""

    label = "Autotask"
    username, secret, code = "api@msp.example", "at-secret", "TRACKING-ID"
    tickets = {"9001": "Backup failed"}
    # The zone lookup comes before any credentials: it says which zone's API to call.
    public_endpoints = frozenset({"zone"})

    @property
    def credentials(self) -> dict[str, str]:
        return {"username": self.username, "secret": self.secret, "integration_code": self.code}

    def unauthorised(self) -> Response:
        return Response("", 401)

    def authorised(self) -> bool:
        h = request.headers
        return (h.get("ApiIntegrationCode"), h.get("UserName"), h.get("Secret")) == (
            self.code,
            self.username,
            self.secret,
        )

    def missing(self, ticket: str) -> Response:
        return self.error(404, {"errors": [f"Ticket {ticket} not found"]})

    def routes(self) -> None:
        app = self.app

        @app.get("/atservicesrest/V1.0/zoneInformation")
        def zone() -> Response:
            if request.args.get("user") != self.username:
                return self.error(404, {"errors": ["Zone information could not be determined"]})
            return self.ok(
                {
                    "zoneName": "Test zone",
                    "url": f"{self.base_url}/ATServicesRest/",
                    "webUrl": f"{self.base_url}/",
                    "ci": 1,
                }
            )

        @app.post("/ATServicesRest/V1.0/Tickets/<ticket>/Notes")
        def add(ticket: str) -> Response:
            data = self.json_body()
            missing = [
                k
                for k in ("title", "description", "noteType", "publish")
                if data.get(k) in (None, "")
            ]
            if missing or data.get("ticketID") not in (None, int(ticket)):
                return self.error(500, {"errors": [f"Missing required fields: {missing}"]})
            note = {k: data[k] for k in ("title", "description", "noteType", "publish")}
            return self.write(ticket, note, lambda n: self.ok({"itemId": n["id"]}))

        @app.get("/ATServicesRest/V1.0/Tickets/<ticket>/Notes")
        def listing(ticket: str) -> Response:
            return self.ok({"items": self.notes(ticket), "pageDetails": {"count": 0}})

        @app.get("/ATServicesRest/V1.0/Tickets/<ticket>")
        def show(ticket: str) -> Response:
            return self.ok({"item": {"id": int(ticket), "title": self.tickets[ticket]}})

        @app.get("/ATServicesRest/V1.0/Tickets/entityInformation")
        def entity() -> Response:
            return self.ok({"info": {"name": "Ticket", "canCreate": True, "canQuery": True}})
