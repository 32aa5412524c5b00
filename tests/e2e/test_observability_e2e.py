"""Observability across processes: the gateway under gunicorn with deploy/gunicorn.conf.py (two
processes, JSON logs on stdout into a file), a real Celery worker (JSON logs into a file) and
the stub Messages API in its own process.

* A request id sent with an API request comes back in the response header and is on the log
  lines of the Celery tasks that request caused (the outbox event's `notes.handle_event`, the
  preview's `notes.generate`).
* A sensitive value (a script's password parameter) rendered during a session that is then
  chatted in and previewed is on no log line of any process, at DEBUG, and never reaches the
  LLM.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import select

from shared.config import PROJECT_ROOT, Settings
from tests.support.stub_anthropic import StubAnthropicProcess
from tests.support.workers import (
    ARTIFACTS,
    CeleryWorker,
    child_env,
    clean_state,
    free_port,
    wait_until,
)

pytestmark = pytest.mark.slow

GUNICORN_CONF = PROJECT_ROOT / "deploy" / "gunicorn.conf.py"
# The most verbose level: a sensitive value must not reach even a debug line.
LOG_LEVEL = "DEBUG"


def json_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON objects logged to `path`, one a line (anything else is skipped)."""
    entries = []
    for raw in path.read_text(errors="replace").splitlines():
        raw = raw.strip()
        if raw.startswith("{"):
            try:
                entries.append(json.loads(raw))
            except ValueError:
                continue
    return entries


@dataclass
class Stack:
    settings: Settings
    base_url: str
    stub: Any
    worker: CeleryWorker
    api_log: Path
    http: requests.Session = field(default_factory=requests.Session)

    def call(
        self,
        user: Any,
        method: str,
        path: str,
        *,
        request_id: str | None = None,
        headers: dict[str, str] | None = None,
        **kw: Any,
    ) -> requests.Response:
        headers = {**user.headers, **(headers or {})}
        if request_id is not None:
            headers["X-Request-ID"] = request_id
        return self.http.request(
            method, f"{self.base_url}{path}", headers=headers, timeout=60, **kw
        )

    @property
    def worker_log(self) -> Path:
        assert self.worker.log_path is not None
        return self.worker.log_path

    def task_lines(self, task_name: str, request_id: str) -> list[dict[str, Any]]:
        return [
            e
            for e in json_lines(self.worker_log)
            if e.get("task_name") == task_name and e.get("request_id") == request_id
        ]

    def api_lines(self, request_id: str) -> list[dict[str, Any]]:
        return [e for e in json_lines(self.api_log) if e.get("request_id") == request_id]


def _start_gateway(
    env: dict[str, str], port: int, log_path: Path, metrics_dir: Path
) -> subprocess.Popen[bytes]:
    server_env = dict(env)
    server_env.update(
        {
            "PORT": str(port),
            "BIND_HOST": "127.0.0.1",
            "WEB_CONCURRENCY": "2",
            "GUNICORN_THREADS": "8",
            # gunicorn's own access line too: every line of the API process is checked.
            "GUNICORN_ACCESS_LOG": "-",
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
            "SERVICE_NAME": "rf-test-gateway",
        }
    )
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                str(GUNICORN_CONF),
                "app.gateway:create_app()",
            ],
            cwd=PROJECT_ROOT,
            env=server_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@pytest.fixture(scope="module")
def stack(migrated: Settings) -> Iterator[Stack]:
    (ARTIFACTS / "workers").mkdir(parents=True, exist_ok=True)
    with StubAnthropicProcess(cwd=str(PROJECT_ROOT)) as stub:
        settings = replace(
            migrated,
            ANTHROPIC_API_KEY="test-key",
            ANTHROPIC_BASE_URL=stub.url,
            LLM_MAX_RETRIES=0,
            LLM_TIMEOUT_S=20.0,
            NOTES_PREWARM=False,
            NOTES_LOCK_TTL_S=5.0,
        )
        env = child_env(settings, LOG_LEVEL=LOG_LEVEL)
        worker = CeleryWorker(env, concurrency=4).start()
        port = free_port()
        api_log = ARTIFACTS / "workers" / f"gateway-observability-{port}.log"
        metrics_dir = Path(tempfile.mkdtemp(prefix="rf-obs-metrics-"))
        server = _start_gateway(env, port, api_log, metrics_dir)
        base = f"http://127.0.0.1:{port}"
        try:

            def healthy() -> bool:
                if server.poll() is not None:
                    pytest.fail(f"gunicorn exited:\n{api_log.read_text(errors='replace')[-3000:]}")
                try:
                    return requests.get(f"{base}/healthz", timeout=2).status_code == 200
                except requests.RequestException:
                    return False

            wait_until(healthy, 60, interval_s=0.1, message="the gateway under gunicorn")
            yield Stack(settings, base, stub, worker, api_log)
        finally:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=5)
            worker.stop()
            shutil.rmtree(metrics_dir, ignore_errors=True)


@pytest.fixture(autouse=True)
def _clean_state(stack: Stack) -> Iterator[None]:
    """Overrides the suite's clean-up, which would flush the broker bindings of the worker."""
    stack.stub.client.reset()
    yield
    clean_state(stack.settings, stack.worker)


