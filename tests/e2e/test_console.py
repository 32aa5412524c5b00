"""End-to-end tests of the engineer console in a real browser.

Headless Chromium (Debian's `chromium`, driven by Playwright for Python) against the stack as
`make run` starts it: the gateway under gunicorn with two worker processes, a Celery worker
and beat, the test PostgreSQL and Redis, and the stub Messages API in a process of its own
(so calls are counted across processes). Resolution notes go to a local webhook receiver.

The screenshots in docs/console/ are written by these tests.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import playwright.sync_api as playwright_sync
import pytest
import redis
import requests
from sqlalchemy import text

from shared.config import PROJECT_ROOT, Settings
from tests.e2e.pages.history import HistoryPage
from tests.e2e.pages.kb import KnowledgeBasePage
from tests.e2e.pages.library import LibraryPage
from tests.e2e.pages.login import DEMO_PASSWORD, LoginPage
from tests.e2e.pages.session import PREVIEW_TIMEOUT_MS, SessionPage
from tests.e2e.pages.sessions import SessionsPage
from tests.e2e.pages.settings import SettingsPage
from tests.e2e.pages.template import TemplatePage
from tests.support.stack import RunningStack, running_stack

expect = playwright_sync.expect

pytestmark = pytest.mark.xdist_group("console-e2e")

# The README's screenshots: refreshed with UPDATE_SCREENSHOTS=1, else kept with the test artifacts
# so that an ordinary run leaves the tree as it was.
SCREENSHOTS = (
    PROJECT_ROOT / "docs" / "console"
    if os.environ.get("UPDATE_SCREENSHOTS") == "1"
    else PROJECT_ROOT / ".test-artifacts" / "console"
)
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 375, "height": 812}
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ENGINEER = "engineer@demo.resolutionflow.local"
OWNER = "owner@demo.resolutionflow.local"
# What a page may request: its own shell and assets, and the public API. Nothing else.
ALLOWED_PATHS = re.compile(r"^/($|\?|static/console/|favicon\.ico$|api/v1/|api/docs)")

RESET_TEMPLATE_BODY = r"""$ErrorActionPreference = 'Stop'
$secure = ConvertTo-SecureString -String {{new_password}} -AsPlainText -Force
Invoke-Command -ComputerName {{computer}} -ScriptBlock {
    param($Name, $Password, $Unlock)
    Set-LocalUser -Name $Name -Password $Password
    if ($Unlock) { Enable-LocalUser -Name $Name }
} -ArgumentList {{username}}, $secure, ({{mode}} -eq 'reset-and-unlock')
$summary = "Password reset for {0}; expires in {1} days; notify: {2}; must change: {3}"
Write-Output ($summary -f {{username}}, {{expire_days}}, ({{notify}} -join ','), {{must_change}})
"""

RESET_TEMPLATE: dict[str, Any] = {
    "name": "Reset a local account password",
    "description": "Sets a new password on a local Windows account, optionally unlocking it.",
    "use_case": "A user is locked out of a kiosk or shared machine's local account.",
    "tags": ["accounts", "passwords", "kiosk"],
    "complexity": "basic",
    "estimated_runtime": "5s",
    "requires_elevation": True,
    "script_body": RESET_TEMPLATE_BODY,
    "parameters_schema": {
        "parameters": [
            {
                "key": "username",
                "label": "Account name",
                "type": "string",
                "required": True,
                "help": "The local account, without the machine name.",
                "validation": {"pattern": "^[A-Za-z0-9._-]{1,20}$"},
            },
            {
                "key": "new_password",
                "label": "New password",
                "type": "password",
                "required": True,
                "validation": {"min_length": 12},
            },
            {
                "key": "computer",
                "label": "Computer",
                "type": "hostname",
                "default": "localhost",
            },
            {
                "key": "expire_days",
                "label": "Password expires in (days)",
                "type": "integer",
                "default": 90,
                "validation": {"min": 1, "max": 365},
            },
            {
                "key": "mode",
                "label": "Mode",
                "type": "choice",
                "required": True,
                "options": ["reset", "reset-and-unlock"],
                "default": "reset-and-unlock",
            },
            {
                "key": "notify",
                "label": "Notify",
                "type": "multichoice",
                "options": ["user", "manager", "helpdesk"],
            },
            {
                "key": "must_change",
                "label": "User must change the password at next logon",
                "type": "boolean",
                "default": True,
            },
        ]
    },
}


def _item(text: str, cites: list[str], fmt: str = "sentence") -> dict[str, Any]:
    return {"text": text, "format": fmt, "cites": cites}


# The structured answer (four sections of cited items) the way Sonnet writes one.
REALISTIC_NOTE = json.dumps(
    {
        "sections": [
            {
                "title": "Problem",
                "items": [
                    _item("Outlook prompted for the user's password every few minutes.", ["F1"])
                ],
            },
            {
                "title": "What we confirmed",
                "items": [
                    _item("Microsoft 365 Apps 2408 on Windows 11 23H2.", ["F2"], "bullet"),
                    _item(
                        "Modern authentication was disabled in the registry (EnableADAL).",
                        ["F3"],
                        "bullet",
                    ),
                ],
            },
            {
                "title": "Root cause",
                "items": [
                    _item(
                        "With modern authentication off, Outlook fell back to basic "
                        "authentication, which Microsoft 365 no longer accepts, so every token "
                        "refresh ended in a new password prompt.",
                        ["F3", "F4"],
                    )
                ],
            },
            {
                "title": "Resolution",
                "items": [
                    _item(
                        "Set EnableADAL back to 1 under the Office Identity key and restarted "
                        "Outlook; the prompts stopped and the mailbox stayed connected.",
                        ["F5", "X1"],
                    )
                ],
            },
        ]
    }
)


# ── Processes ──────────────────────────────────────────────────────────────


def _wait_until(
    check: Callable[[], bool], timeout_s: float, what: str, step_s: float = 0.2
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(step_s)
    raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")


@dataclass
class Receiver:
    """A local ticketing endpoint that records every webhook delivery."""

    server: ThreadingHTTPServer
    deliveries: list[dict[str, Any]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/tickets"


def _start_receiver() -> Receiver:
    receiver: Receiver

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            receiver.deliveries.append(
                {
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": body,
                }
            )
            self.send_response(204)
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver = Receiver(server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return receiver


@pytest.fixture(scope="module")
def chromium_path() -> str:
    path = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        pytest.fail("Debian's chromium is not installed (make test-tools installs it)")
    return path


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    rec = _start_receiver()
    yield rec
    rec.server.shutdown()
    rec.server.server_close()


@pytest.fixture(scope="module")
def stack(migrated: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """The gateway, a Celery worker and beat, as `make run` starts them, logging at INFO (every
    line of which the secrecy checks read)."""
    settings = replace(
        migrated,
        WEBHOOK_RETRY_SCHEDULE_S=(0, 1, 2, 5),
        WORKER_CONCURRENCY=2,
        DATA_DIR=tmp_path_factory.mktemp("console-stack"),
    )
    with running_stack(
        settings, stub=True, concurrency=2, beat=True, log_level="INFO", log_name="console"
    ) as running:
        yield running


@dataclass
class Demo:
    account_id: str
    tokens: dict[str, str]
    template_id: str


@pytest.fixture
def demo(stack: RunningStack, migrated: Settings) -> Demo:
    """The demo users `make run` prints, the built-in library when it is there, and one
    template with a sensitive parameter (created through the public API)."""
    from sqlalchemy import select

    from app.cli import ensure_demo
    from shared.db import db
    from shared.models import ScriptCategory
    from tests.support.stub_anthropic import StubClient

    stub_client = StubClient(stack.stub_url)
    stub_client.reset()
    stub_client.close()
    info = ensure_demo(migrated)
    try:
        from app.cli import load_library

        load_library()
    except ImportError:
        pass  # the built-in library module is optional for these tests
    with db.transaction() as session:
        category = session.scalars(
            select(ScriptCategory).where(ScriptCategory.slug == "user-management")
        ).one_or_none()
        if category is None:
            category = session.scalars(
                select(ScriptCategory).order_by(ScriptCategory.sort_order)
            ).first()
        if category is None:
            category = ScriptCategory(
                slug="user-management",
                name="User management",
                description="Accounts, passwords and groups",
                sort_order=10,
                is_active=True,
            )
            session.add(category)
            session.flush()
        category_id = str(category.id)
    tokens = {role: user["token"] for role, user in info["users"].items()}
    response = stack.api(
        "POST",
        "/api/v1/scripts/templates",
        tokens["engineer"],
        json={**RESET_TEMPLATE, "category_id": category_id},
    )
    assert response.status_code == 201, response.text
    return Demo(account_id=info["account_id"], tokens=tokens, template_id=response.json()["id"])


@pytest.fixture(scope="module")
def browser(chromium_path: str) -> Iterator[Any]:
    with playwright_sync.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@dataclass
class Tab:
    page: Any
    requests: list[Any]
    errors: list[str]


def _open(browser: Any, stack: RunningStack, viewport: dict[str, int]) -> Tab:
    context = browser.new_context(
        viewport=viewport,
        base_url=stack.base_url,
        permissions=["clipboard-read", "clipboard-write"],
    )
    context.set_default_timeout(15_000)
    page = context.new_page()
    tab = Tab(page=page, requests=[], errors=[])
    page.on("request", lambda req: tab.requests.append(req))
    page.on("pageerror", lambda exc: tab.errors.append(str(exc)))
    page.on(
        "console",
        lambda msg: tab.errors.append(msg.text) if msg.type == "error" else None,
    )
    return tab


@pytest.fixture
def tab(browser: Any, stack: RunningStack) -> Iterator[Tab]:
    opened = _open(browser, stack, DESKTOP)
    yield opened
    _check_requests(opened, stack)
    opened.page.context.close()


@pytest.fixture
def phone(browser: Any, stack: RunningStack) -> Iterator[Tab]:
    opened = _open(browser, stack, PHONE)
    yield opened
    _check_requests(opened, stack)
    opened.page.context.close()


def _check_requests(tab: Tab, stack: RunningStack) -> None:
    """The console calls the public API on its own origin, and nothing else."""
    origin = urlsplit(stack.base_url)
    for req in tab.requests:
        url = urlsplit(req.url)
        if url.scheme in ("data", "blob"):
            continue
        assert (url.scheme, url.netloc) == (origin.scheme, origin.netloc), req.url
        path = url.path + (f"?{url.query}" if url.query else "")
        assert ALLOWED_PATHS.match(path), f"unexpected request {req.method} {req.url}"
    unexpected = [e for e in tab.errors if "status of 4" not in e and "status of 5" not in e]
    assert not unexpected, unexpected


# ── Helpers ────────────────────────────────────────────────────────────────


def shot(page: Any, name: str, *, full_page: bool = True) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")
    page.wait_for_timeout(150)  # let transitions settle
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)


def page_text_outside_script(page: Any) -> str:
    """Everything the page holds that a person or script could read, except the one rendered
    script view: markup, form values, storage, URL and history state."""
    return page.evaluate(
        """() => {
            const clone = document.documentElement.cloneNode(true);
            clone.querySelector('#script-output')?.remove();
            const values = Array.from(document.querySelectorAll('input, textarea, select'))
                .map((el) => el.value);
            return [clone.outerHTML, values.join('\\n'), JSON.stringify({...sessionStorage}),
                    JSON.stringify({...localStorage}), location.href,
                    JSON.stringify(history.state), document.title].join('\\n');
        }"""
    )


def stored_copies(stack: RunningStack, needle: str) -> list[str]:
    """Where `needle` is stored: every table of the database, every key of the stack's Redis
    db, and the logs of its processes."""
    from shared.db import db

    found: list[str] = []
    with db.engine.connect() as conn:
        tables = conn.execute(
            text(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
            )
        ).scalars()
        for table in list(tables):
            count = conn.execute(
                text(f'SELECT count(*) FROM "{table}" AS t WHERE t::text LIKE :needle'),
                {"needle": f"%{needle}%"},
            ).scalar_one()
            if count:
                found.append(f"table {table}: {count} rows")
    client = redis.Redis.from_url(stack.redis_url)
    raw = needle.encode()
    for key in client.scan_iter(count=500):
        kind = client.type(key).decode()
        if kind == "string":
            values = [client.get(key) or b""]
        elif kind == "hash":
            values = [k + b"=" + v for k, v in client.hgetall(key).items()]
        elif kind == "list":
            values = client.lrange(key, 0, -1)
        elif kind == "set":
            values = list(client.smembers(key))
        elif kind == "zset":
            values = client.zrange(key, 0, -1)
        elif kind == "stream":
            values = [json.dumps(e, default=str).encode() for e in client.xrange(key)]
        else:
            values = []
        if any(raw in value for value in values) or raw in key:
            found.append(f"redis key {key!r}")
    for log in stack.logs:
        if log.exists() and raw in log.read_bytes():
            found.append(f"log {log.name}")
    return found


def _pilot_available(stack: RunningStack, demo: Demo) -> bool:
    response = stack.api("GET", "/api/v1/ai-sessions", demo.tokens["engineer"])
    return response.status_code == 200


def _notes_available(stack: RunningStack, demo: Demo, session_id: str) -> bool:
    response = stack.api(
        "GET",
        f"/api/v1/ai-sessions/{session_id}/resolution-note/preview?wait=0",
        demo.tokens["engineer"],
    )
    return response.status_code in (200, 202)


def _stub_note_calls(stack: RunningStack) -> int:
    from tests.support.stub_anthropic import StubClient, wants_json_schema

    client = StubClient(stack.stub_url)
    try:
        # Note generations are the calls that ask for the note's structured output.
        return sum(1 for call in client.calls() if wants_json_schema(call["json"]))
    finally:
        client.close()


def _settled_note_calls(stack: RunningStack, quiet_s: float = 3.0, timeout_s: float = 30.0) -> int:
    """The stub's count of note generations once it has not moved for `quiet_s` (longer than
    the notes service's pre-warm quiet period)."""
    deadline = time.monotonic() + timeout_s
    last = _stub_note_calls(stack)
    since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = _stub_note_calls(stack)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return now
    raise TimeoutError("the stub kept receiving note generations")


