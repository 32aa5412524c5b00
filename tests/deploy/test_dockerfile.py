"""deploy/Dockerfile, .dockerignore and deploy/gunicorn.conf.py.

No Docker engine is needed: hadolint lints the Dockerfile, the build context is checked against
.dockerignore, and the gunicorn config is run for real in front of a probe app.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
GUNICORN_CONF = ROOT / "deploy" / "gunicorn.conf.py"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        out.append((keyword.upper(), args.strip()))
    return out


def final_stage() -> list[tuple[str, str]]:
    items = instructions()
    last_from = max(i for i, (k, _) in enumerate(items) if k == "FROM")
    return items[last_from:]


# --------------------------------------------------------------------------- hadolint


def test_hadolint_is_clean(hadolint_bin: str) -> None:
    result = subprocess.run(
        [hadolint_bin, "--no-color", "-f", "json", "--disable-ignore-pragma", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    findings = json.loads(result.stdout or "null")
    assert findings == [], json.dumps(findings, indent=2)
    assert result.returncode == 0, result.stderr


def test_hadolint_does_flag_a_bad_dockerfile(hadolint_bin: str) -> None:
    """Guards the test above against a hadolint that reports nothing at all."""
    bad = "FROM python:latest\nRUN apt-get update && apt-get install -y curl\nADD . /app\n"
    result = subprocess.run(
        [hadolint_bin, "--no-color", "-f", "json", "-"],
        input=bad,
        capture_output=True,
        text=True,
        timeout=60,
    )
    codes = {f["code"] for f in json.loads(result.stdout)}
    assert {"DL3007", "DL3008", "DL3020"} <= codes
    assert result.returncode != 0


# --------------------------------------------------------------------------- structure


def test_base_images_are_pinned_python_311_slim() -> None:
    bases = [args.split()[0] for k, args in instructions() if k == "FROM"]
    assert len(bases) >= 2, "expected a multi-stage build"
    for base in bases:
        assert re.fullmatch(r"python:3\.11\.\d+-slim(-[a-z]+)?", base), base


def test_runtime_stage_runs_as_non_root() -> None:
    users = [args for k, args in final_stage() if k == "USER"]
    assert users, "the final stage must switch USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert user.isdigit(), "a numeric uid lets Kubernetes verify runAsNonRoot"
    # The k8s manifests pin the same uid.
    k8s_text = "\n".join(p.read_text() for p in (ROOT / "deploy" / "k8s").glob("*.yaml"))
    assert f"runAsUser: {user}" in k8s_text


def test_runtime_environment() -> None:
    env = " ".join(args for k, args in final_stage() if k == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "PYTHONUNBUFFERED=1" in env
    assert "RF_ENV=prod" in env


def test_healthcheck_and_default_command() -> None:
    stage = final_stage()
    health = [args for k, args in stage if k == "HEALTHCHECK"]
    assert health and "/healthz" in health[0]
    cmd = [args for k, args in stage if k == "CMD"]
    assert cmd, "no CMD"
    argv = json.loads(cmd[-1])
    assert argv[0] == "gunicorn"
    assert argv[argv.index("-c") + 1].endswith("deploy/gunicorn.conf.py")
    assert argv[-1] == "app.gateway:create_app()"


def test_project_is_installed_with_pip_from_the_lock_file() -> None:
    runs = " ".join(args for k, args in instructions() if k == "RUN")
    # The dependencies exactly as locked, then the project itself without resolving again.
    assert re.search(r"pip install [^&]*-r requirements/image\.txt", runs)
    assert re.search(r"pip install [^&]*--no-deps [^&]*\.(\s|$)", runs)
    copies = [args for k, args in instructions() if k == "COPY"]
    assert any(c.startswith("requirements/image.txt") for c in copies)
    assert any(c.startswith("pyproject.toml") for c in copies)
    assert any(c.startswith("app ") for c in copies)


SECRET_NAME = re.compile(r"(SECRET|PASSWORD|PASSWD|TOKEN|API_KEY|PRIVATE_KEY|CREDENTIAL)", re.I)


def test_no_secrets_in_image_definition() -> None:
    for keyword, args in instructions():
        if keyword in {"ENV", "ARG", "LABEL"}:
            for name in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*=", args):
                assert not SECRET_NAME.search(name), f"{keyword} {name}: secrets come at run time"
    assert not re.search(r"sk-ant-|BEGIN [A-Z ]*PRIVATE KEY", DOCKERFILE.read_text())


# --------------------------------------------------------------------------- build context


def _ignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:] if negate else line
        pattern = pattern.strip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex += "(?:.*/)?"
                i += 3
            elif pattern.startswith("**", i):
                regex += ".*"
                i += 2
            elif pattern[i] == "*":
                regex += "[^/]*"
                i += 1
            elif pattern[i] == "?":
                regex += "[^/]"
                i += 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                regex += pattern[i : end + 1]
                i = end + 1
            else:
                regex += re.escape(pattern[i])
                i += 1
        rules.append((negate, re.compile(regex)))
    return rules


def ignored(path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for negate, regex in _ignore_rules():
        if any(regex.fullmatch(p) for p in prefixes):
            excluded = not negate
    return excluded


def test_dockerignore_lets_every_copied_source_through() -> None:
    sources = []
    for keyword, args in instructions():
        if keyword != "COPY" or "--from=" in args:
            continue
        words = [w for w in shlex.split(args) if not w.startswith("--")]
        sources.extend(words[:-1])
    assert sources
    for source in sources:
        path = ROOT / source
        assert path.exists(), f"COPY {source}: not in the build context"
        files = [path] if path.is_file() else [p for p in path.rglob("*.py")]
        for file in files:
            rel = file.relative_to(ROOT).as_posix()
            if "__pycache__" in rel:
                continue
            assert not ignored(rel), f"{rel} is copied by the Dockerfile but .dockerignore drops it"


@pytest.mark.parametrize(
    "path",
    [
        ".env",
        "deploy/.env",
        "services/notes/.env",
        ".venv/bin/python",
        ".git/config",
        ".data/pg/PG_VERSION",
        "tests/conftest.py",
        "bench/run.py",
        "shared/__pycache__/config.cpython-311.pyc",
        "deploy/k8s/configmap.yaml",
        "services/scripts/server.pem",
    ],
)
def test_dockerignore_keeps_local_files_out(path: str) -> None:
    assert ignored(path), f"{path} would be sent to the image build"


def test_dockerignore_matcher_is_not_trivial() -> None:
    assert not ignored("shared/config.py")
    assert not ignored("pyproject.toml")
    assert not ignored("deploy/gunicorn.conf.py")


# --------------------------------------------------------------------------- gunicorn


PROBE_APP = """
import os
import time

