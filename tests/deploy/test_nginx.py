"""deploy/nginx/nginx.conf: syntax (`nginx -t`) and routing, in front of stand-in upstreams.

The upstream hosts (scripts:8001, ...) are rewritten to loopback ports where tiny WSGI apps
answer with their service name, the path and the X-Request-ID they received; every writable
path is moved into a temporary prefix. nginx runs in the foreground and is stopped at teardown.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

NGINX_CONF = Path(__file__).resolve().parents[2] / "deploy" / "nginx" / "nginx.conf"
UPSTREAMS = {"scripts": 8001, "pilot": 8002, "notes": 8003, "web": 8000}
CANARY = "CANARY-query-7d1"
SSE_PAUSE_S = 1.5


def render_config(text: str, ports: dict[str, int], listen: int, prefix: Path) -> str:
    """The shipped config with loopback upstreams, a loopback listener and paths under prefix."""
    for name, container_port in UPSTREAMS.items():
        pattern = rf"server\s+{name}:{container_port}\s*;"
        text, count = re.subn(pattern, f"server 127.0.0.1:{ports[name]};", text)
        assert count == 1, f"nginx.conf must have exactly one `server {name}:{container_port};`"
    text, count = re.subn(r"listen\s+8000\s*;", f"listen 127.0.0.1:{listen};", text)
    assert count == 1, "nginx.conf must listen on 8000"
    text = text.replace("/tmp/", f"{prefix}/")
    text = re.sub(r"worker_processes\s+\w+;", "worker_processes 2;", text)
    text = text.replace("error_log /dev/stderr", f"error_log {prefix}/error.log")
    text = text.replace("access_log /dev/stdout", f"access_log {prefix}/access.log")
    return text


def stand_in(service: str) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if (
            service == "pilot"
            and path.endswith("/messages")
            and environ["REQUEST_METHOD"] == "POST"
        ):
            start_response(
                "200 OK", [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")]
            )

            def stream() -> Iterator[bytes]:
                yield b'event: delta\ndata: {"text": "first"}\n\n'
                time.sleep(SSE_PAUSE_S)
                yield b'event: done\ndata: {"text": "second"}\n\n'

            return stream()
        body = json.dumps(
            {
                "service": service,
                "method": environ["REQUEST_METHOD"],
                "path": path,
                "query": environ.get("QUERY_STRING", ""),
                "request_id": environ.get("HTTP_X_REQUEST_ID"),
                "forwarded_for": environ.get("HTTP_X_FORWARDED_FOR"),
                "forwarded_proto": environ.get("HTTP_X_FORWARDED_PROTO"),
            }
        ).encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        if environ.get("HTTP_X_REQUEST_ID"):
            # Like the real services, the stand-ins echo the id; nginx must not double it.
            headers.append(("X-Request-ID", environ["HTTP_X_REQUEST_ID"]))
        start_response("200 OK", headers)
        return [body]

    return app


@dataclass
class Proxy:
    port: int
    prefix: Path

    def request(
        self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=body or None, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.headers, resp.read()
        finally:
            conn.close()

    def upstream(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        status, headers, body = self.request(method, path, **kw)
        assert status == 200, (path, status, body[:300])
        data: dict[str, Any] = json.loads(body)
        data["_response_request_id"] = headers.get_all("X-Request-ID")
        return data


@pytest.fixture(scope="module")
def prefix() -> Iterator[Path]:
    # Not pytest's tmp_path: nginx workers may run as `nobody` and must traverse the prefix.
    path = Path(tempfile.mkdtemp(prefix="rf-nginx-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def upstream_ports() -> Iterator[dict[str, int]]:
    servers = []
    ports: dict[str, int] = {}
    for name in UPSTREAMS:
        server = make_server("127.0.0.1", 0, stand_in(name), threaded=True)
        ports[name] = server.server_port
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    yield ports
    for server in servers:
        server.shutdown()
        server.server_close()


def nginx_test(nginx_bin: str, conf: Path, prefix: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            nginx_bin,
            "-t",
            "-q",
            "-e",
            str(prefix / "error.log"),
            "-p",
            str(prefix),
            "-c",
            str(conf),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.fixture(scope="module")
def proxy(
    nginx_bin: str, prefix: Path, upstream_ports: dict[str, int], free_port: Any
) -> Iterator[Proxy]:
    listen = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(render_config(NGINX_CONF.read_text(), upstream_ports, listen, prefix))
    checked = nginx_test(nginx_bin, conf, prefix)
    assert checked.returncode == 0, checked.stderr
    stderr = (prefix / "nginx.stderr").open("w")
    process = subprocess.Popen(
        [nginx_bin, "-e", str(prefix / "error.log"), "-p", str(prefix), "-c", str(conf)]
        + ["-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                http.client.HTTPConnection("127.0.0.1", listen, timeout=1).connect()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    log = (
                        (prefix / "error.log").read_text()
                        if (prefix / "error.log").exists()
                        else ""
                    )
                    pytest.fail(f"nginx did not start (rc={process.poll()}): {log}")
                time.sleep(0.05)
        yield Proxy(listen, prefix)
    finally:
        process.send_signal(signal.SIGQUIT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        stderr.close()


# --------------------------------------------------------------------------- syntax


def test_shipped_config_passes_nginx_t(nginx_bin: str, prefix: Path, free_port: Any) -> None:
    conf = prefix / "syntax.conf"
    ports = {name: free_port() for name in UPSTREAMS}
    conf.write_text(render_config(NGINX_CONF.read_text(), ports, free_port(), prefix))
    result = nginx_test(nginx_bin, conf, prefix)
    assert result.returncode == 0, result.stderr


def test_nginx_t_rejects_a_broken_config(nginx_bin: str, prefix: Path, free_port: Any) -> None:
    """The syntax check above can fail: the same rendering with one brace removed does."""
    conf = prefix / "broken.conf"
    ports = {name: free_port() for name in UPSTREAMS}
    text = render_config(NGINX_CONF.read_text(), ports, free_port(), prefix)
    conf.write_text(text.replace("location = /metrics {", "location = /metrics", 1))
    assert nginx_test(nginx_bin, conf, prefix).returncode != 0


def test_shipped_config_keeps_writable_paths_under_tmp() -> None:
    text = NGINX_CONF.read_text()
    for directive in ("pid", "client_body_temp_path", "proxy_temp_path"):
        match = re.search(rf"^\s*{directive}\s+(\S+);", text, re.M)
        assert match and match.group(1).startswith("/tmp/"), directive


# --------------------------------------------------------------------------- routing

ROUTES = [
    ("POST", "/api/v1/auth/token", "scripts"),
    ("GET", "/api/v1/auth/me", "scripts"),
    ("GET", "/api/v1/scripts", "scripts"),
    ("GET", "/api/v1/scripts/templates", "scripts"),
    ("POST", "/api/v1/scripts/generate", "scripts"),
    ("GET", "/api/v1/scripts/templates/0b9e/versions", "scripts"),
    ("GET", "/api/v1/openapi/scripts.json", "scripts"),
    ("GET", "/api/v1/openapi/pilot.json", "pilot"),
    ("GET", "/api/v1/openapi/notes.json", "notes"),
    ("GET", "/api/v1/ai-sessions", "pilot"),
    ("POST", "/api/v1/ai-sessions", "pilot"),
    ("GET", "/api/v1/ai-sessions/6f1c2a", "pilot"),
    ("GET", "/api/v1/ai-sessions/6f1c2a/messages", "pilot"),
    ("POST", "/api/v1/ai-sessions/6f1c2a/close", "pilot"),
    ("GET", "/api/v1/ai-sessions/6f1c2a/resolution-note", "notes"),
    ("POST", "/api/v1/ai-sessions/6f1c2a/resolution-note", "notes"),
    ("GET", "/api/v1/ai-sessions/6f1c2a/resolution-note/preview", "notes"),
    ("PUT", "/api/v1/ai-sessions/6f1c2a/resolution-note/export", "notes"),
    # The session id is one path segment; anything else stays with pilot.
    ("GET", "/api/v1/ai-sessions/a/b/resolution-note", "pilot"),
    ("GET", "/api/v1/ai-sessions//resolution-note", "pilot"),
    ("GET", "/api/v1/usage", "pilot"),
    ("PUT", "/api/v1/usage/budget", "pilot"),
    ("GET", "/api/v1/integrations", "notes"),
    ("GET", "/api/v1/integrations/webhooks", "notes"),
    ("POST", "/api/v1/integrations/webhooks/w1/test", "notes"),
    ("GET", "/api/v1/kb-articles", "notes"),
    ("GET", "/api/v1/kb-articles/4b2d", "notes"),
    ("GET", "/", "web"),
    ("GET", "/api/docs", "web"),
    ("GET", "/static/app.js", "web"),
    ("GET", "/healthz", "web"),
    ("GET", "/api/v1/somewhere-else", "web"),
]


@pytest.mark.parametrize(("method", "path", "service"), ROUTES)
def test_route_lands_on_service(proxy: Proxy, method: str, path: str, service: str) -> None:
    got = proxy.upstream(method, path, body=b"{}" if method in {"POST", "PUT"} else b"")
    assert got["service"] == service, (path, got)
    assert got["path"] == path
    assert got["method"] == method


def test_query_string_is_passed_but_not_logged(proxy: Proxy) -> None:
    got = proxy.upstream("GET", f"/api/v1/scripts/templates?q=vpn&token={CANARY}")
    assert got["query"] == f"q=vpn&token={CANARY}"
    deadline = time.monotonic() + 5
    log = proxy.prefix / "access.log"
    # Wait for this request's own entry: an earlier test's request to the same path may
    # already be in the (buffered) log.
    while time.monotonic() < deadline and got["request_id"] not in log.read_text():
        time.sleep(0.05)
    text = log.read_text()
    assert CANARY not in text
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    entry = [e for e in lines if e["path"] == "/api/v1/scripts/templates"][-1]
    assert entry["status"] == 200
    assert entry["request_id"] == got["request_id"]


def test_metrics_is_not_exposed(proxy: Proxy) -> None:
    status, headers, _ = proxy.request("GET", "/metrics")
    assert status == 404
    assert headers.get("X-Request-ID")


def test_login_brute_force_is_rate_limited_at_the_edge(proxy: Proxy) -> None:
    statuses = []
    for _ in range(16):
        status, headers, body = proxy.request("POST", "/api/v1/auth/token", body=b"{}")
        statuses.append(status)
        if status == 429:
            break
    assert statuses[0] == 200 and statuses[-1] == 429, statuses
    assert headers.get("Retry-After") == "2" and headers.get("X-Request-ID")
    assert json.loads(body)["code"] == 429  # JSON, like every answer under /api/
    # Other routes are not limited.
    assert proxy.request("GET", "/api/v1/auth/me")[0] == 200


# --------------------------------------------------------------------------- request ids


def test_request_id_is_generated_when_absent(proxy: Proxy) -> None:
    got = proxy.upstream("GET", "/api/v1/scripts/templates")
    assert re.fullmatch(r"[0-9a-f]{32}", got["request_id"] or ""), got
    assert got["_response_request_id"] == [got["request_id"]]


def test_valid_request_id_is_passed_through(proxy: Proxy) -> None:
    got = proxy.upstream(
        "GET", "/api/v1/ai-sessions/x1", headers={"X-Request-ID": "client.req_1-2"}
    )
    assert got["request_id"] == "client.req_1-2"
    assert got["_response_request_id"] == ["client.req_1-2"]


@pytest.mark.parametrize("bad", ["has space", "semi;colon", "x" * 129, "<script>"])
def test_malformed_request_id_is_replaced(proxy: Proxy, bad: str) -> None:
    got = proxy.upstream("GET", "/api/v1/integrations/webhooks", headers={"X-Request-ID": bad})
    assert got["request_id"] != bad
    assert re.fullmatch(r"[0-9a-f]{32}", got["request_id"] or ""), got
    assert got["_response_request_id"] == [got["request_id"]]


def test_forwarded_headers_are_set(proxy: Proxy) -> None:
    got = proxy.upstream("GET", "/")
    assert got["forwarded_for"] == "127.0.0.1"
    assert got["forwarded_proto"] == "http"


# --------------------------------------------------------------------------- streaming


def test_chat_stream_is_not_buffered(proxy: Proxy) -> None:
    """The first SSE event reaches the client while the upstream is still generating."""
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    try:
        started = time.monotonic()
        conn.request(
            "POST",
            "/api/v1/ai-sessions/s1/messages",
            body=b'{"content": "hi"}',
            headers={"Accept": "text/event-stream", "Content-Type": "application/json"},
        )
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        first = b""
        while b"\n\n" not in first:
            chunk = resp.read1(1024) if hasattr(resp, "read1") else resp.read(1)
            assert chunk, "stream ended before the first event"
            first += chunk
        first_at = time.monotonic() - started
        rest = resp.read()
        total = time.monotonic() - started
    finally:
        conn.close()
    assert b'"first"' in first and b'"second"' not in first
    assert b'"second"' in rest
    assert first_at < SSE_PAUSE_S * 0.6, f"first event after {first_at:.2f}s: buffered"
    assert total >= SSE_PAUSE_S * 0.9


def test_nginx_process_owns_no_stray_files_outside_prefix(proxy: Proxy) -> None:
    # Everything nginx writes (pid, temp dirs, logs) lands in the prefix.
    names = set(os.listdir(proxy.prefix))
    assert {"nginx.pid", "access.log", "error.log"} <= names
    assert any(name.startswith("nginx-proxy") for name in names)