# ── Shell and client ───────────────────────────────────────────────────────


def test_shell_is_served_with_strict_headers_and_adds_no_api(stack: RunningStack) -> None:
    response = requests.get(f"{stack.base_url}/", timeout=10)
    assert response.status_code == 200
    assert "text/html" in response.headers["Content-Type"]
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert response.headers["Cache-Control"] == "no-store"
    module = re.search(r'src="(/static/console/app\.js\?v=\w+)"', response.text)
    assert module, response.text
    asset = requests.get(f"{stack.base_url}{module.group(1)}", timeout=10)
    assert asset.status_code == 200
    assert "javascript" in asset.headers["Content-Type"]

    from flask import Flask

    from services.console import init_console

    app = Flask("console-rules")
    init_console(app)
    rules = {rule.rule for rule in app.url_map.iter_rules() if rule.endpoint.startswith("console")}
    assert rules == {"/", "/favicon.ico", "/static/console/<path:filename>"}


def test_api_client_parses_sse_and_normalises_404(tab: Tab, demo: Demo) -> None:
    """api.js on its own: the SSE parser (split chunks, CRLF, multi-line data, comments),
    sendMessage's JSON fallback and getActiveFix reading the list of fixes (null when none is
    active) instead of asking for a 404."""
    page = tab.page
    LoginPage(page).sign_in(ENGINEER)
    session_id = str(uuid.uuid4())
    other_session = str(uuid.uuid4())
    fixes = [
        {"id": "new", "title": "Active", "superseded_at": None},
        {"id": "old", "title": "Earlier", "superseded_at": "2026-01-01T00:00:00Z"},
    ]
    page.route(
        f"**/api/v1/ai-sessions/{session_id}/suggested-fixes",
        lambda route: route.fulfill(
            status=200, content_type="application/json", body=json.dumps(fixes[1:])
        ),
    )
    page.route(
        f"**/api/v1/ai-sessions/{other_session}/suggested-fixes",
        lambda route: route.fulfill(
            status=200, content_type="application/json", body=json.dumps(fixes)
        ),
    )
    page.route(
        f"**/api/v1/ai-sessions/{session_id}/messages",
        lambda route: route.fulfill(
            status=201,
            content_type="application/json",
            body=json.dumps({"assistant_message": {"content": "plain"}, "state_version": 3}),
        ),
    )
    result = page.evaluate(
        """async ([sessionId, otherSession]) => {
            const api = await import('/static/console/api.js');
            const enc = new TextEncoder();
            const chunks = [
                'event: delta\\r\\ndata: {"te',
                'xt":"Hel"}\\r\\n\\r\\n: keep-alive\\n\\n',
                'event: delta\\ndata: {"text":"lo"}\\n\\n',
                'event: done\\ndata: {"a":\\ndata: 1}\\r',
                '\\n\\r\\n',
            ];
            const body = new ReadableStream({start(c) {
                for (const x of chunks) c.enqueue(enc.encode(x));
                c.close();
            }});
            const events = [];
            for await (const e of api.parseEventStream(body)) events.push(e);
            const fix = await api.getActiveFix(sessionId);
            const active = await api.getActiveFix(otherSession);
            const deltas = [];
            const reply = await api.sendMessage(sessionId, 'hi', {onDelta: (t) => deltas.push(t)});
            return {events, fix, active, reply, deltas};
        }""",
        [session_id, other_session],
    )
    assert [e["event"] for e in result["events"]] == ["delta", "delta", "done"]
    assert [json.loads(e["data"]) for e in result["events"][:2]] == [
        {"text": "Hel"},
        {"text": "lo"},
    ]
    assert result["events"][2]["data"] == '{"a":\n1}'
    assert result["fix"] is None  # only superseded fixes: no active one, and no 404 asked for
    assert result["active"]["id"] == "new"
    assert not [r for r in tab.requests if r.url.endswith("/suggested-fixes/active")]
    assert result["reply"]["state_version"] == 3 and result["deltas"] == []


