"""shared.observability: request ids, access log, metrics, redaction and Celery propagation."""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import structlog
from flask import Flask, jsonify

from shared import observability as obs
from tests.support.fixtures.logs import json_lines

ROOT = Path(__file__).resolve().parents[2]
CANARY = "CANARY-s3cr3t-7f1e2d"


def make_app() -> Flask:
    app = Flask("observability-test")
    obs.init_app(app, "testsvc")
    log = obs.get_logger("testsvc.views")

    @app.get("/items/<int:item_id>")
    def item(item_id: int) -> Any:
        return jsonify(item=item_id)

    @app.get("/healthz")
    def healthz() -> Any:
        return jsonify(status="ok")

    @app.post("/render")
    def render() -> Any:
        obs.register_sensitive_value(CANARY)
        script = f"$pw = '{CANARY}'\nConnect-Thing -Password $pw"
        # Every way an engineer might leak the value by accident:
        log.info(f"rendered script {script}")
        log.info("rendered", details={"lines": [script], "meta": {"note": CANARY}}, note=CANARY)
        log.info("rendered with args %s", script)
        logging.getLogger("thirdparty.lib").warning("library saw %s", CANARY)
        try:
            raise ValueError(f"could not parse {CANARY}")
        except ValueError:
            log.exception("render failed")
        log.info("login", password="hunter2-plain", input_tokens=7, script_id="s-1")
        return jsonify(ok=True)

    @app.get("/request-id")
    def request_id() -> Any:
        return jsonify(request_id=obs.current_request_id())

    return app


# --------------------------------------------------------------------------- request ids


def test_valid_request_id_is_echoed_and_bound(logging_sandbox: None) -> None:
    client = make_app().test_client()
    resp = client.get("/request-id", headers={"X-Request-ID": "abc.DEF_12-3"})
    assert resp.status_code == 200
    assert resp.headers["X-Request-ID"] == "abc.DEF_12-3"
    assert resp.get_json() == {"request_id": "abc.DEF_12-3"}


def test_missing_request_id_is_generated(logging_sandbox: None) -> None:
    client = make_app().test_client()
    first = client.get("/request-id").headers["X-Request-ID"]
    second = client.get("/request-id").headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", first)
    assert first != second


@pytest.mark.parametrize(
    "bad",
    ["has space", "<script>alert(1)</script>", "a" * 129, "semi;colon", "ünïcode", ""],
)
def test_malformed_request_id_is_replaced(logging_sandbox: None, bad: str) -> None:
    client = make_app().test_client()
    resp = client.get("/request-id", headers={"X-Request-ID": bad})
    echoed = resp.headers["X-Request-ID"]
    assert echoed != bad
    assert re.fullmatch(r"[0-9a-f]{32}", echoed)
    assert resp.get_json()["request_id"] == echoed


def test_request_id_of_128_chars_is_kept() -> None:
    longest = "A" * 128
    assert obs.sanitize_request_id(longest) == longest
    assert obs.sanitize_request_id(longest + "A") != longest + "A"


def test_access_line_has_route_template_and_no_query(
    logging_sandbox: None, capsys: pytest.CaptureFixture[str]
) -> None:
    client = make_app().test_client()
    capsys.readouterr()
    client.get(f"/items/42?token={CANARY}", headers={"X-Request-ID": "req-access-1"})
    out = capsys.readouterr().out
    assert CANARY not in out
    access = [e for e in json_lines(out) if e.get("event") == "request"]
    assert len(access) == 1, out
    line = access[0]
    assert line["route"] == "/items/<int:item_id>"
    assert line["method"] == "GET"
    assert line["status"] == 200
    assert line["request_id"] == "req-access-1"
    assert line["service"] == "testsvc"
    assert isinstance(line["duration_ms"], int | float)
    assert line["level"] == "info"
    assert "42" not in json.dumps(line["route"])


def test_context_does_not_leak_between_requests(
    logging_sandbox: None, capsys: pytest.CaptureFixture[str]
) -> None:
    client = make_app().test_client()
    client.get("/request-id", headers={"X-Request-ID": "first-request"})
    assert obs.current_request_id() is None
    resp = client.get("/request-id")
    assert resp.get_json()["request_id"] != "first-request"


def test_hooks_registered_before_init_app_log_with_the_request_id(
    logging_sandbox: None, capsys: pytest.CaptureFixture[str]
) -> None:
    app = Flask("early-hook")

    @app.before_request
    def authenticate() -> None:
        obs.get_logger("auth").info("checking token")

    obs.init_app(app, "early")
    app.add_url_rule("/x", "x", lambda: "ok")
    capsys.readouterr()
    app.test_client().get("/x", headers={"X-Request-ID": "early-1"})
    entries = json_lines(capsys.readouterr().out)
    assert [e["request_id"] for e in entries if e["event"] == "checking token"] == ["early-1"]


