"""deploy/docker-compose.yml, checked the way `docker compose config` would, without Docker.

YAML anchors and merge keys are resolved by PyYAML; `${VAR:-default}` / `${VAR:?error}`
interpolation is emulated below with the rules of the Compose specification.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "docker-compose.yml"
NGINX_CONF = ROOT / "deploy" / "nginx" / "nginx.conf"

API = {"scripts": 8001, "pilot": 8002, "notes": 8003, "web": 8000}
API_APPS = {
    "scripts": "services.scripts:create_app()",
    "pilot": "app.pilot:create_app()",
    "notes": "services.notes:create_app()",
    "web": "app.gateway:create_app()",
}
WORKERS = {"worker-notes": "notes", "worker-events": "events", "worker-webhooks": "webhooks"}
APP_SERVICES = {*API, *WORKERS, "beat", "flower", "migrate"}
EXPECTED = {*APP_SERVICES, "postgres", "redis-broker", "redis-cache", "nginx"}
SECRET_VARS = {
    "SECRET_KEY",
    "INTEGRATION_KEY",
    "METRICS_TOKEN",
    "POSTGRES_PASSWORD",
    "ANTHROPIC_API_KEY",
    "FLOWER_BASIC_AUTH",
}
TEST_ENV = {
    "SECRET_KEY": "k" * 40,
    "INTEGRATION_KEY": "a" * 43 + "=",
    "POSTGRES_PASSWORD": "pw-from-env-file",
}


class InterpolationError(ValueError):
    pass


_VAR = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)"
    r"(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's interpolation: $$, $VAR, ${VAR}, ${VAR:-d}, ${VAR-d}, ${VAR:?e}, ${VAR?e}."""

    def sub(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        name = match.group("braced") or match.group("plain")
        op, arg = match.group("op"), match.group("arg") or ""
        present = name in env
        empty = present and env[name] == ""
        if op in (":-", "-"):
            use_default = not present or (op == ":-" and empty)
            return arg if use_default else env[name]
        if op in (":?", "?"):
            if not present or (op == ":?" and empty):
                raise InterpolationError(f"{name}: {arg}")
            return env[name]
        return env.get(name, "")

    return _VAR.sub(sub, value)


def interpolate_tree(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, dict):
        return {k: interpolate_tree(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate_tree(v, env) for v in node]
    return node


@pytest.fixture(scope="module")
def raw(load_yaml: Callable[[Path], list[dict[str, Any]]]) -> dict[str, Any]:
    docs = load_yaml(COMPOSE)
    assert len(docs) == 1
    return docs[0]


@pytest.fixture(scope="module")
def services(raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    resolved = interpolate_tree(raw, TEST_ENV)
    return resolved["services"]


def argv(service: dict[str, Any]) -> list[str]:
    command = service.get("command")
    assert command is not None
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def depends(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {d: "service_started" for d in deps}
    return {k: (v or {}).get("condition", "service_started") for k, v in deps.items()}


def healthcheck_enabled(service: dict[str, Any]) -> bool:
    hc = service.get("healthcheck")
    return bool(hc) and not hc.get("disable", False) and hc.get("test") not in (["NONE"], None)


# --------------------------------------------------------------------------- structure


def test_expected_services(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == EXPECTED


def test_every_service_has_an_image_or_build(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        assert svc.get("image") or svc.get("build"), name
        image = svc.get("image", "")
        if image and not image.startswith("resolutionflow"):
            tag = image.rpartition(":")[2]
            assert ":" in image and tag != "latest" and re.search(r"\d", tag), f"{name}: {image}"


def test_app_services_share_one_image_built_from_the_repo(
    services: dict[str, dict[str, Any]],
) -> None:
    images = {services[name]["image"] for name in APP_SERVICES}
    assert len(images) == 1
    build = services["web"]["build"]
    assert (COMPOSE.parent / build["context"]).resolve() == ROOT
    assert (ROOT / build["dockerfile"]).resolve() == ROOT / "deploy" / "Dockerfile"


def test_depends_on_targets_exist_and_can_be_satisfied(
    services: dict[str, dict[str, Any]],
) -> None:
    valid = {"service_started", "service_healthy", "service_completed_successfully"}
    for name, svc in services.items():
        for target, condition in depends(svc).items():
            assert target in services, f"{name} depends on unknown {target}"
            assert condition in valid, f"{name}: {condition}"
            if condition == "service_healthy":
                assert healthcheck_enabled(services[target]), (
                    f"{name} waits for {target} to be healthy, but {target} has no healthcheck"
                )
            if condition == "service_completed_successfully":
                assert services[target].get("restart", "no") == "no", (
                    f"{target} is a one-shot job and must not restart"
                )


def test_no_dependency_cycles(services: dict[str, dict[str, Any]]) -> None:
    state: dict[str, int] = {}

    def visit(node: str, path: tuple[str, ...]) -> None:
        if state.get(node) == 2:
            return
        assert state.get(node) != 1, f"dependency cycle: {' -> '.join((*path, node))}"
        state[node] = 1
        for target in depends(services[node]):
            visit(target, (*path, node))
        state[node] = 2

    for name in services:
        visit(name, ())


def test_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    # Only the one-shot migration and beat (no server to ask) go without, on purpose.
    for name, svc in services.items():
        if name in {"migrate", "beat"}:
            assert svc["healthcheck"].get("disable") is True, name
            continue
        assert healthcheck_enabled(svc), f"{name} has no healthcheck"
    for name, port in API.items():
        test = " ".join(services[name]["healthcheck"]["test"])
        assert "/healthz" in test and "PORT" in test, name
        assert env_of(services[name])["PORT"] == str(port)


def test_migration_job_gates_every_app_process(services: dict[str, dict[str, Any]]) -> None:
    assert argv(services["migrate"]) == ["python", "-m", "app.cli", "migrate"]
    assert str(services["migrate"].get("restart")) == "no"
    for name in {*API, *WORKERS, "beat"}:
        assert depends(services[name]).get("migrate") == "service_completed_successfully", name


def test_api_commands(services: dict[str, dict[str, Any]]) -> None:
    for name, app in API_APPS.items():
        cmd = argv(services[name])
        assert cmd[0] == "gunicorn"
        assert cmd[cmd.index("-c") + 1].endswith("deploy/gunicorn.conf.py")
        assert cmd[-1] == app
        assert str(API[name]) in [str(p) for p in services[name].get("expose", [])]


def test_workers_run_one_queue_each_with_prefetch_one(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, queue in WORKERS.items():
        cmd = argv(services[name])
        assert cmd[:4] == ["celery", "-A", "services.notes.worker", "worker"], name
        assert cmd[cmd.index("-Q") + 1] == queue
        assert cmd[cmd.index("--pool") + 1] == "threads"
        assert cmd[cmd.index("--prefetch-multiplier") + 1] == "1", name
        assert int(cmd[cmd.index("--concurrency") + 1]) >= 1
        # Longer than the 120 s task time limit: warm shutdown finishes the running task.
        assert _seconds(services[name]["stop_grace_period"]) > 120, name
        assert "inspect ping" in " ".join(services[name]["healthcheck"]["test"])
    beat = argv(services["beat"])
    assert beat[:4] == ["celery", "-A", "services.notes.worker", "beat"]
    assert services["beat"].get("deploy", {}).get("replicas", 1) == 1
    flower = argv(services["flower"])
    assert flower[:4] == ["celery", "-A", "services.notes.worker", "flower"]


def _seconds(value: str) -> int:
    match = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", str(value))
    assert match and any(match.groups()), value
    return int(match.group(1) or 0) * 60 + int(match.group(2) or 0)


def test_api_grace_period_outlasts_gunicorn_graceful_timeout(
    services: dict[str, dict[str, Any]],
) -> None:
    conf = (ROOT / "deploy" / "gunicorn.conf.py").read_text()
    graceful = int(re.search(r'"GUNICORN_GRACEFUL_TIMEOUT",\s*(\d+)', conf).group(1))  # type: ignore[union-attr]
    for name in API:
        assert _seconds(services[name]["stop_grace_period"]) > graceful, name


# --------------------------------------------------------------------------- Redis


def _redis_args(service: dict[str, Any]) -> dict[str, str]:
    cmd = argv(service)
    assert cmd[0] == "redis-server"
    args = {}
    for i, word in enumerate(cmd):
        if word.startswith("--"):
            args[word[2:]] = cmd[i + 1] if i + 1 < len(cmd) else ""
    return args


def test_cache_redis_is_bounded_lru(services: dict[str, dict[str, Any]]) -> None:
    args = _redis_args(services["redis-cache"])
    assert args.get("maxmemory-policy") == "allkeys-lru"
    assert re.fullmatch(r"\d+(?:[kmg]b?)?", args.get("maxmemory", ""), re.I), args


def test_broker_redis_never_evicts_and_persists(services: dict[str, dict[str, Any]]) -> None:
    args = _redis_args(services["redis-broker"])
    assert args.get("maxmemory-policy") == "noeviction"
    assert args.get("appendonly") == "yes"
    assert services["redis-broker"].get("volumes"), "AOF needs a volume to survive a restart"


def test_apps_use_broker_for_celery_and_cache_for_cache(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in APP_SERVICES:
        env = env_of(services[name])
        assert env["REDIS_URL"].startswith("redis://redis-broker:"), name
        assert env["CACHE_REDIS_URL"].startswith("redis://redis-cache:"), name
        assert env["DATABASE_URL"].startswith("postgresql://"), name
        assert "@postgres:5432/" in env["DATABASE_URL"]
        assert env["RF_ENV"] == "prod"


# --------------------------------------------------------------------------- secrets


def test_no_literal_secrets(raw: dict[str, Any]) -> None:
    text = COMPOSE.read_text()
    assert not re.search(r"sk-ant-[A-Za-z0-9]", text)
    assert not re.search(r"BEGIN [A-Z ]*PRIVATE KEY", text)

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if str(key) in SECRET_VARS:
                    assert isinstance(value, str) and re.fullmatch(
                        r"\$\{" + re.escape(str(key)) + r"(:?[-?][^}]*)?\}", value
                    ), f"{path}.{key} must come from the environment, got {value!r}"
                walk(value, f"{path}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{path}[{i}]")
        elif isinstance(node, str):
            # A password inside a URL must be an interpolation too.
            for credential in re.findall(r"://[^:/@\s]+:([^@\s]+)@", node):
                assert credential.startswith("${"), f"{path}: literal credential in URL"

    walk(raw, "")


def test_required_secrets_fail_loudly_when_missing(raw: dict[str, Any]) -> None:
    with pytest.raises(InterpolationError, match="SECRET_KEY"):
        interpolate_tree(raw, {"POSTGRES_PASSWORD": "x", "INTEGRATION_KEY": "a" * 43 + "="})
    with pytest.raises(InterpolationError, match="POSTGRES_PASSWORD"):
        interpolate_tree(raw, {"SECRET_KEY": "k" * 40, "INTEGRATION_KEY": "a" * 43 + "="})
    with pytest.raises(InterpolationError, match="INTEGRATION_KEY"):
        interpolate_tree(raw, {"SECRET_KEY": "k" * 40, "POSTGRES_PASSWORD": "x"})
    resolved = interpolate_tree(raw, {**TEST_ENV, "ANTHROPIC_API_KEY": "from-env"})
    env = env_of(resolved["services"]["pilot"])
    assert env["SECRET_KEY"] == TEST_ENV["SECRET_KEY"]
    assert env["ANTHROPIC_API_KEY"] == "from-env"
    assert TEST_ENV["POSTGRES_PASSWORD"] in env["DATABASE_URL"]


def test_interpolation_emulation() -> None:
    assert interpolate("a$$b ${X:-d} ${Y-e} $X", {"X": "1"}) == "a$b 1 e 1"
    assert interpolate("${X:-d}", {"X": ""}) == "d"
    assert interpolate("${X-d}", {"X": ""}) == ""
    with pytest.raises(InterpolationError):
        interpolate("${X:?need X}", {})


# --------------------------------------------------------------------------- network


def test_published_ports_are_unique(services: dict[str, dict[str, Any]]) -> None:
    seen: dict[str, str] = {}
    for name, svc in services.items():
        for spec in svc.get("ports", []):
            parts = str(spec).split(":")
            host = ":".join(parts[:-1]) or parts[-1]
            host_port = host.split(":")[-1]
            assert host_port not in seen, f"{name} and {seen[host_port]} both publish {host_port}"
            seen[host_port] = name
    assert seen.get("8000") == "nginx", "nginx is the one entry point on 8000"
    flower = [str(p) for p in services["flower"]["ports"]]
    assert all(p.startswith("127.0.0.1:") for p in flower), "flower is local only"
    for name in API:
        assert "ports" not in services[name], f"{name} is reached through nginx only"


def test_nginx_upstreams_match_services(services: dict[str, dict[str, Any]]) -> None:
    conf = NGINX_CONF.read_text()
    upstreams = dict(re.findall(r"server\s+([a-z-]+):(\d+)\s*;", conf))
    assert upstreams == {name: str(port) for name, port in API.items()}
    mounts = [str(v) for v in services["nginx"]["volumes"]]
    assert any(m.startswith("./nginx/nginx.conf:/etc/nginx/nginx.conf") for m in mounts)
    assert (COMPOSE.parent / "nginx" / "nginx.conf").is_file()
    for name in API:
        assert depends(services["nginx"]).get(name) == "service_healthy"


def test_app_containers_are_read_only_with_tmp(services: dict[str, dict[str, Any]]) -> None:
    for name in APP_SERVICES:
        assert services[name].get("read_only") is True, name
        assert "/tmp" in services[name].get("tmpfs", []), name