# ── Login, library, generate, history ──────────────────────────────────────


def test_login_library_generate_history_keep_the_secret_out(
    tab: Tab, stack: RunningStack, demo: Demo
) -> None:
    page = tab.page
    canary = f"Kiosk-{uuid.uuid4().hex[:10]}-Pw!"
    login = LoginPage(page).open()
    expect(login.heading).to_be_visible()
    expect(login.email).to_be_focused()
    shot(page, "login", full_page=False)

    # A wrong password is refused in place; the field is emptied.
    login.submit_with_enter(ENGINEER, "not-the-password")
    expect(login.alert).to_contain_text("do not match")
    expect(login.password).to_have_value("")

    # Keyboard only: type the password, Enter.
    login.submit_with_enter(None, DEMO_PASSWORD)
    expect(login.signed_in_as).to_have_text(ENGINEER)
    token = login.stored_token()
    assert token and token.count(".") == 2
    assert page.evaluate("localStorage.length") == 0

    # Library: categories with counts, search, tag filter.
    library = LibraryPage(page)
    expect(library.heading).to_be_visible()
    expect(library.categories.first).to_contain_text("All templates")
    counts = library.category_counts()
    assert counts[0] == sum(counts[1:]) and counts[0] >= 1
    expect(library.cards.first).to_be_visible()
    shot(page, "library", full_page=False)

    # A quoted phrase: ranked search would also list the built-ins that mention each word.
    library.search('"local Windows account"')
    expect(library.cards).to_have_count(1)
    expect(page).to_have_url(re.compile(r"q=.*local"))
    library.show_only_tag("kiosk")
    expect(library.tag_filter("kiosk")).to_be_visible()
    expect(page).to_have_url(re.compile(r"tags=kiosk"))
    expect(library.cards).to_have_count(1)
    library.remove_tag_filter("kiosk")
    expect(page).not_to_have_url(re.compile(r"tags="))
    library.add_tag_filter("no-such-tag")
    expect(library.results).to_contain_text("No template matches")
    library.remove_tag_filter("no-such-tag")
    expect(library.cards).to_have_count(1)

    # Template detail and the form built from parameters_schema.
    library.open_template(RESET_TEMPLATE["name"])
    template = TemplatePage(page)
    expect(template.heading(RESET_TEMPLATE["name"])).to_be_focused()
    expect(template.field("Account name")).to_have_attribute("type", "text")
    expect(template.field("New password")).to_have_attribute("type", "password")
    expect(template.field("New password")).to_have_value("")
    expect(template.field("Password expires in (days)")).to_have_value("90")
    expect(template.field("Mode")).to_have_value("reset-and-unlock")
    assert (
        template.field("Notify").evaluate("el => el.tagName + ':' + el.multiple") == "SELECT:true"
    )
    expect(template.field("User must change the password at next logon")).to_be_checked()
    expect(template.field("Computer")).to_have_value("localhost")

    # Server-side validation errors land beside their fields; the secret does not stay.
    template.fill(
        **{
            "Account name": "bad name!",
            "New password": canary,
            "Password expires in (days)": "9999",
        }
    )
    template.press_generate()
    expect(template.field_error("expire_days")).to_contain_text("between 1 and 365")
    expect(template.field_error("username")).to_contain_text("pattern")
    expect(template.field("Account name")).to_have_attribute("aria-invalid", "true")
    expect(template.errors).to_be_visible()
    expect(template.field("New password")).to_have_value("")
    assert canary not in page_text_outside_script(page)

    # A valid run: the script is shown once, with its warnings and a copy button.
    template.fill(
        **{"Account name": "kiosk01", "New password": canary, "Password expires in (days)": "30"}
    )
    template.field("Notify").select_option(["user", "helpdesk"])
    template.field("User must change the password at next logon").uncheck()
    assert template.generate().status == 200
    expect(template.script).to_contain_text(f"$rfp_new_password = '{canary}'")
    expect(template.script).to_contain_text(re.compile(r"\$rfp_notify = @\('user', ?'helpdesk'\)"))
    expect(template.script).to_contain_text("$rfp_must_change = $false")
    expect(template.warnings).to_contain_text("Run as Administrator")
    expect(template.field("New password")).to_have_value("")
    assert canary not in page_text_outside_script(page)
    expect(template.copy()).to_have_text("Copied to the clipboard.")
    assert canary in page.evaluate("navigator.clipboard.readText()")
    page.evaluate("navigator.clipboard.writeText('')")
    shot(page, "generate")

    # Leaving the page removes the one rendered copy; history shows the stored, redacted one.
    history = HistoryPage(page).open_from_nav()
    expect(history.heading).to_be_visible()
    row = history.rows.first
    expect(row).to_contain_text(RESET_TEMPLATE["name"])
    expect(row).to_contain_text("[REDACTED]")
    expect(row).to_contain_text("kiosk01")
    assert canary not in page.content()
    assert canary not in page_text_outside_script(page)
    page.go_back()
    expect(template.heading(RESET_TEMPLATE["name"])).to_be_visible()
    expect(template.output).to_be_hidden()
    assert canary not in page.content()

    # No stored copy anywhere: database tables, Redis, process logs.
    assert stored_copies(stack, canary) == []


def test_phone_width_library_and_generate(phone: Tab, demo: Demo) -> None:
    page = phone.page
    LoginPage(page).sign_in(ENGINEER)
    library = LibraryPage(page)
    expect(library.cards.first).to_be_visible()

    def no_horizontal_scroll() -> None:
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"page is {width}px wide at {PHONE['width']}px"

    no_horizontal_scroll()
    shot(page, "library-375", full_page=False)
    library.open_template(RESET_TEMPLATE["name"])
    expect(TemplatePage(page).form).to_be_visible()
    no_horizontal_scroll()
    # Every control is reachable and at least 36 px tall (touch targets).
    heights = page.locator(
        "#generate-form input:not([type=checkbox]), #generate-form select, #generate-form button"
    ).evaluate_all("els => els.map((el) => el.getBoundingClientRect().height)")
    assert heights and min(heights) >= 36, heights
    SessionsPage(page).open_from_nav()
    no_horizontal_scroll()