from flask import Flask, jsonify

from shared import observability


def create_app():
    app = Flask("probe")
    observability.init_app(app, "probe")

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok", pid=os.getpid())

    @app.get("/slow/<int:seconds>")
    def slow(seconds):
        # Tells the test the request is in flight (it sends SIGTERM only then).
        open(os.path.join(os.environ["PROBE_INFLIGHT_DIR"], str(os.getpid())), "w").close()
        time.sleep(seconds)
        return jsonify(done=True, pid=os.getpid())

    return app
"""


def print_config(env: dict[str, str | None], app_dir: Path) -> dict[str, str]:
    """gunicorn's resolved settings for the config file under `env` (None removes a name)."""
    (app_dir / "rf_probe_app.py").write_text(PROBE_APP)
    merged = {**os.environ, **{k: v for k, v in env.items() if v is not None}}
    merged["PYTHONPATH"] = os.pathsep.join([str(app_dir), str(ROOT)])
    for name in [k for k, v in env.items() if v is None]:
        merged.pop(name, None)
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "--print-config",
            "-c",
            str(GUNICORN_CONF),
            "rf_probe_app:create_app()",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=merged,
        cwd=app_dir,
    )
    assert result.returncode == 0, result.stderr
    settings = {}
    for line in result.stdout.splitlines():
        name, sep, value = line.partition("=")
        if sep:
            settings[name.strip()] = value.strip()
    return settings


def test_gunicorn_config_values(tmp_path: Path) -> None:
    base: dict[str, str | None] = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    settings = print_config({**base, "WEB_CONCURRENCY": None, "PORT": "8002"}, tmp_path)
    assert settings["worker_class"] == "gthread"
    assert settings["bind"] == "['0.0.0.0:8002']"
    workers = int(settings["workers"])
    assert 1 <= workers <= 8
    assert int(settings["threads"]) >= 4
    # Longer than one LLM call (LLM_TIMEOUT_S 60) and shorter than k8s' grace period (150).
    assert 60 < int(settings["graceful_timeout"]) < 150
    assert int(settings["keepalive"]) > 60  # outlives nginx's upstream keepalive_timeout
    assert int(settings["max_requests"]) > 0 and int(settings["max_requests_jitter"]) > 0
    assert settings["accesslog"] == "None"
    assert settings["preload_app"] == "False"
    assert settings["control_socket_disable"] == "True"
    overridden = print_config({**base, "WEB_CONCURRENCY": "3", "GUNICORN_THREADS": "16"}, tmp_path)
    assert overridden["workers"] == "3" and overridden["threads"] == "16"


