"""`make run`'s own process: migrations, library, demo tokens, a gateway with two or more
processes, workers and beat; Ctrl-C stops everything it started."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from typing import Any

import psutil
import requests

from shared.config import PROJECT_ROOT
from tests.support.workers import free_port, wait_until


def test_devstack_serves_the_gateway_and_stops_on_ctrl_c(migrated: Any, artifacts_dir: Any) -> None:
    port = free_port()
    env = dict(os.environ)
    # `make run` with nothing set: no RF_ENV (unset means production elsewhere) and no keys.
    for name in ("RF_ENV", "SECRET_KEY", "INTEGRATION_KEY"):
        env.pop(name, None)
    env.update(
        GATEWAY_PORT=str(port),
        WEB_CONCURRENCY="2",
        WORKER_CONCURRENCY="2",
        RF_DATA_DIR=str(artifacts_dir / f"devstack-{port}"),
    )
    log_path = artifacts_dir / f"devstack-{port}.log"
    # A file, not a pipe: the stack's processes must never block on a full pipe.
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.devstack"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    children: list[psutil.Process] = []
    try:
        health = None
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                health = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=90)
                break
            except requests.RequestException:  # not bound yet, or its workers still booting
                time.sleep(0.2)  # waiting for gunicorn to bind, not synchronising the test
        text = log_path.read_text()
        assert health is not None and health.status_code == 200, text
        # The banner is printed once migrations, the library and the demo users are ready.
        tokens = re.findall(r"token: (\S+)", text)
        assert len(tokens) == 2, text

        headers = {"Authorization": f"Bearer {tokens[1]}"}
        categories = requests.get(
            f"http://127.0.0.1:{port}/api/v1/scripts/categories", headers=headers, timeout=10
        )
        assert categories.status_code == 200 and len(categories.json()) >= 8
        login = requests.post(
            f"http://127.0.0.1:{port}/api/v1/auth/token",
            json={"email": "engineer@demo.resolutionflow.local", "password": "demo-password"},
            timeout=10,
        )
        assert login.status_code == 200

        children = psutil.Process(proc.pid).children(recursive=True)
        names = " ".join(" ".join(c.cmdline()) for c in children)
        assert "gunicorn" in names and "worker" in names and "beat" in names
        # Two worker processes by default, each its own Celery node: a killed one's jobs are
        # taken over by the other instead of waiting for its restart to boot.
        worker_nodes = sorted(
            c.cmdline()[c.cmdline().index("-n") + 1]
            for c in children
            if c.ppid() == proc.pid and "celery" in " ".join(c.cmdline()) and "-n" in c.cmdline()
        )
        assert worker_nodes == ["devstack-2@%h", "devstack@%h"], worker_nodes
        gunicorn_workers = [
            c for c in children if "gunicorn" in " ".join(c.cmdline()) and c.ppid() != proc.pid
        ]
        assert len(gunicorn_workers) >= 2, "the gateway serves with at least two processes"

        # A worker SIGKILLed is restarted by the supervisor within 10 s, and the stack says so.
        # The program `worker` is the node devstack@%h (worker-2 is devstack-2@%h).
        def celery_worker() -> psutil.Process | None:
            for child in psutil.Process(proc.pid).children():
                try:
                    if " worker " in " ".join(child.cmdline()) and "devstack@%h" in child.cmdline():
                        return child
                except psutil.Error:  # the killed one, until the supervisor reaps it
                    continue
            return None

        first = celery_worker()
        assert first is not None
        first.kill()
        killed_at = time.monotonic()

        def replaced() -> bool:
            worker = celery_worker()
            return worker is not None and worker.pid != first.pid

        wait_until(replaced, 10, message="the worker restarted")
        assert time.monotonic() - killed_at < 10
        assert "supervisor: worker exited with code -9" in log_path.read_text()
        assert proc.poll() is None, "one child's exit must not stop the stack"
        health = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=30)
        assert health.status_code == 200 and health.json()["status"] in ("ok", "degraded")
        children = psutil.Process(proc.pid).children(recursive=True)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        finally:
            log.close()
    for child in children:
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE, child.cmdline()


def test_make_run_gateway_logs_json_only_and_opens_no_control_socket(
    migrated: Any, artifacts_dir: Any, tmp_path: Any
) -> None:
    """The gateway `make run` starts logs one JSON object a line (gunicorn's own start-up lines
    and the access lines included, redacted as in deploy/) and creates no gunicorn control
    socket at the per-user path every stack on the host would share."""
    from dataclasses import replace

    from app.devstack import stack_commands

    port = free_port()
    settings = replace(migrated, GATEWAY_PORT=port, WEB_CONCURRENCY=2)
    command = stack_commands(settings)["gateway"]
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    env.update(HOME=str(home), PROMETHEUS_MULTIPROC_DIR="", LOG_LEVEL="INFO")
    env.pop("PROMETHEUS_MULTIPROC_DIR")
    log_path = artifacts_dir / f"devstack-gateway-{port}.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            command, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 60
        health = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                health = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=60)
                break
            except requests.ConnectionError:
                time.sleep(0.2)  # waiting for gunicorn to bind, not synchronising the test
        assert health is not None and health.status_code == 200, log_path.read_text()
        secret = "hunter2-canary-password"
        answer = requests.post(
            f"http://127.0.0.1:{port}/api/v1/auth/token",
            json={"email": "nobody@example.com", "password": secret},
            headers={"X-Request-ID": "readme-json-log-check"},
            timeout=60,
        )
        assert answer.status_code == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    lines = [line for line in log_path.read_text().splitlines() if line.strip()]
    assert len(lines) >= 3
    entries = []
    for line in lines:
        entry = json.loads(line)  # every line, gunicorn's "Booting worker" included
        assert isinstance(entry, dict) and "level" in entry and "timestamp" in entry, line
        entries.append(entry)
    assert any(e.get("logger", "").startswith("gunicorn") for e in entries)
    access = [e for e in entries if e.get("request_id") == "readme-json-log-check"]
    assert access and access[0]["route"] == "/api/v1/auth/token"
    assert "hunter2-canary-password" not in log_path.read_text()
    assert not (home / ".gunicorn").exists(), list(home.rglob("*"))
    assert "--config" in command


def test_devstack_on_a_port_in_use_says_so_before_printing_anything(artifacts_dir: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = dict(os.environ, GATEWAY_PORT=str(port), RF_DATA_DIR=str(artifacts_dir / "busy"))
        result = subprocess.run(
            [sys.executable, "-m", "app.devstack"],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    error = json.loads(result.stderr.strip().splitlines()[-1])["error"]
    assert f"port {port}" in error and "GATEWAY_PORT=" in error
    # Nothing started: no banner, no tokens.
    assert "token:" not in result.stdout and "ResolutionFlow is starting" not in result.stdout