def test_env_delivery_downloads_a_ps1_without_the_secret(
    tab: Tab, stack: RunningStack, demo: Demo, tmp_path: Any
) -> None:
    page = tab.page
    canary = f"Env-{uuid.uuid4().hex[:10]}-Pw!"
    LoginPage(page).sign_in(ENGINEER)
    library = LibraryPage(page)
    expect(library.cards.first).to_be_visible()
    # The tag filter suggests the tags that exist.
    expect(library.tag_options.first).to_be_attached()
    assert "kiosk" in library.tag_options.evaluate_all("els => els.map((o) => o.value)")

    library.open_template(RESET_TEMPLATE["name"])
    template = TemplatePage(page)
    template.fill(**{"Account name": "kiosk02", "New password": canary})
    template.field("Deliver sensitive values").select_option("env")
    assert template.generate().status == 200
    expect(template.script).to_contain_text("$env:RF_NEW_PASSWORD")
    expect(template.warnings).to_contain_text("RF_NEW_PASSWORD")
    assert canary not in page.content()
    download = template.download()
    assert download.suggested_filename.endswith(".ps1")
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    data = saved.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf") and b"$env:RF_NEW_PASSWORD" in data
    assert canary.encode() not in data
    assert stored_copies(stack, canary) == []


# ── Sessions: facts, preview, chat, fix, resolve ───────────────────────────


def _require_session_services(stack: RunningStack, demo: Demo) -> None:
    if not _pilot_available(stack, demo):
        pytest.fail("the pilot service's API (/api/v1/ai-sessions) is not available")


def _api_session(stack: RunningStack, demo: Demo, title: str, facts: list[tuple[str, str]]) -> str:
    token = demo.tokens["engineer"]
    response = stack.api("POST", "/api/v1/ai-sessions", token, json={"title": title})
    assert response.status_code == 201, response.text
    session_id = str(response.json()["id"])
    for kind, fact in facts:
        created = stack.api(
            "POST",
            f"/api/v1/ai-sessions/{session_id}/facts",
            token,
            json={"text": fact, "kind": kind},
        )
        assert created.status_code == 201, created.text
    return session_id


def test_session_flow_from_facts_to_delivered_note(
    tab: Tab, stack: RunningStack, demo: Demo, receiver: Receiver, browser: Any
) -> None:
    _require_session_services(stack, demo)
    page = tab.page
    receiver.deliveries.clear()

    # The owner points the account's ticketing webhook at the local receiver.
    LoginPage(page).sign_in(OWNER)
    settings = SettingsPage(page).open_from_nav()
    secret = settings.save_webhook(receiver.url)
    assert secret.startswith("whsec_")
    expect(settings.current).to_contain_text(receiver.url)

    # A new session.
    SessionsPage(page).open_from_nav().open_new(
        "Outlook keeps prompting for a password", ticket_ref="INC-1042"
    )
    session = SessionPage(page)
    expect(
        page.get_by_role("heading", name="Outlook keeps prompting for a password")
    ).to_be_visible()
    assert secret not in page.content()
    expect(session.preview_panel).to_have_attribute("data-state", "ready", timeout=45_000)
    session_id = session.session_id

    # Facts by kind; the preview follows 500 ms after the last one.
    facts = [
        ("symptom", "Outlook prompts for the password every few minutes"),
        ("environment", "Microsoft 365 Apps 2408 on Windows 11 23H2"),
        ("confirmed", "Modern authentication is disabled in the registry (EnableADAL=0)"),
        ("root_cause", "Outlook fell back to basic authentication, which Microsoft 365 refuses"),
        ("resolution", "Set EnableADAL back to 1 and restarted Outlook"),
    ]
    for kind, fact in facts:
        session.add_fact(kind, fact)
    version = session.state_version()
    session.expect_preview(version)
    expect(page.locator("#preview-ticket")).to_have_text("Ticket INC-1042")
    expect(page.locator("#preview-body h3")).to_have_text(
        ["Problem", "What we confirmed", "Root cause", "Resolution"]
    )
    before = _settled_note_calls(stack)

    # Changing a fact: one new generation, and the preview turns fresh at the new version.
    edit = session.edit_fact(session.fact_items("confirmed").first)
    edit.fill("Modern authentication is disabled in the registry (EnableADAL=0); set to 1")
    with page.expect_response(
        lambda r: "/facts/" in r.url and r.request.method == "PATCH"
    ) as patched:
        edit.press("Enter")
    new_version = patched.value.json()["state_version"]
    assert new_version > version
    session.expect_preview(new_version, cache="fresh")
    assert _settled_note_calls(stack) == before + 1

    # Refresh with nothing changed: served from the cache, no generation.
    session.refresh_preview()
    expect(session.preview_cache).to_have_attribute("data-cache", "cached")
    assert _settled_note_calls(stack, quiet_s=1.0) == before + 1

    # Chat: the stub answers with a suggested fix (twice: the first one is superseded).
    from tests.support.stub_anthropic import StubClient

    def fix_block(title: str, confidence: int) -> str:
        body = {
            "title": title,
            "summary": "Re-enable modern authentication so Outlook uses the cached token.",
            "steps": ["Set HKCU\\...\\Identity\\EnableADAL to 1", "Restart Outlook"],
            "confidence": confidence,
        }
        return f"[SUGGEST_FIX]{json.dumps(body)}[/SUGGEST_FIX]"

    stub_client = StubClient(stack.stub_url)
    try:
        for title, confidence, said in (
            ("Clear the cached credentials", 55, "Try clearing the credential manager first."),
            ("Re-enable modern authentication", 82, "The registry value explains the prompts."),
        ):
            _settled_note_calls(stack, quiet_s=2.5)
            stub_client.responses([f"{said}\n\n{fix_block(title, confidence)}"])
            session.type_message(f"What next? ({title})")
            with page.expect_response(
                lambda r: r.url.endswith("/messages") and r.request.method == "POST"
            ) as sent:
                session.send_message_button().click()
            assert "text/event-stream" in (sent.value.request.headers.get("accept") or "")
            assert "text/event-stream" in sent.value.headers.get("content-type", "")
            expect(session.chat_log).to_contain_text(said)
            expect(session.fix_card.locator("h3")).to_have_text(title)
    finally:
        stub_client.close()
    assert "SUGGEST_FIX" not in page.content()
    card = session.fix_card
    expect(card.locator("article.fix .confidence")).to_have_text("82% confidence")
    expect(card.locator("#superseded-fixes summary")).to_have_text("Earlier suggestions (1)")
    expect(card.locator("#superseded-fixes")).not_to_have_attribute("open", "")
    card.locator("#superseded-fixes summary").click()
    expect(card.locator("#superseded-fixes li")).to_contain_text("Clear the cached credentials")

    # A script run linked to the session: it joins the note's input with its secret redacted,
    # and the secret reaches neither the LLM nor any stored copy.
    canary = f"Linked-{uuid.uuid4().hex[:10]}-Pw!"
    template = TemplatePage(page).open(demo.template_id, session_id=session_id)
    expect(template.field("Link to a troubleshooting session")).to_have_value(session_id)
    template.fill(**{"Account name": "jdoe", "New password": canary})
    template.press_generate()
    expect(template.script).to_contain_text(canary)
    template.go_to_linked_session()
    expect(template.output).to_have_count(0)
    version = session.state_version()
    session.expect_preview(version)
    assert canary not in page.content()
    _settled_note_calls(stack, quiet_s=2.5)
    stub_client = StubClient(stack.stub_url)
    try:
        assert not any(canary in json.dumps(call["json"]) for call in stub_client.calls())
    finally:
        stub_client.close()
    assert stored_copies(stack, canary) == []
    card = session.fix_card
    # The decision changes the note's input: the next generation (one) gets a note written
    # the way Sonnet writes one, for the screenshots.
    _settled_note_calls(stack, quiet_s=2.5)
    stub_client = StubClient(stack.stub_url)
    try:
        stub_client.responses([REALISTIC_NOTE])
    finally:
        stub_client.close()
    card.get_by_role("button", name="Use once").click()
    expect(card.locator("#fix-decision")).to_contain_text("Use once")
    expect(card.get_by_role("button", name="Use once")).to_have_attribute("aria-pressed", "true")
    version = session.state_version()
    session.expect_preview(version, cache="fresh")
    expect(session.preview_body).to_contain_text("EnableADAL")
    shot(page, "session")

    phone_tab = _open(browser, stack, PHONE)
    try:
        LoginPage(phone_tab.page).use_token(demo.tokens["owner"])
        phone_tab.page.goto(page.url)
        phone_tab.page.reload()
        expect(phone_tab.page.locator("#fix-card article.fix .confidence")).to_have_text(
            "82% confidence"
        )
        SessionPage(phone_tab.page).expect_preview(version)
        width = phone_tab.page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"]
        shot(phone_tab.page, "session-375")
    finally:
        phone_tab.page.context.close()

    # Resolve: the panel says what the note will give as the cause and the fix; a resolution
    # fact exists, so it asks for none. The note is delivered and the page shows it.
    expect(page.locator("#resolve-outline-cause")).to_contain_text("basic authentication")
    expect(page.locator("#resolve-outline-fix")).to_contain_text("EnableADAL back to 1")
    expect(page.locator("#resolve-resolution-field")).to_be_hidden()
    expect(page.locator("#preview-sources li").first).to_contain_text("Symptom: Outlook prompts")
    expect(session.ticket_reference).to_have_value("INC-1042")
    session.resolve()
    expect(page.locator('#delivery-status [data-delivery="delivered"]')).to_be_visible(
        timeout=60_000
    )
    expect(session.final_note).to_contain_text("EnableADAL")
    # Resolve cost no generation.
    session.expect_preview(session.state_version(), cache="cached")
    expect(session.fact_field).to_be_disabled()
    shot(page, "resolved")

    assert len(receiver.deliveries) == 1
    delivery = receiver.deliveries[0]
    from standardwebhooks.webhooks import Webhook

    payload = Webhook(secret).verify(delivery["body"], delivery["headers"])
    assert payload["type"] == "resolution_note.created"
    assert payload["session_id"] == session_id
    assert payload["ticket_ref"] == "INC-1042"
    assert "## Root cause" in payload["markdown"]


