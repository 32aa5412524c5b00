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
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import select

from shared.config import Settings
from tests.support.stack import RunningStack, running_stack
from tests.support.workers import (
    CeleryWorker,
    wait_until,
)

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
    """The running stack, read the way these tests read it: through its log lines."""

    running: RunningStack

    @property
    def settings(self) -> Settings:
        return self.running.settings

    @property
    def stub(self) -> Any:
        return self.running.stub

    @property
    def worker(self) -> CeleryWorker:
        return self.running.workers[0]

    @property
    def api_log(self) -> Path:
        return self.running.logs[-1]

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
        return self.running.api(method, path, headers=headers, **kw)  # type: ignore[no-any-return]

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

    def before_test(self) -> None:
        self.running.before_test()

    def after_test(self) -> None:
        self.running.after_test()


@pytest.fixture(scope="module")
def stack(migrated: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    settings = replace(
        migrated, LLM_MAX_RETRIES=0, LLM_TIMEOUT_S=20.0, NOTES_PREWARM=False, NOTES_LOCK_TTL_S=5.0
    )
    gateway_env = {
        "WEB_CONCURRENCY": "2",
        "GUNICORN_THREADS": "8",
        # gunicorn's own access line too: every line of the API process is checked.
        "GUNICORN_ACCESS_LOG": "-",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path_factory.mktemp("rf-obs-metrics")),
        "SERVICE_NAME": "rf-test-gateway",
    }
    with running_stack(
        settings,
        stub=True,
        log_level=LOG_LEVEL,
        log_name="gateway-observability",
        gateway_env=gateway_env,
    ) as running:
        yield Stack(running)


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
