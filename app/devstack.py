"""`make run`: the whole stack on one machine, in one command.

Starts the embedded PostgreSQL and Redis when DATABASE_URL / REDIS_URL are unset (kept under
.data/), applies migrations, loads the built-in library, prints the demo users' tokens, then runs
the gateway under gunicorn (WEB_CONCURRENCY processes, default 2), the Celery workers
(WORKER_PROCESSES processes, default 2, each a threads pool of WORKER_CONCURRENCY slots) and
beat under `shared.supervisor`: a program that exits is restarted with backoff, a crash loop
shows in /healthz; only Ctrl-C or SIGTERM stops the stack, and then everything it started.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys

from app.cli import ensure_demo, load_library, migrate
from shared import runtime
from shared.config import PROJECT_ROOT, Settings
from shared.embedded import DataDirInUse
from shared.supervisor import Supervisor

GUNICORN_CONF = PROJECT_ROOT / "deploy" / "gunicorn.conf.py"


def _banner(settings: Settings, demo: dict[str, object]) -> str:
    users = demo["users"]
    assert isinstance(users, dict)
    base = f"http://127.0.0.1:{settings.GATEWAY_PORT}"
    llm = (
        f"anthropic {settings.ANTHROPIC_MODEL}"
        if settings.llm_online
        else "offline generator (set ANTHROPIC_API_KEY for Claude)"
    )
    lines = [
        "",
        "ResolutionFlow is starting",
        f"  gateway     {base}   (console at /, API docs at /api/docs)",
        f"  database    {_safe_url(settings.DATABASE_URL)}",
        f"  redis       {settings.REDIS_URL}",
        f"  LLM         {llm}",
        "",
        "Demo users (password: demo-password):",
    ]
    for role, info in users.items():
        lines.append(f"  {role:<9} {info['email']}")
        lines.append(f"            token: {info['token']}")
    lines += [
        "",
        "Try:",
        f"  curl -H 'Authorization: Bearer <token>' {base}/api/v1/scripts/categories",
        "",
    ]
    return "\n".join(lines)


def _safe_url(url: str | None) -> str:
    if not url:
        return "-"
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def stack_commands(
    settings: Settings, *, bin_dir: str | None = None, worker_name: str = "devstack@%h"
) -> dict[str, list[str]]:
    """The processes of the local stack: the gateway under gunicorn, WORKER_PROCESSES Celery
    workers for every queue, and beat. The console's end-to-end tests start exactly these."""
    bin_dir = bin_dir or os.path.dirname(sys.executable)
    commands: dict[str, list[str]] = {
        "gateway": [
            os.path.join(bin_dir, "gunicorn"),
            # The deploy's settings (JSON logs with redaction from the first line, no control
            # socket, per-address metrics directory); the flags below override the sizing.
            "--config",
            str(GUNICORN_CONF),
            "--bind",
            f"127.0.0.1:{settings.GATEWAY_PORT}",
            "--workers",
            str(max(2, settings.WEB_CONCURRENCY)),
            "--worker-class",
            "gthread",
            "--threads",
            "16",
            # Long enough for a streamed chat turn or a preview that waits for its note.
            "--timeout",
            "180",
            "--graceful-timeout",
            "30",
            "app.gateway:create_app()",
        ],
        "beat": [
            os.path.join(bin_dir, "celery"),
            "-A",
            "services.notes.worker",
            "--quiet",
            "beat",
            "--loglevel",
            settings.LOG_LEVEL,
            "--schedule",
            str(settings.DATA_DIR / "celerybeat-schedule"),
        ],
    }
    # One program per worker process (`worker`, `worker-2`, ...), each a Celery node of its own.
    for n in range(1, max(1, settings.WORKER_PROCESSES) + 1):
        program = "worker" if n == 1 else f"worker-{n}"
        node = worker_name if n == 1 else worker_name.replace("@", f"-{n}@", 1)
        commands[program] = _worker_command(settings, bin_dir, node)
    return commands


def _worker_command(settings: Settings, bin_dir: str, node: str) -> list[str]:
    return [
        os.path.join(bin_dir, "celery"),
        "-A",
        "services.notes.worker",
        # No start-up banner: like the gateway's, the workers' output is JSON log lines.
        "--quiet",
        "worker",
        "-Q",
        "notes,events,webhooks",
        "--pool",
        "threads",
        "--concurrency",
        str(max(2, settings.WORKER_CONCURRENCY)),
        "--prefetch-multiplier",
        "1",
        "--loglevel",
        settings.LOG_LEVEL,
        "-n",
        node,
    ]


class PortInUse(RuntimeError):
    pass


def check_port_free(port: int, host: str = "127.0.0.1") -> None:
    """Fail before anything starts (or is printed) when the gateway could not bind: gunicorn
    binds with SO_REUSEADDR, so the same check here means the same answer there."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise PortInUse(
                f"port {port} on {host} is already in use ({exc.strerror}); another stack or "
                f"program listens there. Stop it, or choose another port: "
                f"GATEWAY_PORT={port + 1} make run"
            ) from exc


def supervised(settings: Settings, env: dict[str, str]) -> Supervisor:
    """The stack's programs under supervision: each restarted with backoff when it exits."""
    return Supervisor(
        stack_commands(settings),
        cwd=PROJECT_ROOT,
        env=env,
        status_path=settings.DATA_DIR / f"supervisor-{settings.GATEWAY_PORT}.json",
    )


def main() -> int:
    # `make run` is the development stack: it says so explicitly (its children inherit it),
    # because an unset RF_ENV means production and refuses the development keys.
    os.environ.setdefault("RF_ENV", "dev")
    settings = Settings.from_env()
    try:
        check_port_free(settings.GATEWAY_PORT)
        settings = runtime.configure(settings)
    except (PortInUse, DataDirInUse) as exc:
        print(json.dumps({"error": str(exc)}), file=sys.stderr)
        return 2
    migrate(settings)
    library = load_library()
    demo = ensure_demo(settings)
    print(_banner(settings, demo), flush=True)
    print(json.dumps({"library": library}), flush=True)

    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    settings.DATA_DIR.mkdir(parents=True, exist_ok=True)
    supervisor = supervised(settings, env)
    signal.signal(signal.SIGINT, supervisor.request_stop)
    signal.signal(signal.SIGTERM, supervisor.request_stop)
    supervisor.start()
    try:
        supervisor.run()
    finally:
        runtime.release_servers()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