def test_burst_of_five_fact_edits_makes_one_preview_request(
    tab: Tab, stack: RunningStack, demo: Demo
) -> None:
    """Five fact edits within 500 ms (page.on("request") counts): one preview request, 500 ms
    after the last of them. Each edit goes through the page's controls (Edit, new text, Save);
    the next begins while the earlier saves are still on their way."""
    _require_session_services(stack, demo)
    texts = [
        "Jobs stay in the queue",
        "The spooler service restarts every hour",
        "Only the HP printers are affected",
        "Print server runs Windows Server 2022",
        "The driver was updated last week",
    ]
    session_id = _api_session(
        stack, demo, "Printer queue stalls", [("observation", t) for t in texts]
    )
    page = tab.page
    LoginPage(page).sign_in(ENGINEER)
    page.goto(f"/#/sessions/{session_id}")
    expect(page.locator(".fact-group[data-kind='observation'] li")).to_have_count(5)
    session = SessionPage(page)
    session.expect_preview(session.state_version())
    page.wait_for_timeout(700)  # nothing else is scheduled now

    previews: list[float] = []
    patches: list[tuple[str, float]] = []
    page.on(
        "request",
        lambda r: (
            previews.append(time.monotonic()) if "/resolution-note/preview" in r.url else None
        ),
    )
    page.on(
        "request",
        lambda r: patches.append(("sent", time.monotonic())) if r.method == "PATCH" else None,
    )
    page.on(
        "requestfinished",
        lambda r: patches.append(("done", time.monotonic())) if r.method == "PATCH" else None,
    )
    items = page.locator(".fact-group[data-kind='observation'] li")
    # Driven from inside the page, 30 ms apart: Playwright's round trip per action (about
    # 80 ms a click) would stretch five edits to around 500 ms on a busy machine, and at 60 ms
    # apart a busy 2-core machine once took 557 ms for the five.
    page.evaluate(
        """async (suffix) => {
            const items = document.querySelectorAll(".fact-group[data-kind='observation'] li");
            for (const li of items) {
                li.querySelector("button").click();
                const input = li.querySelector(".fact-edit-input");
                input.value = `${input.value} ${suffix}`;
                input.dispatchEvent(new Event("input", {bubbles: true}));
                li.querySelector("form").requestSubmit();
                await new Promise((resolve) => setTimeout(resolve, 30));
            }
        }""",
        "(checked)",
    )
    for n in range(5):
        expect(items.nth(n).locator(".fact-text")).to_have_text(f"{texts[n]} (checked)")
    page.wait_for_timeout(1500)
    sent = [t for kind, t in patches if kind == "sent"]
    done = [t for kind, t in patches if kind == "done"]
    assert len(sent) == len(done) == 5
    burst_s = sent[-1] - sent[0]
    assert burst_s < 0.5, f"the five edits took {burst_s:.3f} s"
    assert len(previews) == 1, f"{len(previews)} preview requests for one burst"
    assert previews[0] - max(done) >= 0.45  # 500 ms after the last change, not before
    version = SessionPage(page).state_version()
    SessionPage(page).expect_preview(version)
    assert version == int(page.locator("#preview-version").get_attribute("data-version") or 0)


def test_preview_shows_pending_and_retries_after_retry_after(
    tab: Tab, stack: RunningStack, demo: Demo
) -> None:
    """A 202 from the preview shows the pending state and is retried after `retry_after`."""
    _require_session_services(stack, demo)
    session_id = _api_session(stack, demo, "Slow logon", [("symptom", "Logon takes 3 minutes")])
    page = tab.page
    answered: list[str] = []

    def first_pending(route: Any) -> None:
        if not answered:
            answered.append("202")
            route.fulfill(
                status=202,
                content_type="application/json",
                headers={"Retry-After": "1"},
                body=json.dumps({"status": "pending", "state_version": 1, "retry_after": 1}),
            )
        else:
            answered.append("real")
            route.continue_()

    page.route("**/resolution-note/preview?*", first_pending)
    LoginPage(page).sign_in(ENGINEER)
    page.goto(f"/#/sessions/{session_id}")
    panel = page.locator("#preview-panel")
    expect(panel).to_have_attribute("data-state", "pending")
    expect(page.locator("#preview-status")).to_contain_text("checking again in 1 s")
    expect(panel).to_have_attribute("aria-busy", "true")
    expect(panel).to_have_attribute("data-state", "ready", timeout=45_000)
    assert answered[:2] == ["202", "real"]
    expect(panel).not_to_have_attribute("aria-busy", "true")
    session = SessionPage(page)
    session.expect_preview(session.state_version())

    # Deleting a fact asks first (inline), then the list and the preview follow.
    fact = page.locator(".fact-group[data-kind='symptom'] li")
    fact.get_by_role("button", name="Delete fact: Logon takes 3 minutes").click()
    expect(fact.get_by_role("group", name="Confirm deletion")).to_be_visible()
    expect(fact.get_by_role("button", name="Keep")).to_be_focused()
    page.keyboard.press("Enter")  # Keep
    expect(fact.get_by_role("button", name="Delete fact: Logon takes 3 minutes")).to_be_focused()
    fact.get_by_role("button", name="Delete fact: Logon takes 3 minutes").click()
    with page.expect_response(lambda r: r.request.method == "DELETE") as deleted:
        fact.get_by_role("button", name="Delete", exact=True).click()
    version = deleted.value.json()["state_version"]
    expect(page.locator(".fact-group[data-kind='symptom'] li")).to_have_count(0)
    expect(page.locator(".fact-group[data-kind='symptom'] .count-badge")).to_have_text("0")
    expect(page.get_by_label("Fact", exact=True)).to_be_focused()
    SessionPage(page).expect_preview(version)


# ── Accessibility ──────────────────────────────────────────────────────────

AXE_OPTIONS = {
    "runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]},
    "resultTypes": ["violations"],
}


