"""deploy/nginx/nginx.conf in front of the real services, each alone as deploy runs them.

Four gunicorn servers (`-c deploy/gunicorn.conf.py`, one process each) serve `services.scripts`,
pilot (`app.pilot`, its contracts wired), `services.notes` and the gateway app ("web") on free
loopback ports with the test settings; Debian's nginx runs the shipped config (rendered by
test_nginx.render_config) in front of them. Every route family is driven through nginx with a
real bearer token, and each answer is traced to the service that produced it: every request
carries its own X-Request-ID, and the access line with that id must be in that service's JSON
log (and in no other service's).
"""

from __future__ import annotations

import http.client
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from test_nginx import NGINX_CONF, nginx_test, render_config

from shared.config import PROJECT_ROOT, Settings
from tests.support.workers import child_env, wait_until

APPS = {
    "scripts": "services.scripts:create_app()",
    "pilot": "app.pilot:create_app()",
    "notes": "services.notes:create_app()",
    "web": "app.gateway:create_app()",
}
# The `service` every access line of that server is bound to (shared.observability.init_app).
LOG_SERVICE = {"scripts": "scripts", "pilot": "pilot", "notes": "notes", "web": "gateway"}
GUNICORN_CONF = PROJECT_ROOT / "deploy" / "gunicorn.conf.py"
PASSWORD = "correct-horse-battery-1"
START_TIMEOUT_S = 60.0
# A session that does not exist: the notes service answers 404 (401 without a valid token).
PREVIEW_OF_NOBODY = f"/api/v1/ai-sessions/{uuid.UUID(int=7)}/resolution-note/preview"


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def request_ids(self) -> list[str]:
        return self.headers.get_all("X-Request-ID") or []

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Stack:
    port: int
    prefix: Path
    logs: dict[str, Path]
    token: str = ""

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        request_id: str | None = None,
        auth: bool = True,
        headers: dict[str, str] | None = None,
    ) -> Response:
        all_headers = dict(headers or {})
        if auth and self.token:
            all_headers["Authorization"] = f"Bearer {self.token}"
        if request_id is not None:
            all_headers["X-Request-ID"] = request_id
        body = None
        if json_body is not None:
            body = json.dumps(json_body).encode()
            all_headers["Content-Type"] = "application/json"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=all_headers)
            resp = conn.getresponse()
            return Response(resp.status, resp.headers, resp.read())
        finally:
            conn.close()

    def access_lines(self, service: str) -> list[dict[str, Any]]:
        lines = []
        for raw in self.logs[service].read_text(errors="replace").splitlines():
            raw = raw.strip()
            if not raw.startswith("{"):
                continue
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            if entry.get("logger") == "rf.access":
                lines.append(entry)
        return lines

    def served_by(self, request_id: str) -> dict[str, list[dict[str, Any]]]:
        """The access lines carrying `request_id`, per service log."""
        return {
            name: [e for e in self.access_lines(name) if e.get("request_id") == request_id]
            for name in APPS
        }