def test_configure_logging_keeps_foreign_handlers(logging_sandbox: None) -> None:
    root = logging.getLogger()
    console = logging.StreamHandler()  # what logging.basicConfig installs
    records: list[logging.LogRecord] = []

    class Collector(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    collector = Collector()
    root.addHandler(console)
    root.addHandler(collector)
    obs.configure_logging("INFO")
    obs.configure_logging("INFO")  # idempotent: still one handler of ours
    try:
        assert console not in root.handlers
        assert collector in root.handlers
        ours = [h for h in root.handlers if h.get_name() == "rf-structlog"]
        assert len(ours) == 1
        obs.register_sensitive_value(CANARY)
        obs.get_logger("t").info("to every handler", note=f"x {CANARY} y")
        # Redaction happens before the record reaches any handler, not only our formatter.
        assert records and CANARY not in repr(records[-1].msg)
    finally:
        root.removeHandler(collector)


# --------------------------------------------------------------------------- metrics


METRICS_TOKEN = "metrics-token-for-tests-0123456789"


def test_metrics_is_not_served_without_the_metrics_token(
    logging_sandbox: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # /metrics answered anyone on the public gateway port.
    monkeypatch.delenv("METRICS_TOKEN", raising=False)
    client = make_app().test_client()
    assert client.get("/metrics").status_code == 404  # no token configured: never served
    monkeypatch.setenv("METRICS_TOKEN", METRICS_TOKEN)
    assert client.get("/metrics").status_code == 404
    wrong = client.get("/metrics", headers={"Authorization": "Bearer not-the-token"})
    assert wrong.status_code == 404 and b"http_request" not in wrong.data
    ok = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert ok.status_code == 200 and b"http_request_duration_seconds" in ok.data


def test_metrics_exposes_histogram_with_route_template(
    logging_sandbox: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("METRICS_TOKEN", METRICS_TOKEN)
    client = make_app().test_client()
    for item in (1, 2, 3):
        assert client.get(f"/items/{item}").status_code == 200
    assert client.get("/no/such/path").status_code == 404
    resp = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert resp.status_code == 200
    assert resp.content_type.startswith("text/plain")
    body = resp.get_data(as_text=True)
    sample = re.search(
        r'^http_request_duration_seconds_count\{(?=[^}]*service="testsvc")'
        r'(?=[^}]*route="/items/<int:item_id>")(?=[^}]*method="GET")'
        r'(?=[^}]*status="200")[^}]*\} (\d+(?:\.\d+)?)$',
        body,
        re.M,
    )
    assert sample, body
    assert float(sample.group(1)) >= 3
    assert 'route="/items/1"' not in body
    assert 'route="<unmatched>"' in body
    assert "http_request_duration_seconds_bucket" in body
    for name in (
        "notes_preview_cache_total",
        "llm_calls_total",
        "llm_tokens_total",
        "note_generation_seconds",
        "webhook_deliveries_total",
        "outbox_backlog",
    ):
        assert f"# TYPE {name.removesuffix('_total')}" in body, name


def test_product_metrics_have_declared_labels() -> None:
    obs.NOTES_CACHE_REQUESTS.labels(result="hit").inc()
    obs.LLM_CALLS.labels(model="m", purpose="note", outcome="ok").inc()
    obs.LLM_TOKENS.labels(model="m", purpose="note", type="input").inc(12)
    obs.WEBHOOK_DELIVERIES.labels(outcome="delivered").inc()
    obs.NOTE_GENERATION_SECONDS.observe(1.5)
    obs.OUTBOX_BACKLOG.set(3)
    body = obs.metrics_payload()[0].decode()
    assert 'notes_preview_cache_total{result="hit"}' in body
    assert 'llm_tokens_total{model="m",purpose="note",type="input"}' in body
    assert "outbox_backlog 3.0" in body
    with pytest.raises(ValueError):
        obs.LLM_CALLS.labels(model="m", purpose="note")  # a missing label is an error


def test_multiprocess_metrics_are_aggregated(tmp_path: Path) -> None:
    """Two processes sharing PROMETHEUS_MULTIPROC_DIR: /metrics sums them, gauge takes max."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    child = (
        "from shared import observability as o;"
        "o.WEBHOOK_DELIVERIES.labels(outcome='delivered').inc(2);"
        "o.OUTBOX_BACKLOG.set({n})"
    )
    for n in (5, 9):
        subprocess.run([sys.executable, "-c", child.format(n=n)], env=env, check=True)
    reader = subprocess.run(
        [
            sys.executable,
            "-c",
            "from shared import observability as o; print(o.metrics_payload()[0].decode())",
        ],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    assert 'webhook_deliveries_total{outcome="delivered"} 4.0' in reader.stdout
    assert "outbox_backlog 9.0" in reader.stdout


def test_import_starts_nothing() -> None:
    code = (
        "import threading, sys; import shared.observability;"
        "assert threading.active_count() == 1, threading.enumerate();"
        "assert 'redis' not in sys.modules and 'celery' not in sys.modules, 'eager import'"
    )
    subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True
    )


def test_worker_metrics_server_serves_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("WORKER_METRICS_PORT", str(port))
    server = obs.start_worker_metrics_server(addr="127.0.0.1")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            body = resp.read().decode()
        assert "llm_calls_total" in body
        assert "celery_tasks_total" in body
    finally:
        server.shutdown()
        server.server_close()
    monkeypatch.setenv("WORKER_METRICS_PORT", "0")
    assert obs.start_worker_metrics_server() is None


# --------------------------------------------------------------------------- redaction


def test_registered_canary_never_reaches_stdout(
    logging_sandbox: None, capsys: pytest.CaptureFixture[str]
) -> None:
    client = make_app().test_client()
    capsys.readouterr()
    resp = client.post("/render", headers={"X-Request-ID": "render-1"})
    assert resp.status_code == 200
    captured = capsys.readouterr()
    out = captured.out + captured.err
    entries = json_lines(captured.out)
    assert CANARY not in out
    assert "hunter2-plain" not in out
    by_event = {e["event"]: e for e in entries}
    # The lines were written, with the value masked rather than the line dropped.
    assert by_event["rendered"]["note"] == obs.REDACTED
    assert by_event["rendered"]["details"]["meta"]["note"] == obs.REDACTED
    assert obs.REDACTED in by_event["rendered"]["details"]["lines"][0]
    assert "Connect-Thing" in by_event["rendered"]["details"]["lines"][0]
    assert any(
        e["event"].startswith("rendered script") and obs.REDACTED in e["event"] for e in entries
    )
    assert any(e["event"].startswith("rendered with args") for e in entries)
    library = [e for e in entries if e.get("logger") == "thirdparty.lib"]
    assert library and library[0]["event"] == f"library saw {obs.REDACTED}"
    failed = by_event["render failed"]
    assert "ValueError" in failed["exception"] and obs.REDACTED in failed["exception"]
    login = by_event["login"]
    assert login["password"] == obs.REDACTED
    assert login["input_tokens"] == 7 and login["script_id"] == "s-1"
    assert all(e.get("request_id") == "render-1" for e in entries)


def test_escaped_forms_of_a_canary_are_masked(
    logging_sandbox: None, capsys: pytest.CaptureFixture[str]
) -> None:
    value = 'pa"ss\\wörd-42'
    obs.register_sensitive_value(value)
    log = obs.get_logger("t")
    log.info("as json", body=json.dumps({"v": value}))
    log.info("as repr", body=repr({"v": value}))
    log.info("as bytes", body=value.encode())
    out = capsys.readouterr().out
    assert "ss\\\\w" not in out.replace(obs.REDACTED, "")
    for entry in json_lines(out):
        assert obs.REDACTED in entry["body"], entry


def test_sensitive_values_are_context_local(
    logging_sandbox: None, capsys: pytest.CaptureFixture[str]
) -> None:
    def other_request() -> None:
        obs.register_sensitive_value("only-in-other-context")

    contextvars.copy_context().run(other_request)
    obs.get_logger("t").info("probe", text="only-in-other-context")
    assert json_lines(capsys.readouterr().out)[0]["text"] == "only-in-other-context"


def test_short_values_are_not_registered_as_substrings() -> None:
    obs.clear_sensitive_values()
    obs.register_sensitive_value("ab")
    event = obs.redact(None, "info", {"event": "abc cab"})
    assert event["event"] == "abc cab"
    obs.register_sensitive_value(12345678)
    event = obs.redact(None, "info", {"event": "id 12345678", "n": 12345678})
    assert event["event"] == f"id {obs.REDACTED}"
    obs.clear_sensitive_values()


@pytest.mark.parametrize(
    ("key", "masked"),
    [
        ("password", True),
        ("db_password", True),
        ("Authorization", True),
        ("X-Api-Key", True),
        ("apiKey", True),
        ("SECRET_KEY", True),
        ("access_token", True),
        ("parameters", True),
        ("parameter_values", True),
        ("script", True),
        ("rendered_script", True),
        ("script_id", False),
        ("token_type", False),
        ("input_tokens", False),
        ("route", False),
        ("request_id", False),
    ],
)
def test_sensitive_key_names(key: str, masked: bool) -> None:
    assert obs.is_sensitive_key(key) is masked
    event = obs.redact(None, "info", {"event": "e", key: "v4lue-here"})
    assert (event[key] == obs.REDACTED) is masked


def test_sensitive_key_set_is_configurable() -> None:
    try:
        obs.set_sensitive_keys({"ssn"})
        assert obs.is_sensitive_key("customer_ssn")
        assert not obs.is_sensitive_key("password")
    finally:
        obs.set_sensitive_keys(obs.DEFAULT_SENSITIVE_KEYS)
    assert obs.is_sensitive_key("password")


# --------------------------------------------------------------------------- Celery


class FakeRequest:
    def __init__(self, headers: dict[str, Any] | None = None, **attrs: Any) -> None:
        self.headers = headers
        for k, v in attrs.items():
            setattr(self, k, v)


class FakeTask:
    def __init__(self, name: str, request: FakeRequest) -> None:
        self.name = name
        self.request = request


def test_publish_copies_request_id_into_headers() -> None:
    structlog.contextvars.clear_contextvars()
    headers: dict[str, Any] = {"task": "notes.generate", "id": "t1"}
    obs.on_before_task_publish(headers=headers)
    assert "request_id" not in headers  # nothing bound, nothing invented
    structlog.contextvars.bind_contextvars(request_id="req-pub-1")
    try:
        obs.on_before_task_publish(headers=headers, body=(), exchange="", routing_key="notes")
    finally:
        structlog.contextvars.clear_contextvars()
    assert headers["request_id"] == "req-pub-1"


def test_task_run_binds_and_clears_context(
    logging_sandbox: None, capsys: pytest.CaptureFixture[str]
) -> None:
    obs.register_sensitive_value("left-over-from-previous-task")
    structlog.contextvars.bind_contextvars(request_id="stale")
    task = FakeTask("notes.generate", FakeRequest(headers={"request_id": "req-task-1"}))
    obs.on_task_prerun(task_id="tid-1", task=task, args=(), kwargs={})
    obs.get_logger("worker").info("working", text="left-over-from-previous-task")
    obs.on_task_postrun(task_id="tid-1", task=task, state="SUCCESS", retval=None)
    entry = json_lines(capsys.readouterr().out)[-1]
    assert entry["request_id"] == "req-task-1"
    assert entry["task_name"] == "notes.generate"
    assert entry["task_id"] == "tid-1"
    assert entry["text"] == "left-over-from-previous-task"  # previous task's values dropped
    assert structlog.contextvars.get_contextvars() == {}
    body = obs.metrics_payload()[0].decode()
    assert 'celery_tasks_total{state="SUCCESS",task="notes.generate"}' in body


def test_task_without_request_id_uses_task_id() -> None:
    task = FakeTask("notes.sweep", FakeRequest(headers=None))
    obs.on_task_prerun(task_id="tid-2", task=task)
    try:
        assert obs.current_request_id() == "tid-2"
    finally:
        obs.on_task_postrun(task=task, state="SUCCESS")
    # A header that is not a valid request id is ignored the same way.
    task = FakeTask("notes.sweep", FakeRequest(headers={"request_id": "bad id\n"}))
    obs.on_task_prerun(task_id="tid-3", task=task)
    try:
        assert obs.current_request_id() == "tid-3"
    finally:
        obs.on_task_postrun(task=task, state="SUCCESS")


def test_init_celery_propagates_through_publish_and_run() -> None:
    """Through Celery's own signals: publish to the in-memory broker, then run eagerly."""
    from celery import Celery, signals

    app = Celery("obs-test", broker="memory://", backend="cache+memory://")
    obs.init_celery(app, configure_worker_logging=False, metrics_server=False)
    seen: dict[str, Any] = {}

    @app.task(name="obs.echo", bind=True)
    def echo(self: Any) -> str | None:
        return obs.current_request_id()

    def after_publish(headers: dict[str, Any] | None = None, **_: Any) -> None:
        seen.update(headers or {})

    signals.after_task_publish.connect(after_publish, weak=False)
    try:
        structlog.contextvars.bind_contextvars(request_id="req-celery-1")
        echo.apply_async(queue="notes")
        structlog.contextvars.clear_contextvars()
        assert seen.get("request_id") == "req-celery-1"
        result = echo.apply(headers={"request_id": seen["request_id"]})
        assert result.get() == "req-celery-1"
        assert obs.current_request_id() is None
    finally:
        signals.after_task_publish.disconnect(after_publish)
        structlog.contextvars.clear_contextvars()