def _axe_violations(page: Any) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page, options=AXE_OPTIONS)
    problems = []
    for violation in results.response["violations"]:
        targets = [", ".join(node["target"]) for node in violation["nodes"]][:5]
        problems.append(f"{violation['id']} ({violation['impact']}): {violation['help']} {targets}")
    return problems


def test_main_screens_pass_axe_wcag_aa(tab: Tab, stack: RunningStack, demo: Demo) -> None:
    """axe-core (WCAG 2.1 A and AA rules) finds nothing on the main screens, desktop size."""
    import axe_playwright_python  # noqa: F401

    page = tab.page
    report: dict[str, list[str]] = {}
    page.goto("/")
    expect(page.get_by_label("Email")).to_be_visible()
    report["login"] = _axe_violations(page)
    LoginPage(page).sign_in(OWNER)
    expect(page.locator("#template-results .template-card").first).to_be_visible()
    report["library"] = _axe_violations(page)
    page.goto(f"/#/templates/{demo.template_id}")
    form = page.locator("#generate-form")
    form.get_by_label("Account name").fill("bad name!")
    form.get_by_role("button", name="Generate script").click()
    expect(page.locator("#param-username-error")).to_be_visible()
    report["generate"] = _axe_violations(page)
    page.goto("/#/history")
    expect(page.get_by_role("heading", name="Generation history")).to_be_visible()
    report["history"] = _axe_violations(page)
    page.goto("/#/settings")
    expect(page.get_by_label("Endpoint URL")).to_be_visible()
    # The month so far, from GET /api/v1/usage.
    expect(page.locator("#usage-cost")).to_have_text(re.compile(r"^\$\d+\.\d{2}$"))
    expect(page.locator("#usage-budget")).to_have_text("None set")
    report["settings"] = _axe_violations(page)
    if _pilot_available(stack, demo):
        page.goto("/#/sessions")
        expect(page.get_by_label("Title")).to_be_visible()
        report["sessions"] = _axe_violations(page)
        session_id = _api_session(
            stack, demo, "VPN drops every hour", [("symptom", "The tunnel drops at :00")]
        )
        page.goto(f"/#/sessions/{session_id}")
        expect(page.locator(".fact-group[data-kind='symptom'] li")).to_have_count(1)
        expect(page.locator("#preview-panel")).to_have_attribute(
            "data-state", "ready", timeout=45_000
        )
        report["session"] = _axe_violations(page)
    found = {screen: problems for screen, problems in report.items() if problems}
    assert not found, json.dumps(found, indent=2)


def test_settings_builds_the_form_from_kinds_tests_and_removes(
    tab: Tab, stack: RunningStack, demo: Demo
) -> None:
    """The owner picks Zendesk, fills the fields the kinds endpoint describes, saves, tests
    against the Zendesk fake and removes it; the API token never comes back to the page."""
    from tests.support.fake_saas import ZendeskFake

    page = tab.page
    LoginPage(page).sign_in(OWNER)
    page.goto("/#/settings")
    expect(page.get_by_label("Endpoint URL")).to_be_visible()
    with ZendeskFake() as fake:
        page.get_by_label("Ticketing system").select_option("zendesk")
        page.get_by_label("Base URL").fill(fake.base_url)
        page.get_by_label("Agent e-mail").fill(fake.email)
        page.get_by_label("API token").fill(fake.token)
        page.get_by_role("button", name="Save Zendesk").click()
        expect(page.locator("#ticketing-current")).to_contain_text("Zendesk")
        expect(page.get_by_label("API token")).to_have_value("")
        expect(page.locator("#ticketing-fields")).to_contain_text("Stored: leave empty to keep it.")
        assert fake.token not in page.content()

        page.get_by_label("Ticket to read (optional)").fill("4711")
        page.get_by_role("button", name="Test").click()
        expect(page.locator("#ticketing-test-result")).to_have_text(
            "OK: ticket 4711 found: Printer offline"
        )
        assert not _axe_violations(page)

        page.get_by_role("button", name="Remove").click()
        expect(page.locator("#ticketing-current")).to_contain_text("No ticketing integration")
    response = stack.api("GET", "/api/v1/integrations/ticketing", demo.tokens["owner"])
    assert response.status_code == 404


# ── What a new user tripped over in the first hour ─────────────────────────


LONG_SCRIPT_LINE = (
    "Get-WinEvent -FilterHashtable @{LogName='Microsoft-Windows-DNS-Client/Operational'; "
    "Id=1014; StartTime=(Get-Date).AddHours(-24)} -MaxEvents 500 | Select-Object TimeCreated, "
    "Id, LevelDisplayName, Message | Export-Csv -Path C:\\Temp\\dns-client-events.csv "
    "-NoTypeInformation"
)


def _session_with_long_fix(stack: RunningStack, demo: Demo) -> str:
    """A session whose active fix carries a script with one very long line (written the way
    the assistant's [SUGGEST_FIX] block is stored)."""
    from shared.db import db
    from shared.models import SuggestedFix

    session_id = _api_session(
        stack,
        demo,
        "Name resolution fails for intranet",
        [("symptom", "nslookup intranet.corp times out on three laptops")],
    )
    with db.transaction() as session:
        session.add(
            SuggestedFix(
                session_id=uuid.UUID(session_id),
                account_id=uuid.UUID(demo.account_id),
                title="Collect the DNS client log",
                summary="Export the last day of DNS client events.",
                steps=["Run the script", "Attach the CSV to the ticket"],
                script=f"$ErrorActionPreference = 'Stop'\n{LONG_SCRIPT_LINE}\n",
            )
        )
    return session_id


def _overlaps(boxes: dict[str, dict[str, float]]) -> list[str]:
    names = list(boxes)
    found = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            p, q = boxes[a], boxes[b]
            dx = min(p["right"], q["right"]) - max(p["left"], q["left"])
            dy = min(p["bottom"], q["bottom"]) - max(p["top"], q["top"])
            if dx > 0.5 and dy > 0.5:
                found.append(f"{a} overlaps {b} by {dx:.0f}x{dy:.0f}px")
    return found


def test_long_script_lines_scroll_inside_their_box_and_no_panel_overlaps_another(
    browser: Any, stack: RunningStack, demo: Demo
) -> None:
    _require_session_services(stack, demo)
    session_id = _session_with_long_fix(stack, demo)
    for width in (375, 600, 860, 1024, 1280, 1600):
        tab = _open(browser, stack, {"width": width, "height": 900})
        page = tab.page
        try:
            page.goto("/")
            page.evaluate(
                "([t]) => sessionStorage.setItem('rf.console.token', t)",
                [demo.tokens["engineer"]],
            )
            page.goto(f"/#/sessions/{session_id}")
            expect(page.locator("#fix-card pre.code")).to_contain_text("Export-Csv")
            measured = page.evaluate(
                """() => {
                    const box = (el) => {
                        const r = el.getBoundingClientRect();
                        return {left: r.left, right: r.right, top: r.top, bottom: r.bottom};
                    };
                    const panels = {};
                    for (const el of document.querySelectorAll('.session-layout .panel')) {
                        panels[el.id || el.className] = box(el);
                    }
                    const controls = '.fact-form textarea, .fact-actions button';
                    for (const el of document.querySelectorAll(controls)) {
                        panels[`control ${el.id || el.textContent}`] = box(el);
                    }
                    const pre = document.querySelector('#fix-card pre.code');
                    const card = document.querySelector('#fix-card').getBoundingClientRect();
                    return {
                        panels,
                        pageWidth: document.documentElement.scrollWidth,
                        preScrolls: pre.scrollWidth > pre.clientWidth,
                        preInside: pre.getBoundingClientRect().right <= card.right + 0.5,
                    };
                }"""
            )
            panels = {k: v for k, v in measured["panels"].items() if not k.startswith("control")}
            assert len(panels) >= 4, measured
            assert _overlaps(panels) == [], (width, measured["panels"])
            chat = measured["panels"].get("panel chat-panel")
            if chat:
                for name, control in measured["panels"].items():
                    if name.startswith("control"):
                        assert _overlaps({"chat": chat, name: control}) == [], (width, name)
            assert measured["pageWidth"] <= width, (width, measured["pageWidth"])
            assert measured["preScrolls"] and measured["preInside"], (width, measured)
        finally:
            _check_requests(tab, stack)
            page.context.close()