def _start_gunicorn(
    name: str, port: int, env: dict[str, str], prefix: Path
) -> subprocess.Popen[bytes]:
    server_env = dict(env)
    server_env.update(
        {
            "PORT": str(port),
            "BIND_HOST": "127.0.0.1",
            "WEB_CONCURRENCY": "1",
            "GUNICORN_THREADS": "4",
            "SERVICE_NAME": f"rf-test-{name}",
            "PROMETHEUS_MULTIPROC_DIR": str(prefix / f"prometheus-{name}"),
            "LOG_LEVEL": "INFO",
        }
    )
    with open(prefix / f"{name}.log", "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF), APPS[name]],
            cwd=PROJECT_ROOT,
            env=server_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _healthy(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def _stop(process: subprocess.Popen[Any], sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@pytest.fixture(scope="module")
def stack(migrated: Settings, nginx_bin: str, free_port: Callable[[], int]) -> Iterator[Stack]:
    # Not pytest's tmp_path: nginx workers may run as `nobody` and must traverse the prefix.
    prefix = Path(tempfile.mkdtemp(prefix="rf-nginx-services-"))
    prefix.chmod(0o755)
    env = child_env(migrated)  # no ANTHROPIC_*: the LLM runs offline
    ports = {name: free_port() for name in APPS}
    servers: dict[str, subprocess.Popen[bytes]] = {}
    nginx: subprocess.Popen[bytes] | None = None
    try:
        for name, port in ports.items():
            servers[name] = _start_gunicorn(name, port, env, prefix)
        for name, port in ports.items():

            def up(name: str = name, port: int = port) -> bool:
                if servers[name].poll() is not None:
                    log = (prefix / f"{name}.log").read_text(errors="replace")[-3000:]
                    pytest.fail(f"gunicorn for {name} exited:\n{log}")
                return _healthy(port)

            wait_until(up, START_TIMEOUT_S, interval_s=0.1, message=f"gunicorn {name}")

        listen = free_port()
        conf = prefix / "nginx.conf"
        conf.write_text(render_config(NGINX_CONF.read_text(), ports, listen, prefix))
        checked = nginx_test(nginx_bin, conf, prefix)
        assert checked.returncode == 0, checked.stderr
        with open(prefix / "nginx.stderr", "wb") as stderr:
            nginx = subprocess.Popen(
                [nginx_bin, "-e", str(prefix / "error.log"), "-p", str(prefix), "-c", str(conf)]
                + ["-g", "daemon off;"],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )

        def nginx_up() -> bool:
            if nginx is not None and nginx.poll() is not None:
                pytest.fail(f"nginx exited: {(prefix / 'error.log').read_text()}")
            try:
                http.client.HTTPConnection("127.0.0.1", listen, timeout=1).connect()
                return True
            except OSError:
                return False

        wait_until(nginx_up, 10, message="nginx to listen")
        yield Stack(listen, prefix, {name: prefix / f"{name}.log" for name in APPS})
    finally:
        if nginx is not None:
            _stop(nginx, signal.SIGQUIT)
        for process in servers.values():
            _stop(process)
        shutil.rmtree(prefix, ignore_errors=True)


def _rid(label: str) -> str:
    return f"rf-nx.{label}-{uuid.uuid4().hex[:12]}"


def _assert_served(stack: Stack, request_id: str, service: str, route: str | None = None) -> None:
    """The access line of `request_id` is in `service`'s log, and in no other server's."""

    def found() -> dict[str, list[dict[str, Any]]]:
        by = stack.served_by(request_id)
        return by if by[service] else {}

    by = wait_until(found, 10, message=f"{service}'s access line for {request_id}")
    assert [name for name, lines in by.items() if lines] == [service], by
    [line] = by[service]
    assert line["service"] == LOG_SERVICE[service]
    if route is not None:
        assert line["route"] == route, line


def _call(
    stack: Stack,
    label: str,
    service: str,
    method: str,
    path: str,
    *,
    expect: tuple[int, ...] = (200,),
    route: str | None = None,
    **kw: Any,
) -> Response:
    """One request with a fresh client X-Request-ID: answered, echoed, served by `service`."""
    rid = _rid(label)
    resp = stack.request(method, path, request_id=rid, **kw)
    assert resp.status in expect, (method, path, resp.status, resp.body[:500])
    assert resp.request_ids == [rid], (path, resp.request_ids)
    _assert_served(stack, rid, service, route)
    return resp


def test_every_route_family_reaches_its_service(stack: Stack, make_user: Any, library: Any) -> None:
    user = make_user("owner", password=PASSWORD)

    # ── scripts: tokens and the library ──────────────────────────────────────────────────
    token = _call(
        stack,
        "token",
        "scripts",
        "POST",
        "/api/v1/auth/token",
        json_body={"email": user.email, "password": PASSWORD},
        auth=False,
        route="/api/v1/auth/token",
    ).json()
    assert token["token_type"] == "bearer" and token["access_token"]
    stack.token = token["access_token"]

    me = _call(stack, "me", "scripts", "GET", "/api/v1/auth/me", route="/api/v1/auth/me").json()
    assert me["email"] == user.email and me["role"] == "owner"

    categories = _call(stack, "categories", "scripts", "GET", "/api/v1/scripts/categories").json()
    assert categories and all("slug" in c for c in categories)

    templates = _call(
        stack, "templates", "scripts", "GET", "/api/v1/scripts/templates?search=password"
    ).json()
    reset = next(t for t in templates if t["slug"] == "ad-reset-password")

    # ── pilot: a session, a fact, a chat turn (offline LLM) ──────────────────────────────
    session = _call(
        stack,
        "session",
        "pilot",
        "POST",
        "/api/v1/ai-sessions",
        json_body={"title": "VPN drops", "problem": "The VPN drops every hour"},
        expect=(201,),
        route="/api/v1/ai-sessions",
    ).json()
    sid = session["id"]
    fact = _call(
        stack,
        "fact",
        "pilot",
        "POST",
        f"/api/v1/ai-sessions/{sid}/facts",
        json_body={"text": "Confirmed: the adapter renews its lease hourly", "kind": "confirmed"},
        expect=(201,),
        route="/api/v1/ai-sessions/<uuid:session_id>/facts",
    ).json()
    assert fact["state_version"] >= 1
    turn = _call(
        stack,
        "chat",
        "pilot",
        "POST",
        f"/api/v1/ai-sessions/{sid}/messages",
        json_body={"content": "What should I check next?"},
        expect=(201,),
        route="/api/v1/ai-sessions/<uuid:session_id>/messages",
    ).json()
    assert turn["state_version"] > fact["state_version"]
    listed = _call(stack, "messages", "pilot", "GET", f"/api/v1/ai-sessions/{sid}/messages")
    assert [m["role"] for m in listed.json()][:2] == ["user", "assistant"]

    # ── scripts: a generation linked to the session ──────────────────────────────────────
    generated = _call(
        stack,
        "generate",
        "scripts",
        "POST",
        "/api/v1/scripts/generate",
        json_body={
            "template_id": reset["id"],
            "parameters": {"username": "jdoe", "new_password": "Temp-Pass-4417!"},
            "ai_session_id": sid,
        },
        route="/api/v1/scripts/generate",
    ).json()
    assert "jdoe" in generated["script"]
    assert generated["state_version"] == turn["state_version"] + 1

    # ── notes: the preview (no worker here: 202 pending, or 200 if generated inline) ─────
    preview = _call(
        stack,
        "preview",
        "notes",
        "GET",
        f"/api/v1/ai-sessions/{sid}/resolution-note/preview?wait=0",
        expect=(200, 202),
        route="/api/v1/ai-sessions/<uuid:session_id>/resolution-note/preview",
    )
    body = preview.json()
    assert body["session_id"] == sid and body["kind"] == "resolution_note"
    assert body["state_version"] == generated["state_version"]
    if preview.status == 202:
        assert body["status"] == "pending" and preview.headers["Retry-After"]
    else:
        assert "## Problem" in body["markdown"]

    missing = _call(
        stack, "ticketing-none", "notes", "GET", "/api/v1/integrations/ticketing", expect=(404,)
    ).json()
    assert missing["code"] == 404
    hook = "http://127.0.0.1:9/hooks/ticketing"
    created = _call(
        stack,
        "ticketing-put",
        "notes",
        "PUT",
        "/api/v1/integrations/ticketing",
        json_body={"url": hook},
    ).json()
    assert created["url"] == hook and created["secret_generated"] is True
    ticketing = _call(
        stack,
        "ticketing",
        "notes",
        "GET",
        "/api/v1/integrations/ticketing",
        route="/api/v1/integrations/ticketing",
    ).json()
    assert ticketing["url"] == hook and "secret" not in ticketing

    # ── per-service OpenAPI documents ─────────────────────────────────────────────────────
    own_paths = {
        "scripts": "/api/v1/scripts/generate",
        "pilot": "/api/v1/ai-sessions/{session_id}/facts",
        "notes": "/api/v1/ai-sessions/{session_id}/resolution-note/preview",
    }
    for service, own in own_paths.items():
        spec = _call(
            stack, f"openapi-{service}", service, "GET", f"/api/v1/openapi/{service}.json"
        ).json()
        assert own in spec["paths"], (service, sorted(spec["paths"]))
        others = [p for s, p in own_paths.items() if s != service]
        assert not any(p in spec["paths"] for p in others), (service, sorted(spec["paths"]))

    # ── web: health of the stack and the API docs page ────────────────────────────────────
    docs = _call(stack, "docs", "web", "GET", "/api/docs", auth=False, route="/api/docs")
    assert docs.headers["Content-Type"].startswith("text/html")
    for service in own_paths:
        assert f"/api/v1/openapi/{service}.json".encode() in docs.body

    # /healthz is logged at DEBUG (probes), so its body names the server instead.
    rid = _rid("healthz")
    health = stack.request("GET", "/healthz", request_id=rid, auth=False)
    assert health.status == 200 and health.request_ids == [rid]
    assert health.json() == {
        "status": "ok",
        "service": "gateway",
        "checks": {"database": "ok", "redis": "ok"},
    }


def test_a_bearer_token_is_checked_by_the_service_behind_nginx(
    stack: Stack, make_user: Any
) -> None:
    """Authentication is the services' job: nginx passes the header through, untouched."""
    user = make_user("engineer")
    stack.token = user.token
    me = _call(stack, "me-ok", "scripts", "GET", "/api/v1/auth/me").json()
    assert me["email"] == user.email
    stack.token = user.token[:-4] + "AAAA"
    _call(stack, "me-bad", "scripts", "GET", "/api/v1/auth/me", expect=(401,))
    _call(stack, "sessions-bad", "pilot", "GET", "/api/v1/ai-sessions", expect=(401,))
    _call(stack, "preview-bad", "notes", "GET", f"{PREVIEW_OF_NOBODY}?wait=0", expect=(401,))


def test_request_ids_are_generated_when_absent_and_reach_the_service(
    stack: Stack, make_user: Any
) -> None:
    stack.token = make_user("engineer").token
    for path, service, status in (
        ("/api/v1/auth/me", "scripts", 200),
        ("/api/v1/ai-sessions", "pilot", 200),
        (f"{PREVIEW_OF_NOBODY}?wait=0", "notes", 404),
        ("/api/docs", "web", 200),
    ):
        resp = stack.request("GET", path)
        assert resp.status == status, (path, resp.status, resp.body[:300])
        [rid] = resp.request_ids
        assert re.fullmatch(r"[0-9a-f]{32}", rid), rid
        # The id nginx made is the one the service logged and echoed.
        _assert_served(stack, rid, service)
    # A malformed client id is replaced before it reaches a service.
    resp = stack.request("GET", "/api/v1/auth/me", request_id="bad id;<x>")
    assert resp.status == 200
    [rid] = resp.request_ids
    assert rid != "bad id;<x>" and re.fullmatch(r"[0-9a-f]{32}", rid)
    _assert_served(stack, rid, "scripts")


def test_a_chat_turn_streams_through_nginx(stack: Stack, make_user: Any) -> None:
    stack.token = make_user("engineer").token
    sid = _call(
        stack,
        "sse-session",
        "pilot",
        "POST",
        "/api/v1/ai-sessions",
        json_body={"title": "Printer offline"},
        expect=(201,),
    ).json()["id"]
    resp = _call(
        stack,
        "sse",
        "pilot",
        "POST",
        f"/api/v1/ai-sessions/{sid}/messages",
        json_body={"content": "The spooler is stopped"},
        headers={"Accept": "text/event-stream"},
    )
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    events = re.findall(r"^event: (\w+)$", resp.body.decode(), re.M)
    assert events and events[-1] == "done", resp.body[:500]
    done = resp.body.decode().rsplit("event: done\ndata: ", 1)[1].split("\n", 1)[0]
    assert json.loads(done)["state_version"] >= 1