def _new_session(stack: Stack, user: Any, **fields: Any) -> str:
    created = stack.call(user, "POST", "/api/v1/ai-sessions", json={"title": "VPN", **fields})
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def test_request_id_travels_from_an_api_request_into_the_task_log_lines(
    stack: Stack, make_user: Any
) -> None:
    user = make_user("engineer")
    sid = _new_session(stack, user)

    fact_rid = f"rf-e2e.fact-{uuid.uuid4().hex}"
    fact = stack.call(
        user,
        "POST",
        f"/api/v1/ai-sessions/{sid}/facts",
        request_id=fact_rid,
        json={"text": "Confirmed: the VPN client drops at the lease renewal", "kind": "confirmed"},
    )
    assert fact.status_code == 201, fact.text
    assert fact.headers["X-Request-ID"] == fact_rid

    # The API logged the request with its id...
    [access] = [e for e in stack.api_lines(fact_rid) if e.get("logger") == "rf.access"]
    assert access["route"] == "/api/v1/ai-sessions/<uuid:session_id>/facts"
    assert access["service"] == "pilot" and access["status"] == 201
    # ...and the worker consumed the fact's outbox event under the same id.
    lines = wait_until(
        lambda: stack.task_lines("notes.handle_event", fact_rid),
        20,
        message=f"a notes.handle_event log line with request_id {fact_rid}",
    )
    assert all(e["task_id"] for e in lines)
    assert {e["task_id"] for e in lines} != {fact_rid}

    # A preview that starts a generation: the notes.generate task logs under the preview's id.
    preview_rid = f"rf-e2e.preview-{uuid.uuid4().hex}"
    preview = stack.call(
        user,
        "GET",
        f"/api/v1/ai-sessions/{sid}/resolution-note/preview?wait=30",
        request_id=preview_rid,
    )
    assert preview.status_code == 200, preview.text
    assert preview.headers["X-Request-ID"] == preview_rid
    assert preview.json()["from_cache"] is False
    generated = wait_until(
        lambda: [
            e
            for e in stack.task_lines("notes.generate", preview_rid)
            if e.get("event") == "note generated"
        ],
        20,
        message=f"the 'note generated' line of notes.generate with request_id {preview_rid}",
    )
    assert generated[0]["session_id"] == sid
    assert generated[0]["state_version"] == fact.json()["state_version"]
    # Ids never bleed between tasks: the event's lines are not under the preview's id.
    assert not stack.task_lines("notes.handle_event", preview_rid)


def test_no_sensitive_value_reaches_any_log_line_or_the_llm(
    stack: Stack, make_user: Any, library: Any
) -> None:
    from shared.db import db
    from shared.models import ScriptTemplate

    user = make_user("owner")
    canary = f"Canary-{uuid.uuid4().hex[:12]}!pw"
    sid = _new_session(stack, user, problem="The user is locked out of AD")
    fact = stack.call(
        user,
        "POST",
        f"/api/v1/ai-sessions/{sid}/facts",
        json={"text": "Confirmed: the account is locked after 5 failed logons"},
    )
    assert fact.status_code == 201, fact.text

    with db.session() as session:
        template_id = session.scalars(
            select(ScriptTemplate.id).where(ScriptTemplate.slug == "ad-reset-password")
        ).one()
    generate_rid = f"rf-e2e.canary-{uuid.uuid4().hex}"
    generated = stack.call(
        user,
        "POST",
        "/api/v1/scripts/generate",
        request_id=generate_rid,
        json={
            "template_id": str(template_id),
            "parameters": {"username": "jdoe", "new_password": canary},
            "ai_session_id": sid,
        },
    )
    assert generated.status_code == 200, generated.text
    # The canary is real: it is rendered into the one response that asked for it.
    assert canary in generated.json()["script"]

    # A token-like value in a query string: passed to the app, never logged.
    listed = stack.call(user, "GET", f"/api/v1/scripts/templates?search=reset&token={canary}")
    assert listed.status_code == 200, listed.text

    chat = stack.call(
        user,
        "POST",
        f"/api/v1/ai-sessions/{sid}/messages",
        json={"content": "I ran the reset script; what next?"},
    )
    assert chat.status_code == 201, chat.text
    stream = stack.call(
        user,
        "POST",
        f"/api/v1/ai-sessions/{sid}/messages",
        json={"content": "And after that?"},
        headers={"Accept": "text/event-stream"},
    )
    assert stream.status_code == 200 and "event: done" in stream.text
    preview = stack.call(user, "GET", f"/api/v1/ai-sessions/{sid}/resolution-note/preview?wait=30")
    assert preview.status_code == 200, preview.text
    note_version = preview.json()["state_version"]
    assert "Reset an AD user's password" in json.dumps(stack.stub.client.calls())

    # The logs were captured from the processes that did the work: the generate request's
    # access line (API) and the note's generation (worker) are there.
    wait_until(
        lambda: any(e.get("logger") == "rf.access" for e in stack.api_lines(generate_rid)),
        10,
        message="the access line of the script generation",
    )
    wait_until(
        lambda: any(
            e.get("event") == "note generated"
            and e.get("session_id") == sid
            and e.get("state_version") == note_version
            for e in json_lines(stack.worker_log)
        ),
        20,
        message="the worker's 'note generated' line",
    )

    for name, path in (("API", stack.api_log), ("worker", stack.worker_log)):
        text = path.read_text(errors="replace")
        assert text.strip(), f"nothing was logged by the {name} process"
        leaked = [line for line in text.splitlines() if canary in line]
        assert not leaked, f"the canary is in the {name} log ({path}): {leaked[:3]}"
    assert canary not in json.dumps(stack.stub.client.calls())
    assert canary not in preview.text