def test_first_hour_console_fixes(tab: Tab, stack: RunningStack, demo: Demo) -> None:
    """Login without developer text, honest runtime pills, the fact editor as a textarea,
    editable details, a session list search box, Copy on the preview, no failed request."""
    _require_session_services(stack, demo)
    page = tab.page
    page.goto("/")
    login_text = page.locator("main").inner_text()
    assert "`" not in login_text and "make run" not in login_text
    LoginPage(page).sign_in(ENGINEER)

    page.goto("/#/library")
    expect(page.locator(".template-card").first).to_be_visible()
    pills = page.locator(".template-card .pill").all_inner_texts()
    assert pills and not [p for p in pills if re.match(r"^~\s*[<>~≤≥]", p)], pills
    labels = page.evaluate(
        """async () => {
            const lib = await import('/static/console/views/library.js');
            const s = await import('/static/console/views/session.js');
            return {
                runtime: [lib.runtimeLabel('< 1 min'), lib.runtimeLabel('5s')],
                generator: [s.generatorLabel({generator: 'offline', model: 'offline'}),
                            s.generatorLabel({generator: 'anthropic', model: 'claude-sonnet-4-6'})],
                plain: s.markdownToPlainText(
                    '## Problem\\n**Bold** and `code`, see [KB](https://kb.example/1)\\n* item'),
            };
        }"""
    )
    assert labels["runtime"] == ["< 1 min", "about 5s"]
    assert labels["generator"] == ["offline", "anthropic · claude-sonnet-4-6"]
    assert labels["plain"] == "Problem\nBold and code, see KB (https://kb.example/1)\n- item"

    long_fact = "The VPN client logs 'IKE SA lifetime expired' every 300 seconds " * 3
    session_id = _api_session(
        stack, demo, "VPN drops every five minutes", [("observation", long_fact.strip())]
    )
    _api_session(stack, demo, "Printer offline on floor 2", [])
    page.goto(f"/#/sessions/{session_id}")
    expect(page.locator("#session-title-heading")).to_have_text("VPN drops every five minutes")
    expect(page.locator("#fix-empty")).to_be_visible()

    # The fact editor is the same kind of box as the add form, and holds the whole text.
    page.locator(".fact").first.get_by_role("button", name=re.compile("^Edit fact")).click()
    editor = page.locator(".fact-edit-input")
    assert editor.evaluate("el => el.tagName") == "TEXTAREA"
    assert editor.input_value() == long_fact.strip()
    page.keyboard.press("Escape")

    # Title, ticket reference and problem are editable on the session page.
    page.get_by_role("button", name="Edit details").click()
    page.get_by_label("Title").fill("VPN drops every 5 minutes")
    page.get_by_label("Ticket reference", exact=True).first.fill("INC-2077")
    page.get_by_label("Problem").fill("Users on the Cisco client lose the tunnel.")
    page.get_by_role("button", name="Save details").click()
    expect(page.locator("#session-title-heading")).to_have_text("VPN drops every 5 minutes")
    expect(page.locator("#session-problem-text")).to_contain_text("lose the tunnel")
    saved = stack.api("GET", f"/api/v1/ai-sessions/{session_id}", demo.tokens["engineer"]).json()
    assert (saved["title"], saved["ticket_ref"], saved["problem"]) == (
        "VPN drops every 5 minutes",
        "INC-2077",
        "Users on the Cisco client lose the tunnel.",
    )

    # Copy on the preview: markdown and plain text.
    SessionPage(page).expect_preview(saved["state_version"])
    page.locator("#preview-copy-markdown").click()
    expect(page.locator("#preview-copy .copy-status")).to_have_text("Copied.")
    copied = page.evaluate("navigator.clipboard.readText()")
    preview = stack.api(
        "GET",
        f"/api/v1/ai-sessions/{session_id}/resolution-note/preview?wait=30",
        demo.tokens["engineer"],
    ).json()
    assert copied == preview["markdown"] and "## Problem" in copied
    page.locator("#preview-copy-text").click()
    plain = page.evaluate("navigator.clipboard.readText()")
    assert plain.startswith("Problem") and "##" not in plain and "**" not in plain
    assert "offline · offline" not in page.locator("#preview-meta").inner_text()

    # The session list has a search box.
    page.goto("/#/sessions?status=all")
    expect(page.locator("#session-list .session-link")).to_have_count(2)
    page.get_by_label("Search sessions").fill("inc-2077")
    expect(page.locator("#session-list .session-link")).to_have_count(1)
    expect(page.locator("#session-list .session-link")).to_have_text("VPN drops every 5 minutes")

    paths = [urlsplit(r.url).path for r in tab.requests]
    assert not [p for p in paths if p.endswith("/suggested-fixes/active")]
    assert tab.errors == [], tab.errors  # not even a failed request's console line


def test_resolved_session_shows_the_final_note_once_with_copy(
    tab: Tab, stack: RunningStack, demo: Demo
) -> None:
    _require_session_services(stack, demo)
    session_id = _api_session(
        stack, demo, "Outlook prompts for a password", [("confirmed", "ADAL is disabled")]
    )
    resolved = stack.api(
        "POST",
        f"/api/v1/ai-sessions/{session_id}/resolve",
        demo.tokens["engineer"],
        json={"resolution": "Re-enabled modern authentication for Outlook"},
    )
    assert resolved.status_code == 202, resolved.text

    def final_note() -> Any:
        answer = stack.api(
            "GET", f"/api/v1/ai-sessions/{session_id}/resolution-note", demo.tokens["engineer"]
        )
        return (
            answer.json() if answer.status_code == 200 and answer.json().get("markdown") else None
        )

    _wait_until(lambda: final_note() is not None, 90, "the final note")
    note = final_note()
    page = tab.page
    LoginPage(page).sign_in(ENGINEER)
    page.goto(f"/#/sessions/{session_id}")
    expect(page.locator("#final-note-body")).to_be_visible(timeout=30_000)
    expect(page.locator("#preview-panel")).to_be_hidden()
    visible_notes = page.evaluate(
        """() => [...document.querySelectorAll('.markdown')]
                .filter((el) => el.offsetParent !== null && el.textContent.trim()).length"""
    )
    assert visible_notes == 1
    page.locator("#final-note-copy-markdown").click()
    expect(page.locator(".final-note .copy-status")).to_have_text("Copied.")
    assert page.evaluate("navigator.clipboard.readText()") == note["markdown"]
    page.locator("#final-note-copy-text").click()
    assert "##" not in page.evaluate("navigator.clipboard.readText()")


def test_history_generates_again_with_the_stored_values_sensitive_left_empty(
    tab: Tab, stack: RunningStack, demo: Demo
) -> None:
    token = demo.tokens["engineer"]
    values = {
        "username": "kiosk07",
        "new_password": "Sup3r-Secret-Canary-91",
        "computer": "frontdesk-02",
        "expire_days": 30,
    }
    generated = stack.api(
        "POST",
        "/api/v1/scripts/generate",
        token,
        json={"template_id": demo.template_id, "parameters": values},
    )
    assert generated.status_code == 200, generated.text
    listed = stack.api("GET", "/api/v1/scripts/generations", token)
    assert listed.headers["X-Total-Count"] == "1"
    page = tab.page
    LoginPage(page).sign_in(ENGINEER)
    page.goto("/#/history")
    expect(page.locator("#history-table tbody tr")).to_have_count(1)
    expect(page.locator("main")).to_contain_text("1 of 1 shown")
    page.get_by_role("link", name=re.compile("^Generate .* again with these values")).click()
    form = page.locator("form").filter(has=page.get_by_label("Account name"))
    expect(form.get_by_label("Account name")).to_have_value("kiosk07")
    expect(form.get_by_label("Computer")).to_have_value("frontdesk-02")
    expect(form.get_by_label("Password expires in (days)")).to_have_value("30")
    expect(form.get_by_label("New password")).to_have_value("")
    stored = page.evaluate("JSON.stringify({...sessionStorage})")
    assert "Sup3r-Secret-Canary-91" not in stored and "rf.console.prefill" not in stored