def test_gunicorn_caps_workers_by_cpu_quota(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "WEB_CONCURRENCY"}
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path)
    code = (
        f"import runpy; c = runpy.run_path({str(GUNICORN_CONF)!r});"
        "print(c['default_workers'](), c['cpu_count']())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    workers, cpus = int(out[0]), int(out[1])
    assert workers == min(2 * cpus + 1, 8)


@pytest.fixture
def gunicorn_server(
    tmp_path: Path, free_port: Callable[[], int]
) -> Iterator[tuple[subprocess.Popen[str], int, Path]]:
    (tmp_path / "rf_probe_app.py").write_text(PROBE_APP)
    metrics_dir = tmp_path / "prom"
    metrics_dir.mkdir()
    # A stale, unreadable sample file from "a previous run": the server must wipe it.
    (metrics_dir / "counter_424242.db").write_bytes(b"\x00garbage")
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "BIND_HOST": "127.0.0.1",
        "WEB_CONCURRENCY": "2",
        "GUNICORN_THREADS": "4",
        "GUNICORN_GRACEFUL_TIMEOUT": "20",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "METRICS_TOKEN": METRICS_TOKEN,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
        "LOG_LEVEL": "INFO",
        "PROBE_INFLIGHT_DIR": str(tmp_path / "inflight"),
    }
    (tmp_path / "inflight").mkdir()
    log_path = tmp_path / "gunicorn.log"
    log = log_path.open("w")
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "-c",
            str(GUNICORN_CONF),
            "rf_probe_app:create_app()",
        ],
        env=env,
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"gunicorn did not come up:\n{log_path.read_text()}")
            time.sleep(0.1)
        yield process, port, log_path
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        log.close()


METRICS_TOKEN = "metrics-token-for-tests-0123456789"


def _get(
    port: int, path: str, timeout: float = 10, headers: dict[str, str] | None = None
) -> tuple[int, Any, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def test_gunicorn_serves_aggregated_metrics_and_drains_on_sigterm(
    gunicorn_server: tuple[subprocess.Popen[str], int, Path],
) -> None:
    process, port, log_path = gunicorn_server
    for _ in range(20):
        status, headers, _ = _get(port, "/healthz")
        assert status == 200
        assert re.fullmatch(r"[0-9a-f]{32}", headers["X-Request-ID"])
    assert _get(port, "/metrics")[0] == 404  # not without Prometheus' token
    status, _, body = _get(port, "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert status == 200, body
    text = body.decode()
    counts = re.findall(
        r'^http_request_duration_seconds_count\{[^}]*route="/healthz"[^}]*\} (\S+)$', text, re.M
    )
    # 20 probes plus the readiness polls; every worker's samples are in one answer.
    assert counts and float(counts[0]) >= 20, text[:2000]

    # SIGTERM while a request is in flight: the request completes, then the server exits 0.
    outcome: dict[str, Any] = {}

    def slow_call() -> None:
        try:
            outcome["status"] = _get(port, "/slow/2", timeout=30)[0]
        except Exception as exc:  # noqa: BLE001  # pragma: no cover - reported below
            outcome["error"] = repr(exc)

    caller = threading.Thread(target=slow_call)
    caller.start()
    inflight = log_path.parent / "inflight"
    # Wait for the request to reach a worker, not for a guess of how long that takes.
    deadline = time.monotonic() + 30
    while not any(inflight.iterdir()):
        assert time.monotonic() < deadline, "the slow request never reached the server"
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    caller.join(timeout=30)
    assert outcome.get("status") == 200, outcome
    assert process.wait(timeout=30) == 0
    log = log_path.read_text()
    structured = []
    for line in log.splitlines():
        try:
            structured.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    assert any(
        e.get("event") == "request" and e.get("route") == "/slow/<int:seconds>" for e in structured
    ), log
    assert any(e.get("logger") == "gunicorn.error" for e in structured), log