def test_api_docs_render_offline_from_the_products_own_origin(
    tab: Tab, stack: RunningStack
) -> None:
    """Swagger UI comes from the gateway (no CDN): it renders with every request on the
    product's origin, and its Content-Security-Policy blocks nothing it needs."""
    page = tab.page
    outside: list[str] = []
    origin = urlsplit(stack.base_url).netloc

    def only_ours(route: Any) -> None:
        if urlsplit(route.request.url).netloc != origin:
            outside.append(route.request.url)
            route.abort()
        else:
            route.continue_()

    page.route("**/*", only_ours)
    page.goto("/api/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("ResolutionFlow")
    expect(page.locator(".swagger-ui .opblock").first).to_be_visible()
    assert outside == []
    csp = page.evaluate("fetch('/api/docs').then((r) => r.headers.get('content-security-policy'))")
    assert "script-src 'self'" in csp and "http" not in csp
    assert tab.errors == [], tab.errors  # a CSP violation is logged as an error


SPOOLER_FIX_SCRIPT = (
    "Invoke-Command -ComputerName PRN-SRV01 -ScriptBlock {\n"
    "    Restart-Service -Name Spooler -Force\n"
    "}\n"
)


def test_a_fix_becomes_a_draft_edited_beside_its_findings_and_similar_sessions_show(
    tab: Tab, stack: RunningStack, demo: Demo
) -> None:
    """The session page lists the similar resolved session; "Draft a template" on a fix with
    a script opens the draft in the editor (name, description, parameters, body) with the
    static check beside it; saving and publishing go through the API."""
    from shared.db import db
    from shared.models import SuggestedFix

    _require_session_services(stack, demo)
    token = demo.tokens["engineer"]
    past = _api_session(
        stack,
        demo,
        "Print queue stuck on PRN-SRV01",
        [("symptom", "Print jobs stay queued on PRN-SRV01 and cannot be cancelled")],
    )
    resolved = stack.api(
        "POST",
        f"/api/v1/ai-sessions/{past}/resolve",
        token,
        json={"resolution": "Restarted the print spooler on PRN-SRV01"},
    )
    assert resolved.status_code == 202, resolved.text
    session_id = _api_session(
        stack,
        demo,
        "Printer queue frozen on the print server",
        [("symptom", "Jobs stay in the print queue and will not cancel")],
    )
    with db.transaction() as session:
        session.add(
            SuggestedFix(
                session_id=uuid.UUID(session_id),
                account_id=uuid.UUID(demo.account_id),
                title="Restart the spooler on the print server",
                summary="Restarts the print spooler on PRN-SRV01.",
                steps=["Restart the spooler", "Check the queue drains"],
                script=SPOOLER_FIX_SCRIPT,
            )
        )

    page = tab.page
    LoginPage(page).sign_in(ENGINEER)
    page.goto(f"/#/sessions/{session_id}")
    similar = page.locator("#similar-sessions")
    expect(similar.locator(f"li[data-session-id='{past}']")).to_contain_text(
        "Restarted the print spooler on PRN-SRV01"
    )
    page.locator("#fix-card [data-decision='draft_template']").click()
    link = page.locator("#fix-draft-link")
    expect(link).to_be_visible()
    link.click()

    expect(page.get_by_role("heading", name="Template draft", level=1)).to_be_visible()
    expect(page.locator("#draft-state")).to_have_text("Draft: not in the library yet")
    expect(page.locator("#draft-name")).to_have_value("Restart the spooler on the print server")
    expect(page.locator("#draft-param-computer-default")).to_have_value("PRN-SRV01")
    expect(page.locator("#draft-param-computer-type")).to_have_value("hostname")
    expect(page.locator("#draft-body")).to_have_value(re.compile(r"-ComputerName \{\{computer\}\}"))
    expect(page.locator("#draft-findings-panel")).to_be_visible()
    editor = page.locator("#draft-form").bounding_box()
    findings = page.locator("#draft-findings-panel").bounding_box()
    assert editor and findings and findings["x"] >= editor["x"] + editor["width"] - 1

    # A body the static check flags shows its finding beside the editor once saved.
    page.locator("#draft-name").fill("Restart the print spooler remotely")
    page.locator("#draft-body").fill(
        page.locator("#draft-body").input_value() + "Restart-Computer -ComputerName {{computer}}\n"
    )
    page.locator("#draft-save").click()
    expect(page.locator("#draft-status")).to_have_text("Draft saved.")
    expect(page.locator("#draft-findings-list li[data-rule='RF1004']")).to_be_visible()
    saved = stack.api("GET", f"/api/v1/scripts/templates/{_draft_id(page)}", token).json()
    assert saved["name"] == "Restart the print spooler remotely"
    assert saved["status"] == "draft"

    page.locator("#draft-publish").click()
    expect(page.locator("#draft-status")).to_contain_text("Published to your team's library.")
    expect(page.locator("#draft-state")).to_have_text("Published")
    published = stack.api("GET", f"/api/v1/scripts/templates/{_draft_id(page)}", token).json()
    assert published["status"] == "published" and published["scope"] == "team"
    _check_requests(tab, stack)


def _draft_id(page: Any) -> str:
    match = re.search(r"#/templates/([^/]+)/edit", page.url)
    assert match, page.url
    return match.group(1)


def test_escalation_preview_then_keep_as_kb_article_and_find_it_in_the_knowledge_base(
    tab: Tab, stack: RunningStack, demo: Demo
) -> None:
    """An active session previews its escalation handoff; once resolved it offers its KB
    article instead, "Keep as KB article" keeps it, and the knowledge base lists, finds and
    opens it."""
    _require_session_services(stack, demo)
    token = demo.tokens["engineer"]
    title = "Scanner share unreachable from the copier"
    session_id = _api_session(
        stack,
        demo,
        title,
        [
            ("symptom", "The copier reports that the scan share cannot be reached"),
            ("ruled_out", "The copier's network cable and switch port are fine"),
        ],
    )
    page = tab.page
    LoginPage(page).sign_in(ENGINEER)
    session_page = SessionPage(page).open(session_id)
    expect(session_page.title).to_have_text(title)
    expect(page.get_by_role("button", name="Keep as KB article")).to_be_hidden()
    session_page.preview_escalation()
    expect(session_page.escalation_body).to_contain_text("Ruled out", timeout=PREVIEW_TIMEOUT_MS)
    expect(session_page.escalation_body).to_contain_text("network cable")

    resolved = stack.api(
        "POST",
        f"/api/v1/ai-sessions/{session_id}/resolve",
        token,
        json={"resolution": "Re-enabled SMB2 on the file server for the copier"},
    )
    assert resolved.status_code == 202, resolved.text
    session_page.open(session_id)
    page.reload()
    expect(session_page.status).to_have_text("resolved")
    expect(page.get_by_role("button", name="Preview escalation")).to_be_hidden()
    session_page.keep_as_kb_article()
    expect(session_page.kept_link).to_be_visible(timeout=PREVIEW_TIMEOUT_MS)
    expect(session_page.kb_article_body).to_contain_text("Resolution")
    kept = stack.api("GET", "/api/v1/kb-articles", token).json()
    article = next(a for a in kept if a["session_id"] == session_id)

    kb = KnowledgeBasePage(page).open_from_nav()
    expect(kb.links.filter(has_text=article["title"])).to_have_count(1)
    kb.search("copier scan share")
    expect(kb.status).to_contain_text("matching")
    expect(kb.links.first).to_have_text(article["title"])
    kb.search("nothing-like-this-anywhere")
    expect(kb.status).to_have_text("No article matches “nothing-like-this-anywhere”.")
    kb.search("copier")
    kb.open_article(article["title"])
    expect(kb.article_title).to_have_text(article["title"])
    expect(kb.article_body).to_contain_text("SMB2")
    _check_requests(tab, stack)
